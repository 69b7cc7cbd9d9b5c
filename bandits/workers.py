"""The gunicorn worker class of `bandits serve`: gthread, with connections spread over the workers.

gunicorn's gthread workers all watch the one listening socket, and whichever wakes first takes
the connection. A client that opens its connections together (a load balancer's pool, a product's
HTTP client, wrk) often finds one worker awake and the others not: measured here, in about one
round in three the first worker took all 16 connections, and kept them (keep-alive) while the
second worker idled, which halved the CPU the service could use. ``BalancedThreadWorker``
accepts a connection only while no other live worker holds fewer: each worker publishes its
number of open connections, and a heartbeat, on a board of shared memory that the arbiter maps
before it forks them. A worker whose heartbeat is older than ``STALE_SECONDS`` (stopped, hung,
gone) is left out, so one stuck worker delays new connections by that long at most; otherwise
the rule is gunicorn's own (at most ``worker_connections`` each). Requests are served exactly as
gthread serves them.
"""

from __future__ import annotations

import mmap
import time
import weakref
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

STALE_SECONDS = 2.0  # an idle worker's loop still turns every second (gthread's poll timeout)
SLOTS = 256  # workers alive at once (a replacement takes its predecessor's slot)

# The board: double 0 is the number of slots handed out so far; slot i (1-based) is
# [connections, heartbeat (time.monotonic(), shared by every process of the machine)].
_FIELDS = 2


class _Board:
    """Shared memory the arbiter maps before any fork; its workers write their own slot."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 8 * (1 + _FIELDS * SLOTS))  # anonymous, MAP_SHARED
        self.values = memoryview(self._memory).cast("d")
        self._owners: dict[int, weakref.ref[Any]] = {}

    def claim(self, worker: Any) -> int | None:
        """In the arbiter: the lowest slot no live worker object owns, reset (None: all taken)."""
        for slot in range(SLOTS):
            owner = self._owners.get(slot)
            if owner is None or owner() is None:
                self._owners[slot] = weakref.ref(worker)
                base = 1 + _FIELDS * slot
                self.values[base] = 0.0
                self.values[base + 1] = 0.0  # stale until the worker's loop runs
                self.values[0] = max(self.values[0], slot + 1.0)
                return slot
        return None

    def fewest_elsewhere(self, slot: int, now: float) -> float | None:
        """The fewest connections a live worker other than ``slot``'s holds (None: no other)."""
        values = self.values
        fewest = None
        for other in range(int(values[0])):
            if other == slot:
                continue
            base = 1 + _FIELDS * other
            if now - values[base + 1] > STALE_SECONDS:
                continue
            if fewest is None or values[base] < fewest:
                fewest = values[base]
        return fewest


_board: _Board | None = None


class BalancedThreadWorker(ThreadWorker):
    """gthread, accepting only while no other live worker has fewer open connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        global _board
        super().__init__(*args, **kwargs)
        if _board is None:  # the arbiter, before its first fork
            _board = _Board()
        self._board = _board
        self._slot = _board.claim(self)

    @property
    def worker_connections(self) -> int:  # type: ignore[override]
        """gthread's limit, read once per turn of the worker's loop: it accepts while
        ``nr_conns < worker_connections``. Here the turn also publishes this worker's count."""
        limit = self._configured_connections
        if getattr(self, "_slot", None) is None:
            return limit
        now = time.monotonic()
        base = 1 + _FIELDS * self._slot
        values = self._board.values
        values[base] = float(self.nr_conns)
        values[base + 1] = now
        fewest = self._board.fewest_elsewhere(self._slot, now)
        if fewest is not None and self.nr_conns > fewest:
            return self.nr_conns  # let a worker with fewer connections take the next one
        return limit

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._configured_connections = value
