"""The decision log and outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bandits.store.models import Decision, Outcome


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One decision as the api logs it."""

    loop_id: int
    event_id: str
    ts: datetime
    context: dict[str, Any]
    actions: list[dict[str, Any]]
    excluded: list[str]
    baseline: str | None
    chosen: str
    probability: float
    pmf: list[float]
    model_version: int
    config_version: int
    learning_mode: str
    seed: int
    deferred: bool


_COLUMNS = (
    "loop_id", "event_id", "ts", "context", "actions", "excluded", "baseline", "chosen",
    "probability", "pmf", "model_version", "config_version", "learning_mode", "seed", "deferred",
)
_JSON_COLUMNS = {"context", "actions", "excluded", "pmf"}
_PG_TYPES = {
    "loop_id": "bigint", "event_id": "text", "ts": "timestamptz", "context": "jsonb",
    "actions": "jsonb", "excluded": "jsonb", "baseline": "text", "chosen": "text",
    "probability": "float8", "pmf": "jsonb", "model_version": "int", "config_version": "int",
    "learning_mode": "text", "seed": "bigint", "deferred": "boolean",
}

def _postgres_insert_sql() -> str:
    """One statement for a whole batch: arrays in, the event ids actually inserted out."""
    arrays = ", ".join(
        f"%({c})s::{'text' if c in _JSON_COLUMNS else _PG_TYPES[c]}[]" for c in _COLUMNS
    )
    selected = ", ".join(f"u.{c}::jsonb" if c in _JSON_COLUMNS else f"u.{c}" for c in _COLUMNS)
    return (
        f"INSERT INTO decisions ({', '.join(_COLUMNS)}) SELECT {selected} "
        f"FROM unnest({arrays}) AS u({', '.join(_COLUMNS)}) "
        "ON CONFLICT (loop_id, event_id) DO NOTHING RETURNING loop_id, event_id"
    )


_PG_INSERT = _postgres_insert_sql()


def insert_decisions(rows: list[DecisionRow], *, connection: Connection) -> list[bool]:
    """Insert decisions; for each row, True if it was written, False if its event id existed.

    Within ``rows`` a repeated (loop, event id) is written once, first one wins.
    """
    first_seen: dict[tuple[int, str], int] = {}
    unique: list[DecisionRow] = []
    for index, row in enumerate(rows):
        key = (row.loop_id, row.event_id)
        if key not in first_seen:
            first_seen[key] = index
            unique.append(row)
    if connection.dialect.name == "postgresql":
        inserted = _insert_postgres(unique, connection)
    else:
        inserted = _insert_generic(unique, connection)
    return [
        first_seen[(row.loop_id, row.event_id)] == index and (row.loop_id, row.event_id) in inserted
        for index, row in enumerate(rows)
    ]


def _insert_postgres(rows: list[DecisionRow], connection: Connection) -> set[tuple[int, str]]:
    params: dict[str, list[Any]] = {column: [] for column in _COLUMNS}
    for row in rows:
        for column in _COLUMNS:
            value = getattr(row, column)
            if column in _JSON_COLUMNS:
                value = orjson.dumps(value).decode()
            params[column].append(value)
    result = connection.exec_driver_sql(_PG_INSERT, params)
    return {(loop_id, event_id) for loop_id, event_id in result}


def _insert_generic(rows: list[DecisionRow], connection: Connection) -> set[tuple[int, str]]:
    inserted = set()
    statement = sqlite_insert(Decision.__table__).on_conflict_do_nothing()
    for row in rows:
        values = {column: getattr(row, column) for column in _COLUMNS}
        if connection.execute(statement, values).rowcount == 1:
            inserted.add((row.loop_id, row.event_id))
    return inserted


def get_decision(loop_id: int, event_id: str, *, session: Session) -> Decision | None:
    return session.get(Decision, (loop_id, event_id))


def outcomes_for(loop_id: int, event_id: str, *, session: Session) -> list[Outcome]:
    return list(
        session.scalars(
            select(Outcome)
            .where(Outcome.loop_id == loop_id, Outcome.event_id == event_id)
            .order_by(Outcome.id)
        )
    )


def reward_id_seen(loop_id: int, event_id: str, reward_id: str, *, session: Session) -> bool:
    return (
        session.execute(
            select(Outcome.id)
            .where(
                Outcome.loop_id == loop_id,
                Outcome.event_id == event_id,
                Outcome.reward_id == reward_id,
            )
            .limit(1)
        ).first()
        is not None
    )


def add_outcomes(
    loop_id: int,
    event_id: str,
    values: dict[str, float],
    slot: str | None,
    reward_id: str | None,
    ts: datetime,
    *,
    session: Session,
) -> None:
    session.add_all(
        Outcome(
            loop_id=loop_id, event_id=event_id, slot=slot, objective=objective, value=value,
            reward_id=reward_id, ts=ts,
        )
        for objective, value in values.items()
    )


def activate(decision: Decision, ts: datetime) -> bool:
    """Mark a deferred decision activated; False when it was already active."""
    if decision.activated_at is not None or not decision.deferred:
        return False
    decision.activated_at = ts
    return True
