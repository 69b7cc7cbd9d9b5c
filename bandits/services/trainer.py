"""The trainer: the only writer of models.

For each loop it takes the decisions whose reward window has closed (or that are complete early),
joins their on-time outcomes, scalarises them with the loop's current weights, learns them with VW
in timestamp order, and publishes a snapshot. The snapshot and the marking of the events it
learned are one transaction: a trainer killed at any moment restarts from the last snapshot and
learns exactly the events not yet marked, so no event is learned twice and none is skipped.
One trainer per loop, by a lock (a Postgres advisory lock; a file lock on SQLite).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select

from bandits.learning.features import action_line, shared_line
from bandits.learning.rewards import complete_early, cost, scalar_reward
from bandits.learning.vw import Learner
from bandits.loop_config import LoopConfig
from bandits.store import loops as loops_store
from bandits.store import training
from bandits.store.db import Database, utcnow
from bandits.store.locks import LoopLock
from bandits.store.models import Loop, Model

log = logging.getLogger("bandits.trainer")

BATCH_LIMIT = 50_000
ACTION_CACHE_SIZE = 10_000


@dataclass
class LoopTrainer:
    """Learns one loop; holds its VW learner between steps."""

    db: Database
    loop_id: int
    name: str
    config: LoopConfig | None = None
    config_version: int = 0
    lineage: int = 0
    version: int = 0
    total_learned: int = 0
    learner: Learner | None = field(default=None, repr=False)
    # Apprentice mode: 1 when the model's own pick (before learning the event) was the baseline.
    agreements: deque[int] = field(default_factory=deque, repr=False)
    action_cache: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict, repr=False)

    def step(self, limit: int = BATCH_LIMIT) -> int:
        """Learn what is learnable now and publish one snapshot; returns the events learned."""
        now = utcnow()
        with self.db.session() as session:
            self._sync(session)
            assert self.config is not None and self.learner is not None
            if self.config.learning_mode == "logging_only":
                return 0
            n_objectives = len(self.config.objectives) if complete_early(self.config) else None
            decisions = training.learnable(
                self.loop_id, self.config.reward_wait, n_objectives, now, limit, session=session
            )
            if not decisions:
                return 0
            event_ids = [d.event_id for d in decisions]
            outcomes = training.on_time_outcomes(self.loop_id, event_ids, session=session)
        for decision in decisions:
            self._learn(decision, outcomes.get(decision.event_id, []))
        self._publish(event_ids, now)
        self._maybe_graduate()
        return len(event_ids)

    def _learn(self, decision: Any, outcomes: list[tuple[str, float]]) -> None:
        assert self.config is not None and self.learner is not None
        ids, all_lines = self._action_lines(decision.actions)
        if decision.excluded:
            excluded = set(decision.excluded)
            offered = [i for i, action_id in enumerate(ids) if action_id not in excluded]
            ids = [ids[i] for i in offered]
            lines = [all_lines[i] for i in offered]
        else:
            lines = all_lines
        chosen = ids.index(decision.chosen)
        shared = shared_line(orjson.loads(decision.context))
        if decision.learning_mode == "apprentice" and self.config.learning_mode == "apprentice":
            pmf = self.learner.predict(shared, lines)
            own_pick = ids[max(range(len(pmf)), key=pmf.__getitem__)]
            self.agreements.append(int(own_pick == decision.baseline))
            while len(self.agreements) > self.config.apprentice_events:
                self.agreements.popleft()
        self.learner.learn(
            shared, lines, chosen, cost(scalar_reward(self.config, outcomes)), decision.probability
        )

    def _action_lines(self, actions_json: str) -> tuple[list[str], list[str]]:
        """Ids and VW lines of a logged action list, remembered by its JSON text."""
        cached = self.action_cache.get(actions_json)
        if cached is None:
            actions = orjson.loads(actions_json)
            cached = ([a["id"] for a in actions], [action_line(a["id"], a.get("features")) for a in actions])
            if len(self.action_cache) >= ACTION_CACHE_SIZE:
                self.action_cache.clear()
            self.action_cache[actions_json] = cached
        return cached

    def agreement(self) -> float | None:
        """Share of the last ``apprentice_events`` apprentice events where the model agreed."""
        return sum(self.agreements) / len(self.agreements) if self.agreements else None

    def _maybe_graduate(self) -> None:
        """Apprentice → online, by itself, once the model agrees with the baseline often enough
        over a full window of events; recorded as a new config version."""
        assert self.config is not None
        agreement = self.agreement()
        if (
            self.config.learning_mode != "apprentice"
            or len(self.agreements) < self.config.apprentice_events
            or agreement is None
            or agreement < self.config.apprentice_agreement
        ):
            return
        with self.db.session() as session:
            loop = session.get(Loop, self.loop_id)
            config = {**loop.config, "learning_mode": "online"}
            loops_store.update_loop_config(loop, config, False, session=session)
        log.warning("loop %s: apprentice agreement %.3f over %d events; switched to online",
                    self.name, agreement, len(self.agreements))
        self.agreements.clear()

    def _publish(self, event_ids: list[str], now) -> None:
        assert self.learner is not None
        model = Model(
            loop_id=self.loop_id, version=self.version + 1, lineage=self.lineage,
            config_version=self.config_version, blob=self.learner.snapshot(),
            events_learned=len(event_ids), total_learned=self.total_learned + len(event_ids),
            source="trainer", created_at=now, apprentice_agreement=self.agreement(),
        )
        try:
            with self.db.session() as session:
                training.publish(model, event_ids, now, session=session)
        except Exception:
            self._forget()  # the learner holds events that were not committed: start over
            raise
        self.version = model.version
        self.total_learned = model.total_learned
        log.info("loop %s: model %d published, %d events learned", self.name, self.version, len(event_ids))

    def _sync(self, session) -> None:
        """Follow config changes; (re)load the newest snapshot of the current lineage."""
        row = session.execute(
            select(Loop.config, Loop.config_version).where(Loop.id == self.loop_id)
        ).one()
        lineage, served = training.served_version(self.loop_id, session=session)
        # Someone else published in this lineage (an imported model): continue from it.
        foreign = served != 0 and served != self.version
        if self.learner is not None and lineage == self.lineage and not foreign:
            if row.config_version != self.config_version:  # weights etc.: same model
                self.config = LoopConfig.model_validate(row.config)
                self.config_version = row.config_version
            return
        self._forget()
        self.config = LoopConfig.model_validate(row.config)
        self.config_version = row.config_version
        self.lineage = lineage
        latest = training.latest_model(self.loop_id, session=session)
        self.version = latest.version if latest else 0
        if latest is not None and latest.lineage == lineage:
            self.learner = Learner(self.config, latest.blob)
            self.total_learned = latest.total_learned
        else:
            self.learner = Learner(self.config)
            self.total_learned = 0

    def _forget(self) -> None:
        if self.learner is not None:
            self.learner.close()
        self.learner = None
        self.lineage = 0

    def close(self) -> None:
        self._forget()


class TrainerRunner:
    """Runs the trainers of every loop (or of the named ones) in this process until stopped.

    A loop whose lock another process holds is retried every cycle: that trainer waits.
    """

    def __init__(self, db: Database, loop_names: list[str] | None = None) -> None:
        self.db = db
        self.loop_names = loop_names
        self.stopping = threading.Event()
        self._trainers: dict[int, tuple[LoopTrainer, LoopLock, float]] = {}

    def run(self, once: bool = False) -> None:
        try:
            while not self.stopping.is_set():
                learned = self.cycle()
                if once:
                    return
                if not learned:
                    self.stopping.wait(0.1)
        finally:
            self.close()

    def cycle(self) -> int:
        """One pass over the loops: step every loop whose publish interval has passed."""
        learned = 0
        for loop_id, name in self._loops():
            entry = self._trainers.get(loop_id)
            if entry is None:
                lock = LoopLock(self.db, loop_id)
                if not lock.acquire():
                    continue  # another trainer has this loop
                entry = (LoopTrainer(self.db, loop_id, name), lock, 0.0)
                self._trainers[loop_id] = entry
            trainer, lock, due = entry
            if time.monotonic() < due:
                continue
            try:
                learned += trainer.step()
            except Exception:
                log.exception("loop %s: training step failed; retrying from the last snapshot", name)
            interval = trainer.config.model_publish_interval if trainer.config else 1.0
            self._trainers[loop_id] = (trainer, lock, time.monotonic() + interval)
        return learned

    def _loops(self) -> list[tuple[int, str]]:
        with self.db.session() as session:
            query = select(Loop.id, Loop.name).order_by(Loop.id)
            if self.loop_names:
                query = query.where(Loop.name.in_(self.loop_names))
            return [(row.id, row.name) for row in session.execute(query)]

    def close(self) -> None:
        for trainer, lock, _ in self._trainers.values():
            trainer.close()
            lock.release()
        self._trainers.clear()

