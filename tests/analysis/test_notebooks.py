"""Every notebook in notebooks/ runs from top to bottom on a freshly simulated demo database, on
a kernel of this environment's Python; and none is committed with outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_the_numbered_notebooks_are_there():
    assert [path.name for path in NOTEBOOKS] == [
        "01_quickstart_client.ipynb", "02_explore_logs.ipynb", "03_offline_evaluation.ipynb",
        "04_reward_weights.ipynb", "05_monitoring.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_a_committed_notebook_has_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}, cell {index}: outputs are committed; clear them "
                "(jupyter nbconvert --clear-output --inplace notebooks/*.ipynb)")


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """The kernel `python3`, pinned to this interpreter: a kernelspec first on JUPYTER_PATH, so
    that no other Python's `python3` kernel (a user's, the system's) runs the notebooks."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (bandits tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's own future default
    return "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_a_notebook_runs_on_a_fresh_demo_database(path, demo_url, kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("BANDITS_DATABASE_URL", demo_url)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)

    # the working folder is a temporary one: nothing is written beside the notebooks
    NotebookClient(notebook, timeout=300, kernel_name=kernel,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.output_type == "error"]
    assert errors == []
    images = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    plotted = sum("plots." in cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert len(images) >= plotted
