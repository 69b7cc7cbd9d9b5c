"""Every error leaves as ``{"error": {"code", "message", "target"}}``; never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from bandits.api.http import json_response
from bandits.errors import ApiError

log = logging.getLogger("bandits.api")

_HTTP_CODES = {
    404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
}


def _api_error(error: ApiError) -> Response:
    return json_response(error.to_json(), error.status)


def _too_large(error: RequestEntityTooLarge) -> Response:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return _api_error(ApiError(
        413, "PayloadTooLarge", f"the request body is larger than the limit of {limit} bytes"
    ))


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = _HTTP_CODES.get(status, "".join(word.title() for word in (error.name or "Error").split()))
    return _api_error(ApiError(status, code, error.description or error.name or "error"))


def _unexpected(error: Exception) -> Response:
    return _api_error(unexpected())


def unexpected() -> ApiError:
    """Log the exception being handled; the error the client gets instead of it."""
    log.exception("unexpected error")
    return ApiError(500, "InternalError", "unexpected server error; it has been logged")


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
