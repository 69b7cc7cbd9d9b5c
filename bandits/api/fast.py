"""`POST /v1/loops/{loop}/choose` served straight from WSGI, in front of Flask.

/choose is the request products make on every page view. Flask's request machinery (the request
context, routing, the request and response objects) cost the gunicorn workers about a quarter of
their CPU per choose request under load (docs/operations.md, "Performance"). This handler takes a
well-formed choose request before Flask sees it and runs the same code as the Flask route does:
:func:`bandits.api.http.grant_for` and :func:`~bandits.api.http.granted_loop` for the key and the
loop, :func:`~bandits.api.http.json_object` for the body, :func:`bandits.api.events.chosen` for
the decision, and the same error body for every :class:`ApiError`. A body whose actions are a
pool (bandits.services.pools) is read from its bytes first, by
:func:`bandits.api.events.checked_choose_raw`, which leaves the actions' JSON unparsed when the
pool was seen before: the same request, for about a third of the parsing.

Anything it does not take goes to Flask unchanged, which answers as it always has: another method
or path, a content type other than exactly ``application/json`` (Flask also accepts parameters
such as ``; charset=utf-8``), a body without a ``Content-Length`` or over the size limit (413),
and a loop name holding NUL. The Flask route stays: it serves those requests, and it is the one
the OpenAPI document describes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from werkzeug.http import HTTP_STATUS_CODES

from bandits.api.errors import unexpected
from bandits.api.events import CHOOSE_ERROR, checked_choose_raw, chosen
from bandits.api.http import granted_loop, grant_for, json_object
from bandits.errors import ApiError

_PREFIX = "/v1/loops/"
_SUFFIX = "/choose"


def _status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES[status].upper()}"  # as werkzeug writes it


class FastChoose:
    """WSGI middleware: choose requests it can take, the rest to ``app`` (Flask's ``wsgi_app``)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], held: Any, max_body_bytes: int) -> None:
        self._app = app
        self._held = held  # bandits.api.Services
        self._max = max_body_bytes

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        length: str = environ.get("CONTENT_LENGTH") or ""
        if (
            environ.get("REQUEST_METHOD") != "POST"
            or not path.startswith(_PREFIX)
            or not path.endswith(_SUFFIX)
            or environ.get("CONTENT_TYPE") != "application/json"
            or not length.isdigit()
            or int(length) > self._max
        ):
            return self._app(environ, start_response)
        name = path[len(_PREFIX):-len(_SUFFIX)]
        if not name or "/" in name or "\x00" in name:
            return self._app(environ, start_response)
        try:
            grant = grant_for(self._held, environ.get("HTTP_AUTHORIZATION", ""))
            loop = granted_loop(self._held, grant, name)
            data = environ["wsgi.input"].read(int(length))
            checked = checked_choose_raw(self._held, data)
            if checked is not None:
                status, reply = 201, self._held.decisions.choose(loop, *checked)
            else:
                status, reply = 201, chosen(self._held, loop, json_object(data, CHOOSE_ERROR))
        except ApiError as error:
            status, reply = error.status, error.to_json()
        except Exception:
            error = unexpected()
            status, reply = error.status, error.to_json()
        data = orjson.dumps(reply)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(_status_line(status), headers)
        return [data]
