"""Log exports: ``GET /v1/loops/{loop}/export`` streams the decision log (admin keys only)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from bandits.api.http import require_admin, services
from bandits.export.window import dsjson_stream, open_export, parse_query

bp = Blueprint("exports", __name__, url_prefix="/v1/loops/<loop>/export")

NDJSON = "application/x-ndjson"
PARQUET = "application/vnd.apache.parquet"


@bp.get("")
def export(loop: str):
    """Checked before the first byte (4xx as JSON); then the window streams page by page."""
    require_admin()
    query = parse_query(request.args.to_dict())
    opened = open_export(services().db, loop, query)
    if query.format == "parquet":
        from bandits.export.parquet import parquet_stream  # pyarrow: loaded only when asked for

        body, mimetype, suffix = parquet_stream(opened.config, opened.pages()), PARQUET, "parquet"
    else:
        body, mimetype, suffix = dsjson_stream(opened), NDJSON, "dsjson"
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="{loop}.{suffix}"',
    })
