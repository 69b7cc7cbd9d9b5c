"""The decision log and outcomes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import pq
from sqlalchemy import Engine, Text, and_, cast, func, null, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bandits.store.db import as_utc
from bandits.store.models import ActionPool, Decision, Outcome


@dataclass(slots=True)
class DecisionRow:
    """One decision as the api logs it."""

    loop_id: int
    event_id: str
    ts: datetime
    context: dict[str, Any]
    # A list of {id, features[, slot]}, or that list serialised (orjson.Fragment). With
    # ``actions_pool`` set, the writer stores them once per loop (bandits.store.models.ActionPool)
    # and the row names them; it sets ``actions`` to None as it takes them.
    actions: Any
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
    actions_pool: str | None = None  # an action pool's digest (bandits.store.models.ActionPool)


_COLUMNS = (
    "loop_id", "event_id", "ts", "context", "actions", "excluded", "baseline", "chosen",
    "probability", "pmf", "model_version", "config_version", "learning_mode", "seed", "deferred",
    "slots", "actions_pool",
)
# One statement for a whole batch: the rows travel as one JSON document (serialised in C by
# orjson, parsed by Postgres), and come back only if they were inserted. It is prepared once per
# connection and run through libpq directly (psycopg's PGconn, which lets go of the GIL while it
# waits): a batch costs half the client CPU of a cursor's execute.
# The batch's action pools not yet written ($2, usually an empty list) go in first, in the same
# statement (a data-modifying WITH always runs to completion) and so the same transaction.
_PG_INSERT = (
    "WITH pools AS (INSERT INTO action_pools (loop_id, digest, actions, created_at) "
    "SELECT loop_id, digest, actions, created_at "
    "FROM json_populate_recordset(NULL::action_pools, $2::json) ON CONFLICT DO NOTHING) "
    f"INSERT INTO decisions ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(_COLUMNS)} FROM json_populate_recordset(NULL::decisions, $1::json) "
    "ON CONFLICT (loop_id, event_id) DO NOTHING RETURNING loop_id, event_id"
).encode()
_PG_STATEMENT = b"bandits_log_decisions_2"  # with the action pools
WRITTEN_POOLS = 100_000  # action pools a writer remembers as written,
WRITTEN_POOLS_SECONDS = 60.0  # for this long at most


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
        # Action pools: their actions until written (by pool), and those known to be in the
        # database. Used by one write at a time (GroupCommitter).
        self._pending: dict[tuple[int, str], Any] = {}
        self._written: set[tuple[int, str]] = set()
        self._written_since = time.monotonic()

    def write(self, rows: list[DecisionRow]) -> list[bool]:
        unique, first_seen = _first_occurrences(rows)
        if time.monotonic() - self._written_since > WRITTEN_POOLS_SECONDS or (
            self._postgres and (self._connection is None or self._connection.closed)
        ):
            # Written again, once each (ON CONFLICT DO NOTHING): a log restored or truncated
            # under a running service gets its pools back within this time, and a new
            # connection (maybe to another server, after a failover) gets them with its first
            # batch. Decided before the batch's pools are taken, so that batch carries them.
            self._written.clear()
            self._written_since = time.monotonic()
        pools = self._take_pools(unique)
        inserted = (self._write_postgres(unique, pools) if self._postgres
                    else self._write_generic(unique, pools))
        for pool in pools:
            key = (pool["loop_id"], pool["digest"])
            del self._pending[key]
            if len(self._written) >= WRITTEN_POOLS:
                self._written.clear()
            self._written.add(key)
        return [
            first_seen[(row.loop_id, row.event_id)] == index and (row.loop_id, row.event_id) in inserted
            for index, row in enumerate(rows)
        ]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _take_pools(self, rows: list[DecisionRow]) -> list[dict[str, Any]]:
        """The pools ``rows`` name that are not known to be written; each pooled row's
        ``actions`` taken (kept by pool until the pool is written: a failed batch's rows are
        written again, one by one)."""
        pools: dict[tuple[int, str], dict[str, Any]] = {}
        for row in rows:
            if row.actions_pool is None:
                continue
            key = (row.loop_id, row.actions_pool)
            if row.actions is not None:
                if key not in self._written:
                    self._pending.setdefault(key, row.actions)
                row.actions = None
            if key in self._written or key in pools:
                continue
            try:
                actions = self._pending[key]
            except KeyError:
                raise RuntimeError(f"action pool {row.actions_pool} came without its actions") from None
            pools[key] = {"loop_id": row.loop_id, "digest": row.actions_pool,
                          "actions": actions, "created_at": row.ts}
        return list(pools.values())

    def _write_postgres(self, rows: list[DecisionRow], pools: list[dict[str, Any]]
                        ) -> set[tuple[int, str]]:
        document = orjson.dumps(rows)  # dataclasses and datetimes natively
        try:
            connection = self._postgres_connection()
            result = connection.pgconn.exec_prepared(
                _PG_STATEMENT, [document, orjson.dumps(pools)]
            )
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

    def _write_generic(self, rows: list[DecisionRow], pools: list[dict[str, Any]]
                       ) -> set[tuple[int, str]]:
        inserted = set()
        statement = sqlite_insert(Decision.__table__).on_conflict_do_nothing()
        with self._engine.begin() as connection:
            if pools:
                connection.execute(sqlite_insert(ActionPool.__table__).on_conflict_do_nothing(), pools)
            for row in rows:
                values = {column: getattr(row, column) for column in _COLUMNS}
                if row.actions is None:  # SQL NULL (a JSON column would store None as 'null')
                    values["actions"] = null()
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


def logged_actions_of(decision: Decision, *, session: Session) -> list[Any]:
    """The actions a decision offered: its own, or its action pool's."""
    if decision.actions is not None or decision.actions_pool is None:
        return decision.actions  # type: ignore[return-value]
    return session.scalars(select(ActionPool.actions).where(
        ActionPool.loop_id == decision.loop_id, ActionPool.digest == decision.actions_pool,
    )).one()


# Readers of many decisions select LOGGED_ACTIONS (and LOGGED_ACTIONS_TEXT) from
# WITH_ACTION_POOLS instead of the decisions table: the actions, where they are stored.
WITH_ACTION_POOLS = Decision.__table__.outerjoin(ActionPool.__table__, and_(
    ActionPool.loop_id == Decision.loop_id, ActionPool.digest == Decision.actions_pool,
))
LOGGED_ACTIONS = func.coalesce(Decision.actions, ActionPool.actions, type_=Decision.actions.type)
LOGGED_ACTIONS_TEXT = func.coalesce(cast(Decision.actions, Text), cast(ActionPool.actions, Text))


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
