"""The reward scheduler: due times, retries, and a flush that sends everything pending."""

from __future__ import annotations

import threading
import time

import requests

from bandits.client import ServiceError
from bandits.simulate.scheduler import PendingReward, RewardScheduler


class Recorder:
    """Stands in for the HTTP post: records when each reward came, fails as told."""

    def __init__(self, failures: dict[str, list[Exception]] | None = None) -> None:
        self.posted: list[tuple[str, float]] = []
        self._failures = failures or {}
        self._lock = threading.Lock()

    def __call__(self, event_id, rewards, reward_id=None):
        with self._lock:
            pending = self._failures.get(event_id)
            if pending:
                raise pending.pop(0)
            self.posted.append((event_id, time.monotonic()))
        return {"event_id": event_id, "accepted": len(rewards), "duplicate": False}


def _reward(event_id: str) -> PendingReward:
    return PendingReward(event_id, {"click": 1, "revenue": 2.0}, f"{event_id}/r")


def test_rewards_are_posted_when_due_in_due_order_and_close_waits_for_them():
    post = Recorder()
    scheduler = RewardScheduler(post, senders=1)
    start = time.monotonic()
    scheduler.schedule(start + 0.3, _reward("late"))
    scheduler.schedule(start + 0.1, _reward("early"))
    stats = scheduler.close()
    assert [event_id for event_id, _ in post.posted] == ["early", "late"]
    assert post.posted[0][1] >= start + 0.1 and post.posted[1][1] >= start + 0.3
    assert (stats.scheduled, stats.sent, stats.outcomes, stats.pending) == (2, 2, 4, 0)


def test_flush_now_sends_pending_rewards_without_waiting():
    post = Recorder()
    scheduler = RewardScheduler(post, senders=2)
    for n in range(5):
        scheduler.schedule(time.monotonic() + 60, _reward(f"e{n}"))
    started = time.monotonic()
    stats = scheduler.close(flush_now=True)
    assert time.monotonic() - started < 5
    assert stats.sent == 5 and len(post.posted) == 5


def test_server_errors_are_retried_and_refusals_are_counted():
    post = Recorder({
        "flaky": [ServiceError(503, "StoreUnavailable", "retry"), requests.ConnectionError("reset")],
        "refused": [ServiceError(422, "UnknownObjective", "no such objective")],
    })
    scheduler = RewardScheduler(post, senders=2)
    for event_id in ("flaky", "refused", "fine"):
        scheduler.schedule(time.monotonic(), _reward(event_id))
    stats = scheduler.close()
    assert sorted(event_id for event_id, _ in post.posted) == ["fine", "flaky"]
    assert stats.sent == 2 and dict(stats.failed) == {"UnknownObjective": 1} and stats.pending == 0
