"""What the trainer reads and writes: learnable decisions, their outcomes, model snapshots."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, and_, any_, bindparam, cast, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from bandits.store.models import Decision, LoopConfigVersion, Model, Outcome


# The JSON documents come back as text: the trainer parses them with orjson, and skips parsing
# the actions altogether when it has seen the same list before (products offer the same actions
# again and again).
LEARN_COLUMNS = (
    Decision.event_id, Decision.ts, cast(Decision.context, Text).label("context"),
    cast(Decision.actions, Text).label("actions"), Decision.excluded, Decision.baseline,
    Decision.chosen, Decision.probability, Decision.learning_mode,
)


def _ready(loop_id: int, reward_wait: float, n_objectives: int | None, now: datetime):
    """The condition for a decision being learnable now (see :func:`learnable`)."""
    closed_before = now - timedelta(seconds=reward_wait)
    ready = or_(
        and_(Decision.deferred.is_(False), Decision.ts <= closed_before),
        and_(Decision.deferred.is_(True), Decision.activated_at <= closed_before),
    )
    if n_objectives is not None:
        # Correlated, so it runs once per unlearned decision through the outcomes index: the
        # work follows what waits to be learned, not the size of the log, whatever the planner's
        # statistics say (an uncorrelated GROUP BY over the loop's outcomes did not).
        objectives_in = (
            select(func.count(func.distinct(Outcome.objective)))
            .where(
                Outcome.loop_id == Decision.loop_id,
                Outcome.event_id == Decision.event_id,
                Outcome.late.is_(False),
            )
            .scalar_subquery()
        )
        active = or_(Decision.deferred.is_(False), Decision.activated_at.is_not(None))
        ready = or_(ready, and_(active, objectives_in >= n_objectives))
    return and_(Decision.loop_id == loop_id, Decision.learned_at.is_(None), ready)


def learnable(
    loop_id: int, reward_wait: float, n_objectives: int | None, now: datetime, limit: int,
    *, session: Session,
) -> list[Any]:
    """Unlearned decisions whose reward window has closed, oldest first (rows of
    :data:`LEARN_COLUMNS`).

    The window starts at the decision, or at its activation for a deferred one (a deferred
    decision never activated is never learnable). With ``n_objectives`` (every objective uses
    ``earliest``), a decision is also learnable as soon as each objective has an on-time outcome.
    """
    return list(
        session.execute(
            select(*LEARN_COLUMNS)
            .where(_ready(loop_id, reward_wait, n_objectives, now))
            .order_by(Decision.ts, Decision.event_id)
            .limit(limit)
        )
    )


def on_time_outcomes(
    loop_id: int, event_ids: list[str], *, session: Session
) -> dict[str, list[tuple[str, float]]]:
    """(objective, value) pairs in arrival order for each event, late outcomes left out.

    Driven by the event ids (one array parameter on Postgres, chunks elsewhere) so that every
    lookup goes through the outcomes index, whatever the planner's statistics say.
    """
    found: dict[str, list[tuple[str, float]]] = {}
    postgres = session.get_bind().dialect.name == "postgresql"
    chunks = [event_ids] if postgres else [event_ids[i:i + 5000] for i in range(0, len(event_ids), 5000)]
    rows: list[Any] = []
    for chunk in chunks:
        if not chunk:
            continue
        matches = (
            Outcome.event_id == any_(bindparam("ids", value=chunk, type_=ARRAY(Text)))
            if postgres else Outcome.event_id.in_(chunk)
        )
        rows.extend(session.execute(
            select(Outcome.event_id, Outcome.objective, Outcome.value, Outcome.ts, Outcome.id)
            .where(Outcome.loop_id == loop_id, Outcome.late.is_(False), matches)
        ))
    rows.sort(key=lambda row: (row.ts, row.id))
    for event_id, objective, value, _, _ in rows:
        found.setdefault(event_id, []).append((objective, value))
    return found


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


def publish(model: Model, event_ids: list[str], now: datetime, *, session: Session) -> None:
    """Add the snapshot and mark the events it learned, in the caller's transaction.

    Raises when an event was already marked (another trainer learned it): the caller must roll
    back, so no event is ever learned twice.
    """
    session.add(model)
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        marked = session.execute(
            text(
                "UPDATE decisions SET learned_at = :now, learned_version = :version "
                "FROM unnest(CAST(:ids AS text[])) AS learned(event_id) "
                "WHERE decisions.loop_id = :loop_id AND decisions.event_id = learned.event_id "
                "AND decisions.learned_at IS NULL"
            ),
            {"now": now, "version": model.version, "ids": event_ids, "loop_id": model.loop_id},
        ).rowcount
    else:
        table = Decision.__table__
        marked = session.connection().execute(
            update(table)
            .where(
                table.c.loop_id == model.loop_id,
                table.c.event_id == bindparam("learned_id"),
                table.c.learned_at.is_(None),
            )
            .values(learned_at=now, learned_version=model.version),
            [{"learned_id": event_id} for event_id in event_ids],
        ).rowcount
    if marked != len(event_ids):
        raise RuntimeError(
            f"{len(event_ids) - marked} of {len(event_ids)} events were already learned; "
            "is another trainer running on this loop?"
        )


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
