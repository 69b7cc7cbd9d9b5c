"""The package stays a numpy/scipy library, and the examples in its docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bandits.ope

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(info.name for info in
                 pkgutil.iter_modules(bandits.ope.__path__, prefix="bandits.ope."))


def test_importing_ope_pulls_in_no_database_http_or_vw_module():
    forbidden = ["sqlalchemy", "flask", "bandits.api", "bandits.store", "vowpalwabbit"]
    script = ("import sys, bandits.ope; "
              f"print([m for m in {forbidden!r} if any(k == m or k.startswith(m + '.') "
              "for k in sys.modules)])")
    output = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    assert output.strip() == "[]"


def test_the_api_loads_no_scipy():
    """The api's workers import the estimators to check job specs; scipy (some 60 MB in every
    worker) only comes with computing an empirical-likelihood interval."""
    script = "import sys, bandits.api; print('scipy' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    assert output.strip() == "False"


@pytest.mark.parametrize("name", ["bandits.ope"] + MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


@pytest.mark.parametrize("name", MODULES)
def test_modules_stay_small(name):
    lines = Path(importlib.import_module(name).__file__).read_text().count("\n")
    assert lines <= 400
