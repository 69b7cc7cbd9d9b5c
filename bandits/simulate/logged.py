"""Writes a world's decisions straight into a loop's decision log, as if a known policy had
served them: for tuning and evaluation tests, benchmarks and demos that need many events with
known propensities quickly.

The logger is epsilon-greedy over the world's best offer per segment for ``weights``: the
chosen offer, its probability and the whole PMF are logged, and each outcome that happened is
stored as the service stores a reward (a click, then a conversion with its revenue; nothing for
what did not happen, so the objectives' defaults stand for it). Decision ``i`` draws from
:func:`bandits.simulate.driver.decision_rng` ``(seed, i)``, so a log depends only on its
arguments. Nothing here goes through HTTP; the rows are the ones the service writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import insert

from bandits.learning.sampling import seed_for
from bandits.simulate.driver import decision_rng
from bandits.simulate.world import World
from bandits.store.db import Database
from bandits.store.models import Decision, Outcome

BATCH = 5000


def logger_pmf(world: World, weights: Mapping[str, float], epsilon: float) -> np.ndarray:
    """(segments, offers): epsilon-greedy over the best offer of each segment for ``weights``."""
    offers = len(world.offers)
    best = world.best_offers(weights)
    ids = [offer.id for offer in world.offers]
    pmf = np.full((len(world.segments), offers), epsilon / offers)
    for segment, offer in enumerate(best):
        pmf[segment, ids.index(offer)] += 1.0 - epsilon
    return pmf


def write_log(db: Database, loop_id: int, world: World, decisions: int, *,
              weights: Mapping[str, float], epsilon: float, seed: int,
              start: datetime | None = None, spacing: timedelta = timedelta(milliseconds=10),
              prefix: str = "log", progress: Callable[[int], None] = lambda done: None) -> np.ndarray:
    """Log ``decisions`` decisions for loop ``loop_id``; returns the logger's PMF per segment.

    Decision ``i`` is at ``start + i * spacing`` (default: ``decisions * spacing`` before now,
    so the whole log is in the past)."""
    pmf = logger_pmf(world, weights, epsilon)
    start = start or datetime.now(timezone.utc) - decisions * spacing
    actions = world.actions()
    ids = [action["id"] for action in actions]
    for begin in range(0, decisions, BATCH):
        rows, outcomes = [], []
        for i in range(begin, min(begin + BATCH, decisions)):
            rng = decision_rng(seed, i)
            segment, context = world.draw_context(rng)
            offer = int(rng.choice(len(ids), p=pmf[segment]))
            event_id, ts = f"{prefix}-{i}", start + i * spacing
            rows.append({
                "loop_id": loop_id, "event_id": event_id, "ts": ts, "context": context,
                "actions": actions, "slots": None, "excluded": [], "baseline": None,
                "chosen": ids[offer], "probability": float(pmf[segment, offer]),
                "pmf": [float(p) for p in pmf[segment]], "model_version": 0, "config_version": 1,
                "learning_mode": "online", "seed": seed_for(loop_id, event_id), "deferred": False,
            })
            drawn = world.draw_outcomes(segment, offer, rng)
            for objective, value in drawn.items():
                if value:
                    outcomes.append({"loop_id": loop_id, "event_id": event_id, "slot": None,
                                     "objective": objective, "value": float(value),
                                     "reward_id": None, "ts": ts + timedelta(seconds=1),
                                     "late": False})
        with db.session() as session:
            session.execute(insert(Decision), rows)
            if outcomes:
                session.execute(insert(Outcome), outcomes)
        progress(begin + len(rows))
    return pmf
