"""Model snapshot routes: list, download, import, reset (admin keys only)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from bandits.api.http import json_response, require_admin, services
from bandits.errors import ApiError
from bandits.schemas import ModelListQuery, parse

bp = Blueprint("models", __name__, url_prefix="/v1/loops/<loop>/models")

OCTET_STREAM = "application/octet-stream"


@bp.get("")
def list_models(loop: str):
    require_admin()
    query = parse(ModelListQuery, request.args.to_dict(), "InvalidModelListRequest")
    return json_response(services().models.list(loop, query.limit))


@bp.get("/<int:version>")
def download_model(loop: str, version: int):
    require_admin()
    blob = services().models.download(loop, version)
    return Response(blob, mimetype=OCTET_STREAM, headers={
        "Content-Disposition": f'attachment; filename="{loop}-v{version}.vw"',
    })


@bp.put("")
def import_model(loop: str):
    require_admin()
    if request.mimetype != OCTET_STREAM:
        raise ApiError(
            415, "UnsupportedMediaType", f"send the VW model file as Content-Type: {OCTET_STREAM}"
        )
    blob = request.get_data(cache=False)
    return json_response(services().models.import_model(loop, blob), 201)


@bp.post("/reset")
def reset_model(loop: str):
    require_admin()
    return json_response(services().models.reset(loop))
