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

from sqlalchemy import select

from bandits.errors import not_found
from bandits.jobs.evaluation import KIND, checked_spec, run_evaluation
from bandits.loop_config import LoopConfig
from bandits.schemas import EvaluationRequest
from bandits.services.loops import loop_or_404
from bandits.store import jobs as store
from bandits.store.db import Database, iso
from bandits.store.models import Job, Loop, Model

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


class EvaluationService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def submit(self, name: str, request: EvaluationRequest, claimed_by: str | None = None) -> dict[str, Any]:
        """Check the request against the loop (4xx, nothing written) and queue the job."""
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            config = LoopConfig.model_validate(loop.config)

            def model_exists(version: int) -> bool:
                return session.scalar(select(Model.version).where(
                    Model.loop_id == loop.id, Model.version == version)) is not None

            spec = checked_spec(request, loop.kind, config, model_exists)
            return job_json(store.add_job(loop.id, KIND, spec, session=session, claimed_by=claimed_by))

    def get(self, name: str, job_id: int) -> dict[str, Any]:
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            job = store.get_job(loop.id, job_id, session=session) if 0 < job_id < 2**31 else None
            if job is None or job.kind != KIND:
                raise not_found("EvaluationNotFound", f"loop {name!r} has no evaluation {job_id}", "id")
            return job_json(job)

    def list(self, name: str, limit: int) -> dict[str, Any]:
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            return {"jobs": [job_json(job) for job in store.list_jobs(loop.id, KIND, limit, session=session)]}


def run_job(db: Database, job_id: int, worker: str,
            on_progress: Callable[[float], None] = lambda fraction: None) -> bool:
    """Run a job this worker has claimed; True when it succeeded."""
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        loop = session.get(Loop, job.loop_id)
        assert loop is not None
        config, spec, loop_id = LoopConfig.model_validate(loop.config), job.spec, loop.id
    last_beat = [time.monotonic()]

    def progress(fraction: float) -> None:
        on_progress(fraction)
        if time.monotonic() - last_beat[0] >= HEARTBEAT_EVERY or fraction >= 1.0:
            last_beat[0] = time.monotonic()
            with db.session() as session:
                if not store.heartbeat(job_id, worker, fraction, session=session):
                    raise JobLost(job_id)

    try:
        result = run_evaluation(db, loop_id, config, spec, progress)
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

