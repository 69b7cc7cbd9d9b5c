"""The jobs table and the decision log as evaluation jobs read it (keyset pages, no HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, Text, and_, any_, bindparam, cast, func, or_, select, update
from sqlalchemy.orm import Session

from bandits.store.db import Database, utcnow
from bandits.store.decisions import LOGGED_ACTIONS, LOGGED_ACTIONS_TEXT, WITH_ACTION_POOLS
from bandits.store.models import Decision, Job, Outcome

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


def add_job(loop_id: int, kind: str, spec: dict[str, Any], *, session: Session,
            claimed_by: str | None = None) -> Job:
    """A new job, queued (or already running for ``claimed_by``, e.g. ``bandits evaluate``)."""
    now = utcnow()
    job = Job(loop_id=loop_id, kind=kind, spec=spec, status=QUEUED, progress=0.0, attempts=0,
              created_at=now)
    if claimed_by is not None:
        job.status, job.claimed_by, job.heartbeat_at, job.started_at, job.attempts = (
            RUNNING, claimed_by, now, now, 1)
    session.add(job)
    session.flush()
    return job


def claim(worker: str, stale_after: float, max_attempts: int, *, session: Session) -> Job | None:
    """Take the oldest queued job, or a running one whose heartbeat is older than
    ``stale_after`` seconds (its worker died). A stale job already claimed ``max_attempts``
    times is failed instead. Postgres: ``FOR UPDATE SKIP LOCKED``, so workers never wait for each
    other; SQLite has one writer, and the conditional update below settles any race."""
    now = utcnow()
    stale = now - timedelta(seconds=stale_after)
    query = (
        select(Job)
        .where(or_(Job.status == QUEUED, and_(Job.status == RUNNING, Job.heartbeat_at < stale)))
        .order_by(Job.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    job = session.scalars(query).first()
    if job is None:
        return None
    seen = and_(Job.id == job.id, Job.status == job.status, Job.attempts == job.attempts)
    if job.status == RUNNING and job.attempts >= max_attempts:
        session.execute(update(Job).where(seen).values(
            status=FAILED, finished_at=now,
            error=f"its worker stopped sending heartbeats {job.attempts} times; not retried"))
        return None
    claimed = session.execute(update(Job).where(seen).values(
        status=RUNNING, claimed_by=worker, heartbeat_at=now, attempts=job.attempts + 1,
        started_at=now, progress=0.0))
    if claimed.rowcount != 1:
        return None
    session.refresh(job)
    return job


def heartbeat(job_id: int, worker: str, progress: float, *, session: Session) -> bool:
    """Renew the claim and note progress; False when the job is no longer this worker's."""
    renewed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == worker, Job.status == RUNNING)
        .values(heartbeat_at=utcnow(), progress=progress)
    )
    return renewed.rowcount == 1


def finish(job_id: int, worker: str, *, session: Session, result: dict[str, Any] | None = None,
           error: str | None = None) -> bool:
    """Record the result (or the error) if the job is still this worker's."""
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == worker, Job.status == RUNNING)
        .values(status=FAILED if error is not None else SUCCEEDED, result=result, error=error,
                progress=1.0 if error is None else Job.progress, finished_at=utcnow(),
                heartbeat_at=utcnow())
    )
    return done.rowcount == 1


def get_job(loop_id: int, job_id: int, *, session: Session) -> Job | None:
    return session.scalars(select(Job).where(Job.loop_id == loop_id, Job.id == job_id)).first()


def list_jobs(loop_id: int, kind: str, limit: int, *, session: Session) -> list[Job]:
    return list(session.scalars(
        select(Job).where(Job.loop_id == loop_id, Job.kind == kind).order_by(Job.id.desc()).limit(limit)
    ))


# -- the decision log, as evaluations read it -------------------------------------------------

class LoggedEvent(NamedTuple):
    """A decision and its outcomes ((objective, value) pairs in arrival order).

    ``slots`` is the per-slot log of ``ccb`` and ``slates`` decisions (``None`` for ``cb``);
    ``slot_outcomes`` holds the outcomes that name a slot (``ccb``), by slot id."""

    event_id: str
    ts: datetime
    context: dict[str, Any]
    actions: list[dict[str, Any]]
    excluded: list[str]
    baseline: str | None
    chosen: str
    probability: float
    pmf: list[float]
    outcomes: list[tuple[str, float]]
    slots: list[dict[str, Any]] | None = None
    slot_outcomes: dict[str, list[tuple[str, float]]] | None = None
    # Read by exports (``window_pages(..., unactivated=True)``): the model that chose, and
    # whether the decision was deferred and never activated (logged, never shown).
    model_version: int | None = None
    unactivated: bool = False


def _window(loop_id: int, since: datetime, until: datetime, unactivated: bool = False):
    in_window = and_(Decision.loop_id == loop_id, Decision.ts >= since, Decision.ts < until)
    if unactivated:
        return in_window
    # A deferred decision that was never activated was never shown: nothing to evaluate.
    return and_(in_window, or_(Decision.deferred.is_(False), Decision.activated_at.is_not(None)))


def count_window(loop_id: int, since: datetime, until: datetime, *, session: Session,
                 unactivated: bool = False) -> int:
    return session.scalar(select(func.count()).select_from(Decision).where(
        _window(loop_id, since, until, unactivated))) or 0


