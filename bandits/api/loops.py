"""Loop administration routes (admin keys; a loop key may read its own loop)."""

from __future__ import annotations

from flask import Blueprint

from bandits.api.http import json_body, json_response, require_admin, require_loop, services
from bandits.schemas import LoopCreate, parse

bp = Blueprint("loops", __name__, url_prefix="/v1/loops")


@bp.post("")
def create_loop():
    require_admin()
    request = parse(LoopCreate, json_body("InvalidLoopRequest"), "InvalidLoopRequest")
    return json_response(services().admin.create(request.name, request.config), 201)


@bp.get("")
def list_loops():
    require_admin()
    return json_response({"loops": services().admin.list()})


@bp.get("/<loop>")
def get_loop(loop: str):
    require_loop(loop)
    return json_response(services().admin.get(loop))


@bp.patch("/<loop>")
def patch_loop(loop: str):
    require_admin()
    changes = json_body("InvalidLoopConfig")
    return json_response(services().admin.patch(loop, changes))


@bp.post("/<loop>/keys")
def create_key(loop: str):
    require_admin()
    return json_response({"key": services().admin.create_key(loop), "loop": loop}, 201)
