"""A real `bandits serve` (gunicorn, SQLite) for the simulation's HTTP tests, shared by the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import running_service


@pytest.fixture(scope="session")
def service_url(tmp_path_factory) -> Iterator[str]:
    """The base URL of a running `bandits serve` (2 workers x 4 threads) on a fresh SQLite file."""
    directory = tmp_path_factory.mktemp("simulate-serve")
    with running_service(f"sqlite:///{directory / 'sim.db'}", directory) as base:
        yield base
