"""A demo database for the plots and the notebooks: the notebooks' own (``bandits loops create``
and ``bandits simulate --direct``, through :func:`bandits.analysis.demo.fill`), once per session."""

from __future__ import annotations

import pytest

from bandits.analysis import demo


@pytest.fixture(scope="session")
def demo_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    demo.fill(url)
    return url
