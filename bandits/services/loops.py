"""Loop administration: create, read, reconfigure; keys; the first-start bootstrap."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from bandits.errors import conflict, not_found, unprocessable
from bandits.learning.vw import VwArgsError, check_config
from bandits.loop_config import LoopConfig, model_invalidated
from bandits.schemas import error_location
from bandits.store import loops as store
from bandits.store.db import Database, iso
from bandits.store.models import Loop

DEMO_LOOP = "demo"
DEMO_CONFIG = {
    "objectives": [
        {"name": "click", "weight": 1.0, "aggregation": "max"},
        {"name": "revenue", "weight": 0.1, "aggregation": "sum"},
    ],
    "vw_args": "-q u_",
}


def loop_json(loop: Loop) -> dict[str, Any]:
    return {
        "name": loop.name, "kind": loop.kind, "config": loop.config,
        "config_version": loop.config_version, "created_at": iso(loop.created_at),
        "updated_at": iso(loop.updated_at),
    }


def validate_config(raw: Any) -> LoopConfig:
    """A loop config from JSON, checked by pydantic and then by VW itself (422 on either)."""
    try:
        config = LoopConfig.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        target = error_location(("config", *error["loc"]))
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise unprocessable("InvalidLoopConfig", f"{target}: {message}", target) from None
    try:
        check_config(config)
    except VwArgsError as exc:
        raise unprocessable(
            "InvalidVwArgs", f"VW rejected the loop's arguments: {exc}", "config.vw_args"
        ) from None
    return config


class LoopService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, name: str, raw_config: Any) -> dict[str, Any]:
        config = validate_config(raw_config if raw_config is not None else {})
        try:
            with self._db.session() as session:
                loop = store.create_loop(name, config.to_json(), config.kind, session=session)
                key = store.create_key(session=session, loop_id=loop.id)
                session.flush()
                reply = loop_json(loop)
        except IntegrityError:
            raise conflict("LoopExists", f"a loop named {name!r} already exists", "name") from None
        return {**reply, "key": key}

    def get(self, name: str) -> dict[str, Any]:
        with self._db.session() as session:
            return loop_json(loop_or_404(name, session))

    def list(self) -> list[dict[str, Any]]:
        with self._db.session() as session:
            return [loop_json(loop) for loop in store.list_loops(session=session)]

    def patch(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into the loop's config (top-level keys replace) as a new version."""
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            old = LoopConfig.model_validate(loop.config)
            new = validate_config({**loop.config, **changes})
            if new.kind != old.kind:
                raise unprocessable(
                    "KindFixed", f"a loop's kind is fixed when it is created: this loop is "
                    f"{old.kind!r}; create a new loop for {new.kind!r} decisions", "kind",
                )
            reset = model_invalidated(old, new)
            if new == old:
                return {**loop_json(loop), "model_reset": False}
            loop = store.update_loop_config(loop, new.to_json(), reset, session=session)
            session.flush()
            return {**loop_json(loop), "model_reset": reset}

    def create_key(self, name: str | None) -> str:
        with self._db.session() as session:
            loop_id = loop_or_404(name, session).id if name is not None else None
            return store.create_key(session=session, loop_id=loop_id)


def loop_or_404(name: str, session) -> Loop:
    """The loop named ``name``; 404 ``LoopNotFound`` when there is none."""
    loop = store.get_loop(name, session=session)
    if loop is None:
        raise not_found("LoopNotFound", f"no loop named {name!r}", "loop")
    return loop


def bootstrap(db: Database, admin_key_from_env: bool, demo: bool) -> list[str]:
    """First start: create an admin key (unless one is given by env) and the demo loop.

    Returns lines to print; keys appear there once and are never shown again.
    """
    lines = []
    with db.session() as session:
        if not admin_key_from_env and not store.has_admin_key(session=session):
            key = store.create_key(session=session, loop_id=None)
            lines.append(f"admin key (shown once, keep it): {key}")
        if demo and store.get_loop(DEMO_LOOP, session=session) is None:
            config = validate_config(DEMO_CONFIG)
            loop = store.create_loop(DEMO_LOOP, config.to_json(), config.kind, session=session)
            key = store.create_key(session=session, loop_id=loop.id)
            lines.append(f"loop {DEMO_LOOP!r} created; its key (shown once, keep it): {key}")
    return lines

