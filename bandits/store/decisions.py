"""The decision log and outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import pq
from sqlalchemy import Engine, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bandits.store.db import as_utc
from bandits.store.models import Decision, Outcome


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One decision as the api logs it."""

    loop_id: int
    event_id: str
    ts: datetime
    context: dict[str, Any]
    actions: Any  # a list of {id, features[, slot]}, or that list serialised (orjson.Fragment)
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
    # ccb, slates: per slot its request (id, features, baseline, excluded) and what was chosen
    # (chosen, probability, pmf over ``actions``); ``chosen``, ``probability`` and ``pmf`` above
    # repeat the first slot's.
    slots: list[dict[str, Any]] | None = None


_COLUMNS = (
    "loop_id", "event_id", "ts", "context", "actions", "excluded", "baseline", "chosen",
    "probability", "pmf", "model_version", "config_version", "learning_mode", "seed", "deferred",
    "slots",
)
# One statement for a whole batch: the rows travel as one JSON document (serialised in C by
# orjson, parsed by Postgres), and come back only if they were inserted. It is prepared once per
# connection and run through libpq directly (psycopg's PGconn, which lets go of the GIL while it
# waits): a batch costs half the client CPU of a cursor's execute.
_PG_INSERT = (
    f"INSERT INTO decisions ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(_COLUMNS)} FROM json_populate_recordset(NULL::decisions, $1::json) "
    "ON CONFLICT (loop_id, event_id) DO NOTHING RETURNING loop_id, event_id"
).encode()
_PG_STATEMENT = b"bandits_log_decisions"


def _first_occurrences(rows: list[DecisionRow]) -> tuple[list[DecisionRow], dict[tuple[int, str], int]]:
    first_seen: dict[tuple[int, str], int] = {}
    unique: list[DecisionRow] = []
    for index, row in enumerate(rows):
        key = (row.loop_id, row.event_id)
        if key not in first_seen:
            first_seen[key] = index
            unique.append(row)
    return unique, first_seen


class DecisionWriter:
    """Writes batches of decisions, each batch in one transaction (see GroupCommitter).

    ``write(rows)`` returns, for each row, True if it was written and False if its event id was
    already taken in its loop (within a batch, the first row with an id wins). Postgres gets one
    dedicated psycopg connection and a single ``INSERT ... SELECT FROM json_populate_recordset``
    per batch: the per-row cost stays in C. Other databases go through SQLAlchemy.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._connection: psycopg.Connection | None = None

    def write(self, rows: list[DecisionRow]) -> list[bool]:
        unique, first_seen = _first_occurrences(rows)
        inserted = self._write_postgres(unique) if self._postgres else self._write_generic(unique)
        return [
            first_seen[(row.loop_id, row.event_id)] == index and (row.loop_id, row.event_id) in inserted
            for index, row in enumerate(rows)
        ]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write_postgres(self, rows: list[DecisionRow]) -> set[tuple[int, str]]:
        document = orjson.dumps(rows)  # dataclasses and datetimes natively
        try:
            connection = self._postgres_connection()
            result = connection.pgconn.exec_prepared(_PG_STATEMENT, [document])
            _check(result, pq.ExecStatus.TUPLES_OK)
            inserted = {
                (int(result.get_value(row, 0)),  # type: ignore[arg-type]
                 result.get_value(row, 1).decode())  # type: ignore[union-attr]
                for row in range(result.ntuples)
            }
        except BaseException:
            self.close()  # a fresh connection next time; the batch's requests hear of the error
            raise
        return inserted

    def _postgres_connection(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            url = self._engine.url.set(drivername="postgresql")
            # Autocommit: the single INSERT is its own transaction, committed (and fsynced) before
            # the reply to it arrives, so a batch costs one round trip instead of two.
            self._connection = psycopg.connect(
                url.render_as_string(hide_password=False), autocommit=True
            )
            prepared = self._connection.pgconn.prepare(_PG_STATEMENT, _PG_INSERT)
            _check(prepared, pq.ExecStatus.COMMAND_OK)
        return self._connection

    def _write_generic(self, rows: list[DecisionRow]) -> set[tuple[int, str]]:
        inserted = set()
        statement = sqlite_insert(Decision.__table__).on_conflict_do_nothing()
        with self._engine.begin() as connection:
            for row in rows:
                values = {column: getattr(row, column) for column in _COLUMNS}
                if connection.execute(statement, values).rowcount == 1:
                    inserted.add((row.loop_id, row.event_id))
        return inserted


def _check(result: pq.abc.PGresult, wanted: pq.ExecStatus) -> None:
    """Raise psycopg's exception for a libpq result that is not ``wanted``: the class of its
    SQLSTATE, or OperationalError without one (the connection was lost), as a cursor would."""
    if result.status != wanted:
        message = (result.error_message or b"no error message").decode("utf-8", "replace").strip()
        sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
        error = psycopg.errors.lookup(sqlstate.decode()) if sqlstate else psycopg.OperationalError
        raise error(message)


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
    late: bool,
    *,
    session: Session,
) -> None:
    session.add_all(
        Outcome(
            loop_id=loop_id, event_id=event_id, slot=slot, objective=objective, value=value,
            reward_id=reward_id, ts=ts, late=late,
        )
        for objective, value in values.items()
    )


def is_late(decision: Decision, reward_wait: float, now: datetime) -> bool:
    """An outcome is late when its decision was already learned, or its reward window (from the
    decision, or from the activation of a deferred one) has closed. Before a deferred decision is
    activated its window has not started."""
    if decision.learned_at is not None:
        return True
    start = decision.activated_at if decision.deferred else decision.ts
    if start is None:
        return False
    return now > as_utc(start) + timedelta(seconds=reward_wait)


def activate(decision: Decision, ts: datetime) -> bool:
    """Mark a deferred decision activated; False when it was already active."""
    if decision.activated_at is not None or not decision.deferred:
        return False
    decision.activated_at = ts
    return True
