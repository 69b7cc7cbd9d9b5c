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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import orjson
from sqlalchemy import select

from bandits.learning.examples import (
    SlotExample, ccb_text, labelled_slots, labelled_text, slates_text, slot_pmfs,
)
from bandits.learning.features import action_line, namespaces_text, shared_line
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
# Events read per statement while the previous chunk is learned (the first chunk is smaller, so
# that learning starts soon).
FIRST_CHUNK = 1_000
CHUNK = 5_000


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
    action_cache: dict[str, tuple[list[str], list[str], list[str | None]]] = field(
        default_factory=dict, repr=False
    )

    def step(self, limit: int = BATCH_LIMIT) -> int:
        """Learn what is learnable now and publish one snapshot; returns the events learned.

        While this thread learns a chunk of events, one background thread reads the next chunk
        and another marks the chunk before as learned, so the database works while VW does.
        On Postgres the marks and the snapshot are one transaction, opened at the first mark (a
        kill at any moment rolls it all back). On SQLite, whose writer would block every choose
        meanwhile, the marks and the snapshot are one short write transaction at the end.
        """
        now = utcnow()
        with self.db.session() as session:
            self._sync(session)
        assert self.config is not None and self.learner is not None
        if self.config.learning_mode == "logging_only":
            return 0
        early = [o.name for o in self.config.objectives] if complete_early(self.config) else None
        version = self.version + 1
        with ExitStack() as stack:
            reader = stack.enter_context(self.db.engine.connect())
            writer = stack.enter_context(self.db.engine.connect())
            event_ids = training.learnable_ids(
                reader, self.loop_id, self.config.reward_wait, early, now, limit,
                per_slot=self.config.kind == "ccb",
            )
            reader.rollback()  # reads see what is committed when they run, in no one snapshot
            if not event_ids:
                return 0
            mark_early = writer.dialect.name == "postgresql"
            reads = _single_thread(stack, "trainer-read")
            marks = _single_thread(stack, "trainer-mark")
            chunks = _chunks(event_ids)
            try:
                pending = reads.submit(training.learn_rows, reader, self.loop_id, chunks[0])
                marked = []
                for index, chunk in enumerate(chunks):
                    rows = pending.result()
                    if index + 1 < len(chunks):
                        pending = reads.submit(training.learn_rows, reader, self.loop_id, chunks[index + 1])
                    for row in rows:
                        self._learn(row)
                    if mark_early:
                        marked.append(marks.submit(
                            training.mark_learned, writer, self.loop_id, version, chunk, now
                        ))
                for future in marked:
                    future.result()
                if not training.lineage_is_current(writer, self.loop_id, self.lineage):
                    # A reset or a rebuild (an applied tuning) started a new lineage meanwhile:
                    # what this step learned belongs to the old one. Nothing is marked.
                    writer.rollback()
                    self._forget()
                    log.info("loop %s: a new model lineage started; step dropped", self.name)
                    return 0
                if not mark_early:
                    training.mark_learned(writer, self.loop_id, version, event_ids, now)
                model = Model(
                    loop_id=self.loop_id, version=version, lineage=self.lineage,
                    config_version=self.config_version, blob=self.learner.snapshot(),
                    events_learned=len(event_ids), total_learned=self.total_learned + len(event_ids),
                    source="trainer", created_at=now, apprentice_agreement=self.agreement(),
                )
                training.add_model(writer, model)
                writer.commit()
            except BaseException:
                self._forget()  # the learner holds events that were not committed: start over
                raise
        self.version = version
        self.total_learned = model.total_learned
        log.info("loop %s: model %d published, %d events learned", self.name, version, len(event_ids))
        self._maybe_graduate()
        return len(event_ids)

    def _learn(self, row: training.LearnRow) -> None:
        assert self.config is not None and self.learner is not None
        if row.slots is not None:
            self._learn_slots(row)
            return
        ids, all_lines, _ = self._action_lines(row.actions)
        if len(row.excluded) > 2:  # not "[]"
            excluded = set(orjson.loads(row.excluded))
            offered = [i for i, action_id in enumerate(ids) if action_id not in excluded]
            ids = [ids[i] for i in offered]
            lines = [all_lines[i] for i in offered]
        else:
            lines = all_lines
        chosen = ids.index(row.chosen)
        shared = shared_line(orjson.loads(row.context))
        if row.learning_mode == "apprentice" and self.config.learning_mode == "apprentice":
            pmf = self.learner.predict(shared, lines)
            own_pick = ids[max(range(len(pmf)), key=pmf.__getitem__)]
            self._agree(own_pick == row.baseline)
        reward = scalar_reward(self.config, row.outcomes.get(None, []))
        self.learner.learn(shared, lines, chosen, cost(reward), row.probability)

    def _learn_slots(self, row: training.LearnRow) -> None:
        """``ccb``: each slot labelled with its own cost (its outcomes, defaults where none came);
        ``slates``: one cost for the slate. Each slot keeps the actions it could take
        (:func:`bandits.learning.examples.labelled_slots`, which evaluation replays share)."""
        assert self.config is not None and self.learner is not None
        kind = self.config.kind
        ids, lines, action_slots = self._action_lines(row.actions)
        context = namespaces_text(orjson.loads(row.context))
        logged = orjson.loads(row.slots)
        examples = labelled_slots(self.config, ids, action_slots, logged, row.outcomes)
        if row.learning_mode == "apprentice" and self.config.learning_mode == "apprentice":
            unlabelled = [SlotExample(e.line, e.allowed) for e in examples]
            text = (ccb_text if kind == "ccb" else slates_text)(context, lines, unlabelled)
            picks = slot_pmfs(kind, unlabelled, self.learner.predict_slots(text), len(ids))
            for (_, pmf), slot in zip(picks, logged):  # the model's most probable pick, per slot
                self._agree(ids[max(range(len(pmf)), key=pmf.__getitem__)] == slot["baseline"])
        self.learner.learn_text(labelled_text(self.config, context, lines, examples, row.outcomes))

    def _agree(self, agreed: bool) -> None:
        """Apprentice mode: note whether the model's own pick was the baseline."""
        assert self.config is not None
        self.agreements.append(int(agreed))
        while len(self.agreements) > self.config.apprentice_events:
            self.agreements.popleft()

    def _action_lines(self, actions_json: str) -> tuple[list[str], list[str], list[str | None]]:
        """Ids, VW lines and slots (``slates``) of a logged action list, remembered by its JSON
        text."""
        cached = self.action_cache.get(actions_json)
        if cached is None:
            actions = orjson.loads(actions_json)
            cached = (
                [a["id"] for a in actions], [action_line(a["id"], a.get("features")) for a in actions],
                [a.get("slot") for a in actions],
            )
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


def _chunks(event_ids: list[str]) -> list[list[str]]:
    """The first chunk small, so that learning starts soon; then :data:`CHUNK` at a time."""
    first = event_ids[:FIRST_CHUNK]
    rest = event_ids[FIRST_CHUNK:]
    return [first] + [rest[i:i + CHUNK] for i in range(0, len(rest), CHUNK)]


def _single_thread(stack: ExitStack, name: str) -> ThreadPoolExecutor:
    """A one-thread executor (tasks run in the order submitted) that ``stack`` shuts down,
    dropping what has not started and waiting for what has: when the step ends, the connections
    the tasks use are the step's again."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    stack.callback(executor.shutdown, wait=True, cancel_futures=True)
    return executor


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

