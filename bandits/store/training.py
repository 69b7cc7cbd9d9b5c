"""What the trainer reads and writes: learnable decisions, their outcomes, model snapshots."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from bandits.store.models import Decision, LoopConfigVersion, Model, Outcome


def learnable(
    loop_id: int, reward_wait: float, n_objectives: int | None, now: datetime, limit: int,
    *, session: Session,
) -> list[Decision]:
    """Unlearned decisions whose reward window has closed, oldest first.

    The window starts at the decision, or at its activation for a deferred one (a deferred
    decision never activated is never learnable). With ``n_objectives`` (every objective uses
    ``earliest``), a decision is also learnable as soon as each objective has an on-time outcome.
    """
    closed_before = now - timedelta(seconds=reward_wait)
    started = or_(
        and_(Decision.deferred.is_(False), Decision.ts <= closed_before),
        and_(Decision.deferred.is_(True), Decision.activated_at <= closed_before),
    )
    ready = started
    if n_objectives is not None:
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
        ready = or_(started, and_(active, objectives_in >= n_objectives))
    return list(
        session.scalars(
            select(Decision)
            .where(Decision.loop_id == loop_id, Decision.learned_at.is_(None), ready)
            .order_by(Decision.ts, Decision.event_id)
            .limit(limit)
        )
    )


def on_time_outcomes(
    loop_id: int, event_ids: list[str], *, session: Session
) -> dict[str, list[tuple[str, float]]]:
    """(objective, value) pairs in arrival order for each event, late outcomes left out."""
    found: dict[str, list[tuple[str, float]]] = {}
    if not event_ids:
        return found
    rows = session.execute(
        select(Outcome.event_id, Outcome.objective, Outcome.value)
        .where(Outcome.loop_id == loop_id, Outcome.event_id.in_(event_ids), Outcome.late.is_(False))
        .order_by(Outcome.ts, Outcome.id)
    )
    for event_id, objective, value in rows:
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


def latest_version(loop_id: int, *, session: Session) -> tuple[int, int] | None:
    """(version, lineage) of the newest snapshot, without loading its blob."""
    row = session.execute(
        select(Model.version, Model.lineage)
        .where(Model.loop_id == loop_id)
        .order_by(Model.version.desc())
        .limit(1)
    ).first()
    return (row.version, row.lineage) if row else None


def publish(
    model: Model, event_ids: list[str], now: datetime, *, session: Session
) -> None:
    """Add the snapshot and mark the events it learned, in the caller's transaction.

    Raises when an event was already marked (another trainer learned it): the caller must roll
    back, so no event is ever learned twice.
    """
    session.add(model)
    marked = 0
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start:start + 500]
        marked += session.execute(
            update(Decision)
            .where(
                Decision.loop_id == model.loop_id,
                Decision.event_id.in_(chunk),
                Decision.learned_at.is_(None),
            )
            .values(learned_at=now, learned_version=model.version)
            .execution_options(synchronize_session=False)
        ).rowcount
    if marked != len(event_ids):
        raise RuntimeError(
            f"{len(event_ids) - marked} of {len(event_ids)} events were already learned; "
            "is another trainer running on this loop?"
        )
    session.flush()
