"""Which CPU `bandits serve` gives each gunicorn worker (the hooks, without forking)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from bandits.server import choose_cpu, gunicorn_options, pin_to_cpu, usable_cpus


def _arbiter() -> SimpleNamespace:
    return SimpleNamespace(WORKERS={})


def _spawn(arbiter: SimpleNamespace, pid: int) -> SimpleNamespace:
    worker = SimpleNamespace()
    choose_cpu(arbiter, worker)  # gunicorn calls pre_fork, then records the worker
    arbiter.WORKERS[pid] = worker
    return worker


def test_workers_spread_over_the_usable_cpus_and_a_replacement_takes_the_freed_one():
    cpus = usable_cpus()
    arbiter = _arbiter()
    workers = [_spawn(arbiter, pid) for pid in range(2 * len(cpus) + 1)]
    counts = Counter(worker.bandits_cpu for worker in workers)
    assert set(counts) == set(cpus)
    assert max(counts.values()) - min(counts.values()) <= 1
    if len(cpus) > 1:
        freed = min(cpu for cpu in cpus if counts[cpu] == min(counts.values()))
        gone = next(pid for pid, worker in arbiter.WORKERS.items() if worker.bandits_cpu == freed)
        del arbiter.WORKERS[gone]
        assert _spawn(arbiter, 1000).bandits_cpu == freed


def test_pinning_is_off_without_threads_or_when_asked():
    assert "post_fork" not in gunicorn_options("127.0.0.1", 8080, 2, 1, access_log=False)
    unpinned = gunicorn_options("127.0.0.1", 8080, 2, 8, access_log=False, pin_workers=False)
    assert "post_fork" not in unpinned
    pinned = gunicorn_options("127.0.0.1", 8080, 2, 8, access_log=False)
    assert ("post_fork" in pinned) == (len(usable_cpus()) > 1)


def test_a_worker_without_a_cpu_is_left_alone():
    before = usable_cpus()
    pin_to_cpu(SimpleNamespace(log=None), SimpleNamespace())
    assert usable_cpus() == before


@pytest.mark.skipif(len(usable_cpus()) < 2, reason="one CPU: nothing to choose")
def test_a_cpu_that_cannot_be_had_leaves_the_worker_unpinned_with_a_warning():
    warnings = []
    log = SimpleNamespace(warning=lambda *args: warnings.append(args), info=lambda *args: None)
    before = usable_cpus()
    pin_to_cpu(SimpleNamespace(log=log), SimpleNamespace(bandits_cpu=10_000))  # no such CPU
    assert usable_cpus() == before
    assert warnings and warnings[0][2] == 10_000


@pytest.mark.parametrize(
    ("environment", "pinned"), [(None, True), ("0", False), ("false", False), ("1", True)]
)
def test_bandits_pin_workers_sets_the_default(monkeypatch, environment, pinned):
    from bandits.cli import serve

    if environment is None:
        monkeypatch.delenv("BANDITS_PIN_WORKERS", raising=False)
    else:
        monkeypatch.setenv("BANDITS_PIN_WORKERS", environment)
    assert serve.make_context("serve", []).params["pin_workers"] is pinned
    assert serve.make_context("serve", ["--pin-workers"]).params["pin_workers"] is True
