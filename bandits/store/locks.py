"""One trainer per loop: a Postgres advisory lock, or a file lock beside a SQLite database."""

from __future__ import annotations

import fcntl
import hashlib
import os

from sqlalchemy import text

from bandits.store.db import Database, sqlite_path


def _key(loop_id: int) -> int:
    digest = hashlib.blake2b(f"bandits-trainer\x00{loop_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LoopLock:
    """Held for as long as this process trains the loop; released on close or process death."""

    def __init__(self, db: Database, loop_id: int) -> None:
        self._db = db
        self._loop_id = loop_id
        self._connection = None
        self._file: int | None = None

    def acquire(self) -> bool:
        """Try once; True when this process now holds the loop."""
        path = sqlite_path(self._db.settings)
        if path is not None:
            fd = os.open(f"{path}.trainer-{self._loop_id}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._file = fd
            return True
        connection = self._db.engine.connect()
        got = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": _key(self._loop_id)}
        ).scalar()
        connection.commit()
        if not got:
            connection.close()
            return False
        self._connection = connection  # the lock lives as long as this session
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            os.close(self._file)
            self._file = None
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _key(self._loop_id)})
                self._connection.commit()
            finally:
                self._connection.close()
                self._connection = None
