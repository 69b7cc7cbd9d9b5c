"""Weight tuning pays off in production: `bandits serve` under gunicorn with a real trainer and a
real worker beside it, on Postgres. A loop that has served clicks only for a long
while (100,000 decisions of the tradeoff world, written straight into its log) is tuned for
revenue with a click guardrail; the recommendation is applied with a model rebuild. After the
trainer has relearned the log with the new weights, the policy the service serves earns more
revenue, by the world's exact values, and keeps its clicks within the allowed drop."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from bandits.client import Client
from bandits.config import load_settings
from bandits.simulate.driver import Delays, run
from bandits.simulate.logged import write_log
from bandits.simulate.world import tradeoff
from bandits.store.db import Database
from bandits.store.models import Decision, Loop
from tests.conftest import ADMIN_KEY
from tests.servers import database, running_service

pytestmark = pytest.mark.e2e

CURRENT = {"click": 1.0, "conversion": 0.0, "revenue": 0.0}
EPSILON = 0.2
LOGGED = 100_000
SERVED = 600  # decisions per measurement
MAX_DROP = 0.15
DELAYS = Delays(speed=20.0)  # outcomes within 0.1 s
CONFIG = {
    "objectives": [{"name": name, "weight": weight} for name, weight in CURRENT.items()],
    "exploration": {"algorithm": "epsilon", "epsilon": EPSILON},
    # User features crossed with the action ids, so segments can be told apart; a small step
    # size, so the model averages the noisy revenue over the history (docs/tuning.md).
    "vw_args": "-q u_ -l 0.05",
    "reward_wait": "2s",
}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LEARN_TIMEOUT = 120.0
TUNING_TIMEOUT = 180.0


# Postgres only: the tuning and the trainer's rebuild are the same code on both backends (their
# SQLite runs are in tests/jobs/test_tunings.py and the trainer's tests), and one run takes
# about 90 s of the suite's 15 minutes.
@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    """(base URL, a Database on the service's database, the directory of its log)."""
    with database(request.param, tmp_path) as database_url:
        with running_service(database_url, tmp_path, "--trainer", "--worker") as base:
            db = Database(load_settings(database_url=database_url), pool_size=2)
            try:
                yield base, db, tmp_path
            finally:
                db.dispose()


class _Failure:
    """Collects what to show when a step times out or an assertion fails."""

    def __init__(self, directory: Path) -> None:
        self.log_path = directory / "serve.log"
        self.lines: list[str] = []

    def __call__(self, message: str) -> str:
        log = self.log_path.read_text() if self.log_path.exists() else "(no log)"
        tail = "\n".join(log.splitlines()[-80:])
        simulation = "\n".join(self.lines[-60:])
        return f"{message}\n--- simulation ---\n{simulation}\n--- serve.log (tail) ---\n{tail}"


def _learned(base: str, db: Database, loop_id: int, lineage_after: int = 0) -> tuple[int, int, dict]:
    """(decisions not learned yet, total learned by the served model, GET .../models)."""
    with db.session() as session:
        unlearned = session.scalar(select(func.count()).select_from(Decision).where(
            Decision.loop_id == loop_id, Decision.learned_at.is_(None)))
    models = requests.get(f"{base}/v1/loops/shop/models", headers=ADMIN, timeout=10).json()
    served = next((m for m in models["models"] if m["version"] == models["current"]), None)
    total = served["total_learned"] if served and models["lineage"] > lineage_after else 0
    return unlearned, total, models


def _wait_until_learned(base: str, db: Database, loop_id: int, failure: _Failure,
                        lineage_after: int = 0) -> dict:
    """Waits until the trainer has learned every decision of the loop in a lineage newer than
    ``lineage_after`` and the served model holds them all; then until the api serves it."""
    with db.session() as session:
        decisions = session.scalar(select(func.count()).select_from(Decision).where(
            Decision.loop_id == loop_id))
    deadline = time.monotonic() + LEARN_TIMEOUT
    while True:
        unlearned, total, models = _learned(base, db, loop_id, lineage_after)
        if unlearned == 0 and total >= decisions:
            break
        if time.monotonic() > deadline:
            pytest.fail(failure(f"the trainer did not learn the {decisions:,} decisions in "
                                f"{LEARN_TIMEOUT:.0f} s: {unlearned:,} unlearned, the served model "
                                f"holds {total:,}; models: {models}"))
        time.sleep(0.5)
    time.sleep(2.5)  # the api processes' loop caches (cache_seconds 1) pick the model up
    return models


def _served_pmfs(db: Database, loop_id: int, prefix: str) -> dict[str, list[float]]:
    """The mean PMF served per user profile in the decisions ``{prefix}-*``: which offer each
    segment was shown (offers 00-02 engage segments 0-2, 03 is premium)."""
    with db.session() as session:
        rows = session.execute(select(Decision.context, Decision.pmf).where(
            Decision.loop_id == loop_id, Decision.event_id.like(f"{prefix}-%"))).all()
    pmfs: dict[str, list[list[float]]] = {}
    for context, pmf in rows:
        pmfs.setdefault(str(context["user"].get("country")), []).append(pmf)
    return {user: [round(sum(column) / len(column), 3) for column in zip(*seen)]
            for user, seen in sorted(pmfs.items())}


def _tune(base: str, window: dict[str, str], failure: _Failure) -> dict[str, Any]:
    reply = requests.post(f"{base}/v1/loops/shop/tunings", headers=ADMIN, timeout=30, json={
        "window": window, "primary": "revenue",
        "guardrails": [{"objective": "click", "max_drop": MAX_DROP}], "budget": 100})
    assert reply.status_code == 202, failure(f"tuning refused: {reply.text}")
    job_id = reply.json()["id"]
    deadline = time.monotonic() + TUNING_TIMEOUT
    while True:
        job = requests.get(f"{base}/v1/loops/shop/tunings/{job_id}", headers=ADMIN, timeout=10).json()
        if job["status"] in ("succeeded", "failed"):
            break
        if time.monotonic() > deadline:
            pytest.fail(failure(f"the worker did not finish tuning {job_id} in {TUNING_TIMEOUT:.0f} s: {job}"))
        time.sleep(0.5)
    assert job["status"] == "succeeded", failure(f"tuning {job_id} failed: {job.get('error')}")
    return job


def _serve(client: Client, seed: int, prefix: str, failure: _Failure):
    summary = run(client, tradeoff(), decisions=SERVED, concurrency=8, seed=seed, delays=DELAYS,
                  report_every=SERVED, event_prefix=prefix, write=failure.lines.append)
    assert summary.ok, failure(f"the {prefix} run did not go through")
    return summary


def test_applying_a_tuning_raises_the_served_revenue_within_the_click_guardrail(backend):
    base, db, directory = backend
    failure = _Failure(directory)
    started = time.monotonic()
    with Client(base, ADMIN_KEY) as admin:
        created = admin.create_loop("shop", CONFIG)
    with db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == "shop"))

    # A long history served for clicks only, in the past: the trainer learns it with these weights.
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    write_log(db, loop_id, tradeoff(), LOGGED, weights=CURRENT, epsilon=EPSILON, seed=1)
    until = datetime.now(timezone.utc)
    window = {"since": since.isoformat(), "until": until.isoformat()}
    _wait_until_learned(base, db, loop_id, failure)
    learned_at = time.monotonic()

    with Client(base, created["key"], loop="shop") as client:
        before = _serve(client, seed=2, prefix="before", failure=failure)
        measured_before = time.monotonic()

        job = _tune(base, window, failure)
        recommendation = job["result"]["recommendation"]
        assert recommendation["action"] == "apply", failure(f"the tuning keeps the weights: {recommendation}")
        tuned = time.monotonic()
        lineage = requests.get(f"{base}/v1/loops/shop/models", headers=ADMIN, timeout=10).json()["lineage"]
        applied = requests.post(f"{base}/v1/loops/shop/tunings/{job['id']}/apply", headers=ADMIN,
                                json={"rebuild": True}, timeout=30)
        assert applied.status_code == 200, failure(f"apply refused: {applied.text}")
        assert applied.json()["model_reset"] and applied.json()["relearning"] == LOGGED + SERVED
        # Every retained decision (the history and the 600 just served) is learned again, with
        # the new weights, into a new lineage.
        _wait_until_learned(base, db, loop_id, failure, lineage_after=lineage)
        relearned = time.monotonic()

        after = _serve(client, seed=3, prefix="after", failure=failure)
    print(f"\nlearned the log {learned_at - started:.1f} s, before {measured_before - learned_at:.1f} s, "
          f"tuning {tuned - measured_before:.1f} s, relearned {relearned - tuned:.1f} s, "
          f"after {time.monotonic() - relearned:.1f} s; weights {recommendation['weights']}\n"
          f"before {before.policy}\nafter  {after.policy}")
    shown = (f"served per segment (AR=s0, DE=s1, US=s2): before {_served_pmfs(db, loop_id, 'before')}, "
             f"after {_served_pmfs(db, loop_id, 'after')}")

    # Stated margins, by the exact values of the PMFs served (only the mix of users in 600
    # decisions varies). The tradeoff world's truth under epsilon 0.2: showing the premium offer to
    # segments 0 and 2 instead of their engagement offers gives +0.48 revenue a decision (1.88 to
    # 2.36) for -8.6 % clicks (0.463 to 0.423); to segment 1 as well, +0.59 but -23 % clicks, which
    # the guardrail forbids. Ask for about a third of the gain.
    assert after.policy["revenue"] >= before.policy["revenue"] + 0.15, failure(
        f"revenue did not rise enough: before {before.policy}, after {after.policy}, "
        f"weights {recommendation['weights']}; {shown}")
    # The guardrail is relative to the logging policy, which is what was served before.
    assert after.policy["click"] >= (1 - MAX_DROP) * before.policy["click"], failure(
        f"clicks dropped by more than {MAX_DROP:.0%}: before {before.policy}, after {after.policy}, "
        f"weights {recommendation['weights']}; {shown}")
