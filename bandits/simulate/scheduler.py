"""Outcomes arrive late: a heap of rewards due at a time, posted by a small pool of senders.

One scheduler thread sleeps until the earliest reward is due and hands it to a sender; ``close``
waits until every scheduled reward has been posted (or, with ``flush_now``, posts the pending
ones at once, as when a run is interrupted). Nothing scheduled is ever dropped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from bandits.client import ServiceError

# Rewards carry a reward_id, so posting one again is safe: a retry is accepted once.
RETRIES = 3
RETRY_PAUSE = 0.2


@dataclass(frozen=True)
class PendingReward:
    event_id: str
    rewards: dict[str, float]
    reward_id: str
    slot: str | None = None  # a ccb decision's rewards are per slot


@dataclass
class RewardStats:
    """``scheduled`` calls; ``sent``: calls the service accepted (202); ``outcomes``: outcome rows it
    stored; ``duplicates``: calls it had already seen; ``late``: calls it marked as arriving after
    the loop's reward wait; ``failed``: calls refused, by error code."""

    scheduled: int = 0
    sent: int = 0
    outcomes: int = 0
    duplicates: int = 0
    late: int = 0
    failed: Counter = field(default_factory=Counter)

    @property
    def pending(self) -> int:
        return self.scheduled - self.sent - sum(self.failed.values())


class RewardScheduler:
    """Posts each :class:`PendingReward` through ``post`` once its due time (``time.monotonic()``)
    has come. ``post(event_id, rewards, reward_id)`` (plus ``slot=`` for a reward that has one)
    returns the service's reply."""

    def __init__(self, post: Callable[..., dict], senders: int = 4) -> None:
        self._post = post
        self._heap: list[tuple[float, int, PendingReward]] = []
        self._order = itertools.count()  # ties on the due time keep scheduling order
        self._condition = threading.Condition()
        self._closing = False
        self._flush_now = False
        self._stats_lock = threading.Lock()
        self.stats = RewardStats()
        self._senders = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="reward-sender")
        self._thread = threading.Thread(target=self._run, name="reward-scheduler", daemon=True)
        self._thread.start()

    def schedule(self, due: float, reward: PendingReward) -> None:
        with self._condition:
            if self._closing:
                raise RuntimeError("the scheduler is closed")
            heapq.heappush(self._heap, (due, next(self._order), reward))
            self.stats.scheduled += 1
            self._condition.notify()

    def close(self, flush_now: bool = False) -> RewardStats:
        """Post every scheduled reward (when due, or now with ``flush_now``), then stop."""
        with self._condition:
            self._closing = True
            self._flush_now = self._flush_now or flush_now
            self._condition.notify()
        self._thread.join()
        self._senders.shutdown(wait=True)
        return self.stats

    def flush_now(self) -> None:
        """From now on, post pending rewards without waiting for their due time."""
        with self._condition:
            self._flush_now = True
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    now = time.monotonic()
                    if self._heap and (self._flush_now or self._heap[0][0] <= now):
                        reward = heapq.heappop(self._heap)[2]
                        break
                    if self._closing and not self._heap:
                        return
                    self._condition.wait(self._heap[0][0] - now if self._heap else None)
            self._senders.submit(self._send, reward)

    def _send(self, reward: PendingReward) -> None:
        for attempt in range(RETRIES + 1):
            try:
                slot = {"slot": reward.slot} if reward.slot is not None else {}
                reply = self._post(reward.event_id, reward.rewards, reward_id=reward.reward_id,
                                   **slot)
            except ServiceError as exc:
                if exc.status < 500 or attempt == RETRIES:
                    self._count_failure(exc.code)
                    return
            except requests.RequestException as exc:
                if attempt == RETRIES:
                    self._count_failure(type(exc).__name__)
                    return
            else:
                with self._stats_lock:
                    self.stats.sent += 1
                    self.stats.outcomes += int(reply.get("accepted", 0))
                    self.stats.duplicates += bool(reply.get("duplicate"))
                    self.stats.late += bool(reply.get("late"))
                return
            time.sleep(RETRY_PAUSE * (attempt + 1))

    def _count_failure(self, code: str) -> None:
        with self._stats_lock:
            self.stats.failed[code] += 1
