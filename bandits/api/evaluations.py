"""Evaluation jobs: submit, read, list (admin keys only). A worker runs them."""

from __future__ import annotations

from flask import Blueprint, request

from bandits.api.http import json_body, json_response, require_admin, services
from bandits.schemas import EvaluationRequest, JobListQuery, parse

bp = Blueprint("evaluations", __name__, url_prefix="/v1/loops/<loop>/evaluations")


@bp.post("")
def submit(loop: str):
    require_admin()
    body = parse(EvaluationRequest, json_body("InvalidEvaluation"), "InvalidEvaluation", 422)
    return json_response(services().evaluations.submit(loop, body), 202)


@bp.get("")
def list_evaluations(loop: str):
    require_admin()
    query = parse(JobListQuery, request.args.to_dict(), "InvalidEvaluationListRequest")
    return json_response(services().evaluations.list(loop, query.limit))


@bp.get("/<int:job_id>")
def get_evaluation(loop: str, job_id: int):
    require_admin()
    return json_response(services().evaluations.get(loop, job_id))
