"""Request reading, replies and authorisation shared by the blueprints."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, current_app, request

from bandits.errors import ApiError
from bandits.services.runtime import LoopRuntime
from bandits.store.loops import KeyGrant


def services():
    return current_app.extensions["bandits"]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def json_body(code: str) -> Any:
    """The request's JSON object; 415 for another content type, 400 for malformed JSON."""
    if request.mimetype != "application/json":
        raise ApiError(415, "UnsupportedMediaType", "send the body as Content-Type: application/json")
    return json_object(request.get_data(cache=False), code)


def json_object(raw: bytes, code: str) -> dict[str, Any]:
    """``raw`` parsed as a JSON object; 400 ``MalformedJson``, or 400 ``code`` for another value."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "MalformedJson", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, code, "the body must be a JSON object")
    return body


def authenticate() -> KeyGrant:
    return grant_for(services(), request.headers.get("Authorization", ""))


def grant_for(held: Any, header: str) -> KeyGrant:
    """The grant of the key in an ``Authorization`` header's value; 401 without a valid one."""
    scheme, _, key = header.partition(" ")
    if not header:
        raise ApiError(401, "Unauthorized", "send an API key as `Authorization: Bearer <key>`")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "Unauthorized", "the Authorization header must be `Bearer <key>`")
    grant = held.keys.resolve(key.strip())
    if grant is None:
        raise ApiError(401, "Unauthorized", "the API key is not valid (unknown or revoked)")
    return grant


def _refuse_nul_in_path() -> None:
    """No loop name nor event id holds NUL (requests that carry one are refused), and Postgres
    errors on NUL in a query parameter: such a path names nothing."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and "\x00" in value:
            if name == "event_id":
                raise ApiError(404, "EventNotFound", f"no decision with event_id {value!r}", name)
            raise ApiError(404, "LoopNotFound", f"no loop named {value!r}", name)


def require_admin() -> KeyGrant:
    grant = authenticate()
    if grant.loop_id is not None:
        raise ApiError(403, "Forbidden", "this route needs an admin key; a loop key was given")
    _refuse_nul_in_path()
    return grant


def require_loop(name: str) -> LoopRuntime:
    """The loop, if the presented key may use it (its own loop key or an admin key)."""
    grant = authenticate()
    _refuse_nul_in_path()
    return granted_loop(services(), grant, name)


def granted_loop(held: Any, grant: KeyGrant, name: str) -> LoopRuntime:
    """Loop ``name`` if ``grant`` may use it: 404 for an unknown loop, 403 for another loop's
    key."""
    loop = held.loops.get(name)
    if loop is None:
        raise ApiError(404, "LoopNotFound", f"no loop named {name!r}", "loop")
    if grant.loop_id is not None and grant.loop_id != loop.loop_id:
        raise ApiError(403, "Forbidden", f"this key does not belong to loop {name!r}")
    return loop
