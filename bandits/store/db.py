"""Engines and sessions. One engine per process; the caller owns every transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from bandits.config import Settings


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def make_engine(settings: Settings, pool_size: int = 10) -> Engine:
    """Create the engine for ``settings.database_url``.

    SQLite gets WAL (readers never block the writer), a busy timeout (several gunicorn workers
    write the same file) and enforced foreign keys.
    """
    url = settings.database_url
    json_codec = {"json_serializer": _dumps, "json_deserializer": orjson.loads}
    if settings.is_sqlite:
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **json_codec
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=3600,
        **json_codec,
    )


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def sqlite_path(settings: Settings) -> Path | None:
    if not settings.is_sqlite:
        return None
    return Path(settings.database_url.split("///", 1)[1])


class Database:
    """An engine plus its session factory; ``with db.session() as s:`` commits on success."""

    def __init__(self, settings: Settings, pool_size: int = 10) -> None:
        self.settings = settings
        self.engine = make_engine(settings, pool_size=pool_size)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; we always store UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC."""
    return None if moment is None else as_utc(moment).isoformat()
