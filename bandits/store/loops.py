"""Loops, their config versions and API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bandits.store.db import utcnow
from bandits.store.models import ApiKey, Loop, LoopConfigVersion

KEY_PREFIX = "bk_"


def hash_key(key: str) -> str:
    """Keys are 256-bit random tokens, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyGrant:
    """What a key may do: ``loop_id`` None means admin."""

    key_id: int
    loop_id: int | None


def create_key(*, session: Session, loop_id: int | None) -> str:
    """Store a new key's hash and return the key itself (shown once, never stored)."""
    key = new_key()
    session.add(ApiKey(loop_id=loop_id, key_hash=hash_key(key), prefix=key[:8], created_at=utcnow()))
    return key


def find_key(key_hash: str, *, session: Session) -> KeyGrant | None:
    row = session.execute(
        select(ApiKey.id, ApiKey.loop_id).where(
            ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)
        )
    ).first()
    return KeyGrant(key_id=row.id, loop_id=row.loop_id) if row else None


def has_admin_key(*, session: Session) -> bool:
    return (
        session.execute(
            select(ApiKey.id).where(ApiKey.loop_id.is_(None), ApiKey.revoked_at.is_(None)).limit(1)
        ).first()
        is not None
    )


def revoke_key(prefix: str, *, session: Session) -> int:
    """Revoke every live key starting with ``prefix``; returns how many."""
    keys = session.scalars(
        select(ApiKey).where(ApiKey.prefix == prefix[:8], ApiKey.revoked_at.is_(None))
    ).all()
    now = utcnow()
    for key in keys:
        key.revoked_at = now
    return len(keys)


def get_loop(name: str, *, session: Session) -> Loop | None:
    return session.scalars(select(Loop).where(Loop.name == name)).first()


def list_loops(*, session: Session) -> list[Loop]:
    return list(session.scalars(select(Loop).order_by(Loop.name)))


def create_loop(name: str, config: dict[str, Any], kind: str, *, session: Session) -> Loop:
    now = utcnow()
    loop = Loop(name=name, kind=kind, config=config, config_version=1, created_at=now, updated_at=now)
    session.add(loop)
    session.flush()
    session.add(
        LoopConfigVersion(loop_id=loop.id, version=1, config=config, model_reset=True, created_at=now)
    )
    return loop


def update_loop_config(
    loop: Loop, config: dict[str, Any], model_reset: bool, *, session: Session,
    source: str | None = None,
) -> Loop:
    """Store a new config version. Takes a row lock on Postgres so concurrent edits serialise."""
    locked = session.scalars(select(Loop).where(Loop.id == loop.id).with_for_update()).one()
    now = utcnow()
    locked.config_version += 1
    locked.config = config
    locked.kind = config["kind"]
    locked.updated_at = now
    session.add(
        LoopConfigVersion(
            loop_id=locked.id,
            version=locked.config_version,
            config=config,
            model_reset=model_reset,
            created_at=now,
            source=source,
        )
    )
    return locked


def lock_loop(loop_id: int, *, session: Session) -> Loop:
    """The loop re-read under a row lock (Postgres) that serialises it with config changes.

    ``FOR NO KEY UPDATE``: unlike ``FOR UPDATE`` it does not block the foreign-key checks of
    decisions being logged for the loop meanwhile.
    """
    return session.scalars(
        select(Loop)
        .where(Loop.id == loop_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()
