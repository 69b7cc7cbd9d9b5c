"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import text

from bandits.api.http import json_response, services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz():
    try:
        with services().db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means "not ready", said plainly
        return json_response({"status": "unavailable", "detail": type(exc).__name__}, 503)
    return json_response({"status": "ok"})
