"""End to end: `bandits serve` keeps each gunicorn worker on one CPU, spread over the CPUs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bandits.server import usable_cpus
from tests.servers import running_server

pytestmark = pytest.mark.e2e

# Without the dev-mode children, gunicorn's workers are the arbiter's only children.
_API_ONLY = ("--no-trainer", "--no-worker")


def _database(directory: Path) -> str:
    return f"sqlite:///{directory / 'bandits.db'}"


def _workers(arbiter: int) -> list[int]:
    children = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    return [int(pid) for pid in children]


def _allowed(pid: int) -> set[frozenset[int]]:
    """The CPU sets the threads of process ``pid`` may run on (one per distinct set)."""
    sets = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        sets.add(frozenset(os.sched_getaffinity(int(task))))
    return sets


def test_each_worker_runs_on_its_own_cpu(tmp_path):
    cpus = set(usable_cpus())
    with running_server(_database(tmp_path), tmp_path, *_API_ONLY) as (_base, arbiter):
        workers = _workers(arbiter.pid)
        assert len(workers) == 2
        allowed = [_allowed(pid) for pid in workers]
    if len(cpus) == 1:  # nothing to spread over: left as it was
        assert allowed == [{frozenset(cpus)}] * 2
        return
    for worker_sets in allowed:  # every thread of a worker on the same single CPU
        assert len(worker_sets) == 1
        (cpu_set,) = worker_sets
        assert len(cpu_set) == 1 and cpu_set <= cpus
    assert allowed[0] != allowed[1]  # two workers, two CPUs
    assert "pinned to CPU" in (tmp_path / "serve.log").read_text()


def test_no_pin_workers_leaves_the_workers_on_every_cpu(tmp_path):
    cpus = frozenset(usable_cpus())
    with running_server(
        _database(tmp_path), tmp_path, *_API_ONLY, "--no-pin-workers"
    ) as (_base, arbiter):
        allowed = [_allowed(pid) for pid in _workers(arbiter.pid)]
    assert allowed == [{cpus}, {cpus}]
