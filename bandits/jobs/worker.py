"""Submitting, reading and running jobs: what the api, ``bandits worker`` and ``bandits evaluate``
share.

A worker claims one job at a time (see :func:`bandits.store.jobs.claim`), renews its heartbeat
with every page it evaluates, and writes the result (or the error) to the job's row. If its
claim was taken over meanwhile (it stalled past ``stale_after``), it stops without writing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from bandits.errors import conflict, not_found
from bandits.jobs import evaluation, tuning
from bandits.loop_config import LoopConfig
from bandits.schemas import EvaluationRequest, TuningRequest
from bandits.services.loops import loop_or_404
from bandits.store import jobs as store
from bandits.store import loops as loop_store
from bandits.store.db import Database, iso
from bandits.store.jobs import count_window
from bandits.store.models import Decision, Job, Loop, Model

log = logging.getLogger(__name__)

STALE_AFTER = 120.0  # seconds without a heartbeat before a running job is claimed again
MAX_ATTEMPTS = 3
HEARTBEAT_EVERY = 5.0  # seconds between heartbeats (progress is written with them)


class JobLost(Exception):
    """Another worker claimed the job (this one stalled past ``stale_after``)."""


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress,
        "spec": job.spec, "result": job.result, "error": job.error, "attempts": job.attempts,
        "created_at": iso(job.created_at), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# What runs a job of each kind: (db, loop id, loop config, spec, progress) -> result.
RUNNERS = {evaluation.KIND: evaluation.run_evaluation, tuning.KIND: tuning.run_tuning}


class _JobService:
    """Reading and listing the jobs of one kind (``noun`` names them in errors)."""

    kind = ""
    noun = ""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _job(self, name: str, job_id: int, session) -> tuple[Loop, Job]:
        loop = loop_or_404(name, session)
        job = store.get_job(loop.id, job_id, session=session) if 0 < job_id < 2**31 else None
        if job is None or job.kind != self.kind:
            raise not_found(f"{self.noun.capitalize()}NotFound",
                            f"loop {name!r} has no {self.noun} {job_id}", "id")
        return loop, job

    def get(self, name: str, job_id: int) -> dict[str, Any]:
        with self._db.session() as session:
            return job_json(self._job(name, job_id, session)[1])

    def list(self, name: str, limit: int) -> dict[str, Any]:
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            return {"jobs": [job_json(job) for job in store.list_jobs(loop.id, self.kind, limit, session=session)]}


class EvaluationService(_JobService):
    kind, noun = evaluation.KIND, "evaluation"

    def submit(self, name: str, request: EvaluationRequest, claimed_by: str | None = None) -> dict[str, Any]:
        """Check the request against the loop (4xx, nothing written) and queue the job."""
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            config = LoopConfig.model_validate(loop.config)

            def model_exists(version: int) -> bool:
                return session.scalar(select(Model.version).where(
                    Model.loop_id == loop.id, Model.version == version)) is not None

            spec = evaluation.checked_spec(request, loop.kind, config, model_exists)
            return job_json(store.add_job(loop.id, self.kind, spec, session=session, claimed_by=claimed_by))


class TuningService(_JobService):
    kind, noun = tuning.KIND, "tuning"

    def submit(self, name: str, request: TuningRequest, claimed_by: str | None = None) -> dict[str, Any]:
        """Check the request against the loop and its window (4xx, nothing written); queue it."""
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            config = LoopConfig.model_validate(loop.config)
            spec = tuning.checked_spec(
                request, loop.kind, config,
                lambda since, until: count_window(loop.id, since, until, session=session))
            return job_json(store.add_job(loop.id, self.kind, spec, session=session, claimed_by=claimed_by))

    def apply(self, name: str, job_id: int, rebuild: bool) -> dict[str, Any]:
        """Set the loop's weights to the tuning's recommendation: a new config version that
        records the tuning; with ``rebuild``, also a new model lineage and every retained
        decision marked to be learned again (with the new weights)."""
        with self._db.session() as session:
            loop, job = self._job(name, job_id, session)
            if job.status != store.SUCCEEDED:
                raise conflict("TuningNotDone", f"tuning {job_id} is {job.status}; only a "
                               "succeeded tuning can be applied", "id")
            recommendation = job.result["recommendation"]
            if recommendation["action"] != "apply":
                raise conflict("NothingToApply", f"tuning {job_id} recommends keeping the current "
                               f"weights: {recommendation['reason']}", "id")
            loop = loop_store.lock_loop(loop.id, session=session)
            config = LoopConfig.model_validate(loop.config)
            if [o.name for o in config.objectives] != job.spec["objectives"]:
                raise conflict("ConfigChanged", "the loop's objectives changed since the tuning "
                               "ran; run a new tuning", "id")
            weights = recommendation["weights"]
            changed = config.model_copy(update={"objectives": [
                o.model_copy(update={"weight": weights[o.name]}) for o in config.objectives]})
            loop = loop_store.update_loop_config(loop, changed.to_json(), rebuild, session=session,
                                                 source=f"tuning:{job_id}")
            relearn = 0
            if rebuild:
                relearn = session.execute(update(Decision).where(Decision.loop_id == loop.id).values(
                    learned_at=None, learned_version=None)).rowcount
            session.flush()
            return {"loop": loop.name, "config_version": loop.config_version, "tuning": job_id,
                    "weights": weights, "model_reset": rebuild, "relearning": relearn}


def run_job(db: Database, job_id: int, worker: str,
            on_progress: Callable[[float], None] = lambda fraction: None) -> bool:
    """Run a job this worker has claimed; True when it succeeded."""
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        loop = session.get(Loop, job.loop_id)
        assert loop is not None
        config, spec, loop_id, kind = LoopConfig.model_validate(loop.config), job.spec, loop.id, job.kind
    last_beat = [time.monotonic()]

    def progress(fraction: float) -> None:
        on_progress(fraction)
        if time.monotonic() - last_beat[0] >= HEARTBEAT_EVERY or fraction >= 1.0:
            last_beat[0] = time.monotonic()
            with db.session() as session:
                if not store.heartbeat(job_id, worker, fraction, session=session):
                    raise JobLost(job_id)

    try:
        result = RUNNERS[kind](db, loop_id, config, spec, progress)
    except JobLost:
        log.warning("job %d was claimed by another worker; dropped", job_id)
        return False
    except Exception as exc:  # the job failed, not the worker: record why and carry on
        log.exception("job %d failed", job_id)
        with db.session() as session:
            store.finish(job_id, worker, error=f"{type(exc).__name__}: {exc}", session=session)
        return False
    with db.session() as session:
        return store.finish(job_id, worker, result=result, session=session)


class Worker:
    """Claims and runs jobs until stopped."""

    def __init__(self, db: Database, name: str | None = None, stale_after: float = STALE_AFTER,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.db = db
        self.name = name or worker_name()
        self.stale_after = stale_after
        self.max_attempts = max_attempts

    def claim(self) -> int | None:
        with self.db.session() as session:
            job = store.claim(self.name, self.stale_after, self.max_attempts, session=session)
            return job.id if job is not None else None

    def run_once(self) -> int | None:
        """Claim and run one job; its id, or None when there was nothing to do."""
        job_id = self.claim()
        if job_id is None:
            return None
        log.info("worker %s: job %d claimed", self.name, job_id)
        run_job(self.db, job_id, self.name)
        return job_id

    def run(self, once: bool = False, poll: float = 1.0) -> None:
        while True:
            ran = self.run_once()
            if ran is None:
                if once:
                    return
                time.sleep(poll)

