"""BalancedThreadWorker's rule, on real gunicorn worker objects (built as the arbiter builds
them, without forking): a worker accepts while no live worker holds fewer connections."""

from __future__ import annotations

import gc
import time

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from bandits import workers
from bandits.workers import STALE_SECONDS, BalancedThreadWorker


_built: list[BalancedThreadWorker] = []


@pytest.fixture
def fresh_board(monkeypatch):
    """A new board, as a new arbiter would map; the workers' heartbeat files closed after."""
    monkeypatch.setattr(workers, "_board", None)
    yield
    while _built:
        _built.pop().tmp.close()


def _worker(age: int, connections: int = 1000) -> BalancedThreadWorker:
    cfg = Config()
    cfg.set("threads", 4)
    cfg.set("worker_connections", connections)
    worker = BalancedThreadWorker(age, 1, [], None, 30, cfg, Logger(cfg))
    _built.append(worker)
    return worker


def _turn(worker: BalancedThreadWorker, connections: int) -> bool:
    """One turn of gthread's loop with ``connections`` open: does the worker accept?"""
    worker.nr_conns = connections
    return worker.nr_conns < worker.worker_connections


def test_a_worker_holding_more_connections_than_another_leaves_the_next_to_it(fresh_board):
    first, second = _worker(1), _worker(2)
    assert _turn(first, 0) and _turn(second, 0)  # equal: both accept
    assert not _turn(first, 1)  # the second still publishes 0
    assert _turn(second, 0)
    assert _turn(second, 1) and _turn(first, 1)  # level: both accept
    assert not _turn(second, 2)  # it took one more
    assert _turn(first, 1) and _turn(first, 2) and _turn(second, 2)  # level again


def test_alone_or_beside_a_stale_worker_the_limit_is_gunicorns(fresh_board):
    first, second = _worker(1, connections=5), _worker(2, connections=5)
    assert _turn(first, 4) and not _turn(first, 5)  # worker_connections still holds
    _turn(second, 0)
    assert not _turn(first, 1)
    heartbeat = 1 + 2 * second._slot + 1
    first._board.values[heartbeat] = time.monotonic() - STALE_SECONDS - 0.1  # its loop stopped
    assert _turn(first, 4)


def test_a_slot_is_handed_on_once_its_worker_is_gone_and_starts_stale(fresh_board):
    first, second = _worker(1), _worker(2)
    assert (first._slot, second._slot) == (0, 1)
    _turn(second, 0)
    _built.remove(second)
    second.tmp.close()
    del second
    gc.collect()
    third = _worker(3)
    assert third._slot == 1
    assert _turn(first, 7)  # the replacement counts only once its own loop turns
    _turn(third, 0)
    assert not _turn(first, 7)


def test_serve_uses_the_balanced_worker_with_threads():
    from bandits.server import gunicorn_options

    assert gunicorn_options("127.0.0.1", 8080, 2, 8, access_log=False)["worker_class"] == (
        "bandits.workers.BalancedThreadWorker")
    assert gunicorn_options("127.0.0.1", 8080, 2, 1, access_log=False)["worker_class"] == "sync"
