"""Weight-tuning jobs: submit, read, list, apply (admin keys only). A worker runs them."""

from __future__ import annotations

from flask import Blueprint, request

from bandits.api.http import json_body, json_response, require_admin, services
from bandits.schemas import ApplyRequest, JobListQuery, TuningRequest, parse

bp = Blueprint("tunings", __name__, url_prefix="/v1/loops/<loop>/tunings")


@bp.post("")
def submit(loop: str):
    require_admin()
    body = parse(TuningRequest, json_body("InvalidTuning"), "InvalidTuning", 422)
    return json_response(services().tunings.submit(loop, body), 202)


@bp.get("")
def list_tunings(loop: str):
    require_admin()
    query = parse(JobListQuery, request.args.to_dict(), "InvalidTuningListRequest")
    return json_response(services().tunings.list(loop, query.limit))


@bp.get("/<int:job_id>")
def get_tuning(loop: str, job_id: int):
    require_admin()
    return json_response(services().tunings.get(loop, job_id))


@bp.post("/<int:job_id>/apply")
def apply(loop: str, job_id: int):
    require_admin()
    raw = json_body("InvalidApplyRequest") if request.content_length else {}  # no body: defaults
    body = parse(ApplyRequest, raw, "InvalidApplyRequest", 422)
    return json_response(services().tunings.apply(loop, job_id, body.rebuild), 200)
