"""Per-process caches: loops (config + model) and API keys, refreshed every ``cache_seconds``."""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from bandits.learning.vw import Policy
from bandits.loop_config import LoopConfig
from bandits.store.db import Database
from bandits.store.loops import KeyGrant, find_key, hash_key
from bandits.store import training
from bandits.store.models import Loop, Model

ADMIN_ENV_GRANT = KeyGrant(key_id=0, loop_id=None)


@dataclass
class LoopRuntime:
    loop_id: int
    name: str
    config: LoopConfig
    config_version: int
    policy: Policy
    checked_at: float


class LoopCache:
    """The loops this process serves, each with its model, re-read at most every ``ttl`` seconds.

    A config change reaches every api process within ``ttl``; a model-invalidating change builds
    a fresh model on the spot.
    """

    def __init__(self, db: Database, ttl: float) -> None:
        self._db = db
        self._ttl = ttl
        self._loops: dict[str, LoopRuntime] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LoopRuntime | None:
        runtime = self._loops.get(name)
        if runtime is not None and time.monotonic() - runtime.checked_at < self._ttl:
            return runtime
        with self._lock:
            runtime = self._loops.get(name)
            if runtime is not None and time.monotonic() - runtime.checked_at < self._ttl:
                return runtime
            return self._refresh(name, runtime)

    def _refresh(self, name: str, runtime: LoopRuntime | None) -> LoopRuntime | None:
        """Re-read the loop's config and newest model version; swap in what changed.

        Requests already holding the old runtime finish with it; the next ones get the new one.
        """
        with self._db.session() as session:
            row = session.execute(
                select(Loop.id, Loop.config, Loop.config_version).where(Loop.name == name)
            ).first()
            if row is None:
                self._loops.pop(name, None)
                return None
            _, wanted = training.served_version(row.id, session=session)
            same_loop = runtime is not None and runtime.loop_id == row.id
            if same_loop and runtime.config_version == row.config_version and (
                runtime.policy.model_version == wanted
            ):
                runtime.checked_at = time.monotonic()
                return runtime
            config = LoopConfig.model_validate(row.config)
            if (
                same_loop
                and runtime.policy.model_version == wanted
                and runtime.policy.arguments == Policy.arguments_for(config)
            ):
                policy = runtime.policy  # the change left the model alone
            elif wanted:
                model = session.get(Model, (row.id, wanted))
                policy = Policy(config, wanted, model.blob)
            else:
                policy = Policy(config)
        fresh = LoopRuntime(row.id, name, config, row.config_version, policy, time.monotonic())
        self._loops[name] = fresh
        return fresh


class KeyCache:
    """Resolves a presented API key to a grant; hashes cached for ``ttl`` seconds."""

    def __init__(self, db: Database, ttl: float, admin_key: str | None) -> None:
        self._db = db
        self._ttl = ttl
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self._grants: dict[str, tuple[KeyGrant, float]] = {}

    def resolve(self, key: str) -> KeyGrant | None:
        digest = hash_key(key)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return ADMIN_ENV_GRANT
        cached = self._grants.get(digest)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        with self._db.session() as session:
            grant = find_key(digest, session=session)
        if grant is None:
            self._grants.pop(digest, None)
            return None
        self._grants[digest] = (grant, now)
        return grant
