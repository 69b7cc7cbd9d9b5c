"""Decision routes: choose, rewards, activate, look-up (loop keys or admin keys)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from bandits.api.http import json_body, json_response, require_loop, services
from bandits.schemas import (
    ChooseRequest, RewardRequest, choose_raw, choose_without_actions, parse, parse_choose,
    with_actions,
)
from bandits.services.pools import Pool
from bandits.services.runtime import LoopRuntime

bp = Blueprint("events", __name__, url_prefix="/v1/loops/<loop>")

CHOOSE_ERROR = "InvalidChooseRequest"


@bp.post("/choose")
def choose(loop: str):
    runtime = require_loop(loop)
    return json_response(chosen(services(), runtime, json_body(CHOOSE_ERROR)), 201)


def chosen(held: Any, runtime: LoopRuntime, body: dict[str, Any]) -> dict[str, Any]:
    """The reply to a choose body (this route's and bandits.api.fast's)."""
    return held.decisions.choose(runtime, *checked_choose(held, body))


def checked_choose(held: Any, body: dict[str, Any]) -> tuple[ChooseRequest, Pool | None]:
    """A choose body checked against the schema, with its actions' pool when they have one. A
    body whose actions are a pool already seen (bandits.services.pools) skips the actions'
    checks and featurising, done once for that pool; any other goes the full way, which words
    every error. (The featuriser checks features for NUL, depth and types as it writes them.)"""
    rest = choose_without_actions(body)
    pool = held.decisions.pools.get(rest.actions) if rest is not None else None
    if pool is None:
        return parse_choose(body, CHOOSE_ERROR), None
    return with_actions(rest, pool.actions), pool


def checked_choose_raw(held: Any, data: bytes) -> tuple[ChooseRequest, Pool] | None:
    """:func:`checked_choose` straight from a body's bytes, for a body whose actions are a pool
    (seen before, or checked now): their JSON as sent is the pool's key, and only the rest of the
    body is parsed. ``None`` for any other body, which takes :func:`checked_choose`."""
    rest = choose_raw(data)
    pool = held.decisions.pools.get_raw(rest.actions) if rest is not None else None
    if pool is None:
        return None
    return with_actions(rest, pool.actions), pool


@bp.post("/events/<path:event_id>/rewards")
def rewards(loop: str, event_id: str):
    runtime = require_loop(loop)
    request = parse(RewardRequest, json_body("InvalidRewardRequest"), "InvalidRewardRequest")
    return json_response(services().decisions.reward(runtime, event_id, request), 202)


@bp.post("/events/<path:event_id>/activate")
def activate(loop: str, event_id: str):
    runtime = require_loop(loop)
    return json_response(services().decisions.activate(runtime, event_id), 202)


@bp.get("/events/<path:event_id>")
def event(loop: str, event_id: str):
    runtime = require_loop(loop)
    return json_response(services().decisions.event(runtime, event_id))
