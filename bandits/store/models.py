"""Tables (SQLAlchemy 2 declarative). Migrations in ``migrations/`` must agree with these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy import false, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on Postgres for small documents that may be queried (configs); JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")
# The decision log stays `json` on Postgres: its documents are written once per decision and read
# whole, and Postgres stores `json` for half the CPU of `jsonb` (measured: 23 vs 50 us a row).
# The JSON operators (context->'user'->>'country') work on both.
LogJson = JSON()
# Integer primary keys autoincrement on SQLite only when declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Loop(Base):
    __tablename__ = "loops"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    config_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class LoopConfigVersion(Base):
    """Every config a loop has had, so a change can be audited and reverted."""

    __tablename__ = "loop_config_versions"

    loop_id: Mapped[int] = mapped_column(ForeignKey("loops.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    model_reset: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    # What made this version when it was not an edit: "tuning:<job id>" for an applied tuning.
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # NULL loop_id: an admin key.
    loop_id: Mapped[int | None] = mapped_column(
        ForeignKey("loops.id", ondelete="CASCADE"), nullable=True, index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class Decision(Base):
    __tablename__ = "decisions"

    loop_id: Mapped[int] = mapped_column(ForeignKey("loops.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    ts: Mapped[datetime] = mapped_column(Timestamp)
    context: Mapped[dict[str, Any]] = mapped_column(LogJson)
    # The actions offered: here, or (NULL here) those of the action pool named by actions_pool.
    # Read them with bandits.store.decisions.logged_actions_of / LOGGED_ACTIONS.
    actions: Mapped[list[Any] | None] = mapped_column(LogJson, nullable=True)
    actions_pool: Mapped[str | None] = mapped_column(String(32), nullable=True)
    slots: Mapped[list[Any] | None] = mapped_column(LogJson, nullable=True)
    excluded: Mapped[list[str]] = mapped_column(LogJson)
    baseline: Mapped[str | None] = mapped_column(String(256), nullable=True)
    chosen: Mapped[str] = mapped_column(String(256))
    probability: Mapped[float] = mapped_column(Float)
    # The full distribution, aligned with ``actions``.
    pmf: Mapped[list[float]] = mapped_column(LogJson)
    model_version: Mapped[int] = mapped_column(Integer)
    config_version: Mapped[int] = mapped_column(Integer)
    learning_mode: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(BigInteger)
    deferred: Mapped[bool] = mapped_column(Boolean, default=False)
    activated_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    learned_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    learned_version: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        Index("ix_decisions_loop_ts", "loop_id", "ts"),
        # What waits to be learned, oldest first; marking a decision learned takes it out.
        Index(
            "ix_decisions_unlearned", "loop_id", "ts",
            postgresql_where=text("learned_at IS NULL"), sqlite_where=text("learned_at IS NULL"),
        ),
    )


class ActionPool(Base):
    """A list of actions (ids, features, slots) that decisions offered, stored once per loop.

    Products offer the same actions for many decisions in a row; each such decision names its
    pool (``decisions.actions_pool``) instead of repeating it. ``digest``: the first 32 hex
    digits of the SHA-256 of ``actions`` as written (orjson's bytes)."""

    __tablename__ = "action_pools"

    loop_id: Mapped[int] = mapped_column(ForeignKey("loops.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(32), primary_key=True)
    actions: Mapped[list[Any]] = mapped_column(LogJson)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class Outcome(Base):
    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loop_id: Mapped[int] = mapped_column(BigId)
    event_id: Mapped[str] = mapped_column(String(256))
    slot: Mapped[str | None] = mapped_column(String(256), nullable=True)
    objective: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    reward_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    ts: Mapped[datetime] = mapped_column(Timestamp)
    # Arrived after its decision's reward window (or after it was learned): kept, never learned.
    late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        ForeignKeyConstraint(
            ["loop_id", "event_id"],
            ["decisions.loop_id", "decisions.event_id"],
            ondelete="CASCADE",
            name="fk_outcomes_decision",
        ),
        UniqueConstraint("loop_id", "event_id", "reward_id", "objective", name="uq_outcomes_reward"),
        Index("ix_outcomes_loop_event", "loop_id", "event_id"),
    )


class Model(Base):
    """A published snapshot of a loop's VW model. Version 0 is the untrained model (not stored).

    ``lineage`` is the config version that started the model's line: a config change that
    invalidates the model starts a new lineage from an empty model.
    """

    __tablename__ = "models"

    loop_id: Mapped[int] = mapped_column(ForeignKey("loops.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    lineage: Mapped[int] = mapped_column(Integer)
    config_version: Mapped[int] = mapped_column(Integer)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    events_learned: Mapped[int] = mapped_column(BigInteger)
    total_learned: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))  # trainer | import
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    # In apprentice mode: how often the model's own pick matched the baseline over the last
    # `apprentice_events` events it learned.
    apprentice_agreement: Mapped[float | None] = mapped_column(Float, nullable=True)


class Job(Base):
    """Work for ``bandits worker`` (evaluations first): queued → running → succeeded | failed.

    A worker claims a job by setting ``claimed_by`` and ``heartbeat_at`` and renews the heartbeat
    while it works; a running job whose heartbeat is older than the workers' ``stale_after`` is
    claimed again (``attempts`` counts the claims), so a job whose worker died is not stuck.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loop_id: Mapped[int] = mapped_column(ForeignKey("loops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16))  # queued | running | succeeded | failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[dict[str, Any] | None] = mapped_column(LogJson, nullable=True)
    error: Mapped[str | None] = mapped_column(String, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)

    __table_args__ = (
        Index("ix_jobs_loop_created", "loop_id", "id"),
        # What a worker looks for: queued jobs, and running ones whose heartbeat went stale.
        Index("ix_jobs_status", "status", "id"),
    )