def window_position(loop_id: int, since: datetime, until: datetime, rank: int, *,
                    session: Session) -> tuple[datetime, str] | None:
    """(ts, event_id) of the window's decision at 0-based ``rank`` in time order (None past the
    end): where :func:`window_pages` resumes to skip the ones before it without reading them."""
    row = session.execute(
        select(Decision.ts, Decision.event_id).where(_window(loop_id, since, until))
        .order_by(Decision.ts, Decision.event_id).offset(rank).limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else None


class LoggedText(NamedTuple):
    """A ``cb`` decision as tuning jobs read it: its JSON columns as text, which the reader
    parses (the actions only when it has not seen the same list: products offer the same actions
    again and again), and its outcomes as in :class:`LoggedEvent`."""

    event_id: str
    ts: datetime
    context: str
    actions: str
    excluded: str | None
    chosen: str
    probability: float
    outcomes: list[tuple[str, float]]


def window_pages(db: Database, loop_id: int, since: datetime, until: datetime,
                 page_size: int = 1000, unactivated: bool = False,
                 after: tuple[datetime, str] | None = None) -> Iterator[list[LoggedEvent]]:
    """The window's decisions in time order (ts, then event_id), ``page_size`` at a time, with
    their outcomes (late ones too: they happened). Keyset pages, each read in its own short
    transaction, so memory and locks do not grow with the window.

    ``unactivated``: include the deferred decisions never activated too (exports mark them so
    that VW skips them), flagged in :attr:`LoggedEvent.unactivated`. ``after``: start after this
    (ts, event_id), e.g. from :func:`window_position`."""
    columns = (Decision.event_id, Decision.ts, Decision.context, LOGGED_ACTIONS,
               Decision.excluded, Decision.baseline, Decision.chosen, Decision.probability,
               Decision.pmf, Decision.slots, Decision.model_version,
               Decision.deferred & Decision.activated_at.is_(None))
    for rows, outcomes, per_slot in _pages(db, loop_id, since, until, page_size, unactivated,
                                           after, columns):
        yield [LoggedEvent(*row[:9], outcomes.get(row[0], []), row[9], per_slot.get(row[0], {}),
                           row[10], bool(row[11]))
               for row in rows]


def window_text_pages(db: Database, loop_id: int, since: datetime, until: datetime,
                      page_size: int = 1000, after: tuple[datetime, str] | None = None
                      ) -> Iterator[list[LoggedText]]:
    """:func:`window_pages` for tuning jobs: :class:`LoggedText` rows, without the columns they
    do not read (PMF, slots, baseline). Decoding every decision's actions was most of the cost of
    reading a page."""
    columns = (Decision.event_id, Decision.ts, cast(Decision.context, Text),
               LOGGED_ACTIONS_TEXT, cast(Decision.excluded, Text), Decision.chosen,
               Decision.probability)
    for rows, outcomes, _ in _pages(db, loop_id, since, until, page_size, False, after, columns):
        yield [LoggedText(*row, outcomes.get(row[0], [])) for row in rows]


def _pages(db: Database, loop_id: int, since: datetime, until: datetime, page_size: int,
           unactivated: bool, after: tuple[datetime, str] | None, columns: tuple
           ) -> Iterator[tuple[list, dict[str, list[tuple[str, float]]],
                               dict[str, dict[str, list[tuple[str, float]]]]]]:
    """Keyset pages of ``columns`` (event_id and ts first), each with its outcomes: those
    without a slot by event, and those naming a slot by event and slot."""
    while True:
        condition = _window(loop_id, since, until, unactivated)
        if after is not None:
            # ts >= the last one's: a range the (loop_id, ts) index starts at, so each page costs
            # its own rows, not a scan from the window's start (the OR alone is not sargable).
            condition = and_(condition, Decision.ts >= after[0],
                             or_(Decision.ts > after[0],
                                 and_(Decision.ts == after[0], Decision.event_id > after[1])))
        with db.session() as session:
            rows = session.execute(
                select(*columns).select_from(WITH_ACTION_POOLS).where(condition)
                .order_by(Decision.ts, Decision.event_id)
                .limit(page_size)
            ).all()
            if not rows:
                return
            outcomes: dict[str, list[tuple[str, float]]] = {}
            per_slot: dict[str, dict[str, list[tuple[str, float]]]] = {}
            ids = [row[0] for row in rows]
            if session.get_bind().dialect.name == "postgresql":
                # One array parameter: a short statement psycopg parses once, not a new one with
                # a thousand placeholders per page (a tenth of reading a page).
                of_page = Outcome.event_id == any_(bindparam("ids", ids, type_=ARRAY(Text)))
            else:
                of_page = Outcome.event_id.in_(ids)
            for event_id, objective, value, slot in session.execute(
                select(Outcome.event_id, Outcome.objective, Outcome.value, Outcome.slot)
                .where(Outcome.loop_id == loop_id, of_page).order_by(Outcome.ts, Outcome.id)
            ):
                if slot is None:
                    outcomes.setdefault(event_id, []).append((objective, value))
                else:
                    per_slot.setdefault(event_id, {}).setdefault(slot, []).append((objective, value))
        yield rows, outcomes, per_slot
        after = (rows[-1][1], rows[-1][0])
