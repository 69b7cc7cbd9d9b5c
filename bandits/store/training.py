"""What the trainer reads and writes: learnable decisions, their outcomes, model snapshots."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection, and_, bindparam, func, insert, or_, select, text, update,
)
from sqlalchemy.orm import Session

from bandits.store.models import Decision, Loop, LoopConfigVersion, Model, Outcome


# The JSON documents come back as text: the trainer parses them with orjson, and skips parsing
# the actions altogether when it has seen the same list before (products offer the same actions
# again and again). Plain SQL, because at tens of thousands of rows per second the ORM's row
# handling would cost more than the query.
_LEARN_DECISIONS = (
    "SELECT d.event_id, CAST(d.context AS TEXT), "
    "COALESCE(CAST(d.actions AS TEXT), CAST(p.actions AS TEXT)), CAST(d.excluded AS TEXT), "
    "d.baseline, d.chosen, d.probability, d.learning_mode, NULLIF(CAST(d.slots AS TEXT), 'null') "
    "FROM decisions AS d LEFT JOIN action_pools AS p "
    "ON p.loop_id = d.loop_id AND p.digest = d.actions_pool "  # the actions, where they are stored
    "WHERE d.loop_id = :loop_id AND d.event_id {ids}"
)
_LEARN_OUTCOMES = (
    "SELECT event_id, slot, objective, value FROM outcomes "
    "WHERE loop_id = :loop_id AND NOT late AND event_id {ids} ORDER BY ts, id"
)

# Rows fetched per statement on SQLite (its limit on bound parameters is 32,766).
SQLITE_CHUNK = 5000


class LearnRow(NamedTuple):
    """A decision to learn, its JSON columns as text, with its on-time outcomes."""

    event_id: str
    context: str
    actions: str
    excluded: str
    baseline: str | None
    chosen: str
    probability: float
    learning_mode: str
    slots: str | None  # ccb, slates: the logged slots; None for cb (SQLite's JSON null too)
    # (objective, value) pairs in arrival order, by slot (None: the decision's, not a slot's)
    outcomes: dict[str | None, list[tuple[str, float]]]


def _ready(loop_id: int, reward_wait: float, objectives: list[str] | None, now: datetime, per_slot: bool):
    """The condition for a decision being learnable now (see :func:`learnable_ids`)."""
    closed_before = now - timedelta(seconds=reward_wait)
    ready = or_(
        and_(Decision.deferred.is_(False), Decision.ts <= closed_before),
        and_(Decision.deferred.is_(True), Decision.activated_at <= closed_before),
    )
    if objectives is not None:
        # Correlated, so it runs once per unlearned decision through the outcomes index: the
        # work follows what waits to be learned, not the size of the log, whatever the planner's
        # statistics say (an uncorrelated GROUP BY over the loop's outcomes did not).
        # ccb: every slot has its own outcomes, so count (slot, objective) pairs.
        outcome_key = (
            func.coalesce(Outcome.slot, "") + "\x1f" + Outcome.objective if per_slot else Outcome.objective
        )
        needed = len(objectives) * func.json_array_length(Decision.slots) if per_slot else len(objectives)
        objectives_in = (
            select(func.count(func.distinct(outcome_key)))
            .where(
                Outcome.loop_id == Decision.loop_id,
                Outcome.event_id == Decision.event_id,
                Outcome.late.is_(False),
                Outcome.objective.in_(objectives),  # objectives the loop no longer has do not count
            )
            .scalar_subquery()
        )
        active = or_(Decision.deferred.is_(False), Decision.activated_at.is_not(None))
        ready = or_(ready, and_(active, objectives_in >= needed))
    return and_(Decision.loop_id == loop_id, Decision.learned_at.is_(None), ready)


def learnable_ids(
    connection: Connection, loop_id: int, reward_wait: float, objectives: list[str] | None,
    now: datetime, limit: int, per_slot: bool = False,
) -> list[str]:
    """Ids of the unlearned decisions whose reward window has closed, oldest first.

    The window starts at the decision, or at its activation for a deferred one (a deferred
    decision never activated is never learnable). With ``objectives`` (the loop's, when every one
    uses ``earliest``), a decision is also learnable as soon as each has an on-time outcome
    (``per_slot``, for ccb: in each of its slots).
    """
    return list(connection.scalars(
        select(Decision.event_id)
        .where(_ready(loop_id, reward_wait, objectives, now, per_slot))
        .order_by(Decision.ts, Decision.event_id)
        .limit(limit)
    ))


def _by_ids(connection: Connection, sql: str):
    """``sql`` with its ``{ids}`` matching the list parameter ``ids``: one array parameter on
    Postgres (every lookup goes through the index, whatever the planner's statistics say), an
    expanded ``IN`` elsewhere."""
    if connection.dialect.name == "postgresql":
        return text(sql.format(ids="= ANY(CAST(:ids AS TEXT[]))"))
    return text(sql.format(ids="IN :ids")).bindparams(bindparam("ids", expanding=True))


def learn_rows(connection: Connection, loop_id: int, event_ids: list[str]) -> list[LearnRow]:
    """The decisions ``event_ids``, in that order, each with its on-time outcomes."""
    rows: dict[str, Any] = {}
    outcomes: dict[str, dict[str | None, list[tuple[str, float]]]] = {}
    decisions_sql = _by_ids(connection, _LEARN_DECISIONS)
    outcomes_sql = _by_ids(connection, _LEARN_OUTCOMES)
    step = len(event_ids) if connection.dialect.name == "postgresql" else SQLITE_CHUNK
    for start in range(0, len(event_ids), step or 1):
        parameters = {"loop_id": loop_id, "ids": event_ids[start:start + step]}
        for row in connection.execute(decisions_sql, parameters):
            rows[row[0]] = row
        for event_id, slot, objective, value in connection.execute(outcomes_sql, parameters):
            outcomes.setdefault(event_id, {}).setdefault(slot, []).append((objective, value))
    return [LearnRow(*rows[event_id], outcomes.get(event_id, {})) for event_id in event_ids]


def mark_learned(
    connection: Connection, loop_id: int, version: int, event_ids: list[str], now: datetime
) -> None:
    """Mark ``event_ids`` as learned by snapshot ``version``, in the caller's transaction.

    Raises when an event was already marked (another trainer learned it): the caller must roll
    back, so no event is ever learned twice.
    """
    if connection.dialect.name == "postgresql":
        marked = connection.execute(
            text(
                "UPDATE decisions SET learned_at = :now, learned_version = :version "
                "FROM unnest(CAST(:ids AS text[])) AS learned(event_id) "
                "WHERE decisions.loop_id = :loop_id AND decisions.event_id = learned.event_id "
                "AND decisions.learned_at IS NULL"
            ),
            {"now": now, "version": version, "ids": event_ids, "loop_id": loop_id},
        ).rowcount
    else:
        table = Decision.__table__
        marked = connection.execute(
            update(table)
            .where(
                table.c.loop_id == loop_id,
                table.c.event_id == bindparam("learned_id"),
                table.c.learned_at.is_(None),
            )
            .values(learned_at=now, learned_version=version),
            [{"learned_id": event_id} for event_id in event_ids],
        ).rowcount
    if marked != len(event_ids):
        raise RuntimeError(
            f"{len(event_ids) - marked} of {len(event_ids)} events were already learned; "
            "is another trainer running on this loop?"
        )


def add_model(connection: Connection, model: Model) -> None:
    """Insert a snapshot, in the caller's transaction."""
    values = {column.key: getattr(model, column.key) for column in Model.__table__.columns
              if getattr(model, column.key) is not None}
    connection.execute(insert(Model), values)


def lineage_is_current(connection: Connection, loop_id: int, lineage: int) -> bool:
    """Whether ``lineage`` is still the loop's, read in the caller's transaction. On Postgres
    the loop's row is locked ``FOR SHARE`` first: a config change in flight (which holds it
    ``FOR UPDATE``) commits before this reads, and one that comes later waits for the caller's
    commit."""
    if connection.dialect.name == "postgresql":
        connection.execute(select(Loop.id).where(Loop.id == loop_id).with_for_update(read=True))
    current = connection.scalar(
        select(func.max(LoopConfigVersion.version)).where(
            LoopConfigVersion.loop_id == loop_id, LoopConfigVersion.model_reset.is_(True))
    ) or 1
    return current == lineage


def current_lineage(loop_id: int, *, session: Session) -> int:
    """The config version that started the loop's current model line."""
    return session.scalar(
        select(func.max(LoopConfigVersion.version)).where(
            LoopConfigVersion.loop_id == loop_id, LoopConfigVersion.model_reset.is_(True)
        )
    ) or 1


def latest_model(loop_id: int, *, session: Session) -> Model | None:
    return session.scalars(
        select(Model).where(Model.loop_id == loop_id).order_by(Model.version.desc()).limit(1)
    ).first()


def served_version(loop_id: int, *, session: Session) -> tuple[int, int]:
    """(current lineage, version served): the newest snapshot if it belongs to the current
    lineage, else 0, the empty model (a snapshot of an older lineage is not this config's model).
    """
    lineage = current_lineage(loop_id, session=session)
    newest = latest_version(loop_id, session=session)
    return lineage, newest[0] if newest is not None and newest[1] == lineage else 0


def latest_version(loop_id: int, *, session: Session) -> tuple[int, int] | None:
    """(version, lineage) of the newest snapshot, without loading its blob."""
    row = session.execute(
        select(Model.version, Model.lineage)
        .where(Model.loop_id == loop_id)
        .order_by(Model.version.desc())
        .limit(1)
    ).first()
    return (row.version, row.lineage) if row else None


def list_models(loop_id: int, limit: int, *, session: Session) -> list[Any]:
    """Snapshot metadata, newest first, with each blob's size in bytes (``size_bytes``) but not
    the blob itself."""
    return list(session.execute(
        select(
            Model.version, Model.lineage, Model.config_version, Model.events_learned,
            Model.total_learned, Model.source, Model.created_at, Model.apprentice_agreement,
            func.length(Model.blob).label("size_bytes"),
        )
        .where(Model.loop_id == loop_id)
        .order_by(Model.version.desc())
        .limit(limit)
    ))


def model_blob(loop_id: int, version: int, *, session: Session) -> bytes | None:
    """The VW model file of one snapshot, or None when the loop has no such version."""
    return session.scalar(
        select(Model.blob).where(Model.loop_id == loop_id, Model.version == version)
    )


def lineage_total_learned(loop_id: int, lineage: int, *, session: Session) -> int:
    """``total_learned`` of the newest snapshot of ``lineage`` (0 when it has none)."""
    return session.scalar(
        select(Model.total_learned)
        .where(Model.loop_id == loop_id, Model.lineage == lineage)
        .order_by(Model.version.desc())
        .limit(1)
    ) or 0
