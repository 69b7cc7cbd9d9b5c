"""Evaluation and tuning jobs run in this process, their results as tidy DataFrames, and one
``bandits.ope`` estimate over a DataFrame of the log.

:func:`evaluate` and :func:`tune` do what ``bandits evaluate`` does: the request is checked and
recorded in the ``jobs`` table as a job this process has claimed, run here by the job runners of
:mod:`bandits.jobs` (the code ``bandits worker`` runs), and its result returned. So a notebook
gets exactly what ``POST /v1/loops/{loop}/evaluations`` would give, and the job is in the
loop's history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bandits.analysis.frames import Moment, open_database, utc
from bandits.export.window import EARLIEST, LATEST
from bandits.jobs.table import shown_interval
from bandits.store.db import Database

Progress = Callable[[float], None]
CandidateSpec = str | Mapping[str, Any]


class JobFailed(RuntimeError):
    """The job ran and failed; the message is the job's error."""


def _window(since: Moment, until: Moment) -> dict[str, str]:
    return {"since": utc(since, EARLIEST).isoformat(), "until": utc(until, LATEST).isoformat()}


def candidate_spec(candidate: CandidateSpec) -> dict[str, Any]:
    """A candidate as the api takes it, from the JSON (a dict) or the command line's shorthand:
    ``logging``, ``uniform``, ``baseline``, ``constant:ID``, ``model:N``, ``vw:ARGS``."""
    if isinstance(candidate, Mapping):
        return dict(candidate)
    from bandits.cli import candidate_shorthand  # the one parser, `bandits evaluate`'s

    return candidate_shorthand(candidate)


def _run(db: Database, service, loop: str, request, progress: Progress | None) -> dict[str, Any]:
    from bandits.jobs.worker import run_job, worker_name

    name = worker_name() + ":analysis"
    job = service.submit(loop, request, claimed_by=name)
    run_job(db, job["id"], name, progress or (lambda fraction: None))
    done = service.get(loop, job["id"])
    if done["status"] != "succeeded":
        raise JobFailed(f"{job['kind']} {job['id']} of loop {loop!r} failed: {done['error']}")
    return done["result"]


def evaluate(database: str | Database, loop: str, candidates: Iterable[CandidateSpec],
             since: Moment = None, until: Moment = None, *, objectives: Sequence[str] | None = None,
             estimators: Sequence[str | Mapping[str, Any]] | None = None,
             reward_model: str = "ridge", confidence: float = 0.95, bootstrap: int = 0,
             seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate ``candidates`` on ``loop``'s log over ``since`` ≤ ts < ``until`` (default: all)
    and return the job's result (docs/ope.md, "Evaluation jobs"; :func:`result_frame` makes it a
    table). Arguments are those of ``POST /v1/loops/{loop}/evaluations``; ``estimators`` default
    to the job's (cb: ips, snips, dr). A request the api would refuse raises its
    :class:`~bandits.errors.ApiError` (code and message); a failed run, :class:`JobFailed`.
    ``progress`` hears the fraction done."""
    from bandits.jobs.worker import EvaluationService
    from bandits.schemas import EvaluationRequest, parse

    body: dict[str, Any] = {
        "window": _window(since, until),
        "candidates": [candidate_spec(candidate) for candidate in candidates],
        "reward_model": reward_model, "confidence": confidence, "bootstrap": bootstrap, "seed": seed,
    }
    if objectives is not None:
        body["objectives"] = list(objectives)
    if estimators is not None:
        body["estimators"] = [e if isinstance(e, str) else dict(e) for e in estimators]
    request = parse(EvaluationRequest, body, "InvalidEvaluation", 422)
    with open_database(database) as db:
        return _run(db, EvaluationService(db), loop, request, progress)


def tune(database: str | Database, loop: str, primary: str, since: Moment = None,
         until: Moment = None, *, guardrails: Mapping[str, float] | None = None,
         budget: int = 200, split: Mapping[str, float] | None = None, confidence: float = 0.95,
         fit_limit: int | None = None, min_ess: float | None = None, seed: int = 0,
         progress: Progress | None = None) -> dict[str, Any]:
    """Search ``loop``'s reward weights that maximise ``primary`` without dropping a guardrail
    objective by more than its share (``{"click": 0.02}``: 2 %), on the log over the window; the
    tuning job's result (docs/tuning.md). Nothing is applied. Errors as :func:`evaluate`."""
    from bandits.jobs.worker import TuningService
    from bandits.schemas import TuningRequest, parse

    body: dict[str, Any] = {
        "window": _window(since, until), "primary": primary, "budget": budget,
        "guardrails": [{"objective": name, "max_drop": drop} for name, drop in (guardrails or {}).items()],
        "confidence": confidence, "seed": seed,
    }
    optional = {"split": dict(split) if split is not None else None, "fit_limit": fit_limit,
                "min_ess": min_ess}
    body.update({key: value for key, value in optional.items() if value is not None})
    request = parse(TuningRequest, body, "InvalidTuning", 422)
    with open_database(database) as db:
        return _run(db, TuningService(db), loop, request, progress)


# -- results as tables ------------------------------------------------------------------------

def _interval(intervals: Mapping[str, Any] | None) -> tuple[float, float]:
    interval = shown_interval(intervals)
    return _number(interval.get("lower")), _number(interval.get("upper"))


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _evaluation_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for candidate, by_objective in result["candidates"].items():
        for objective, cells in by_objective.items():
            # cb and slates: {estimator: cell}; ccb: {"slots": {k: {estimator: cell}}, "total": ...}
            groups = ([("total", cells["total"])] + list(cells["slots"].items())
                      if "slots" in cells else [(None, cells)])
            for slot, by_estimator in groups:
                for estimator, cell in by_estimator.items():
                    lower, upper = _interval(cell["intervals"])
                    lift = cell["lift"]
                    lift_lower, lift_upper = _interval(lift["intervals"])
                    diagnostics = cell.get("diagnostics") or {}
                    rows.append({
                        "candidate": candidate, "objective": objective, "slot": slot,
                        "estimator": estimator, "estimate": _number(cell["estimate"]),
                        "lower": lower, "upper": upper,
                        "standard_error": _number(cell["standard_error"]),
                        "lift": _number(lift["value"]), "lift_lower": lift_lower,
                        "lift_upper": lift_upper,
                        "n": _number(diagnostics.get("n")),
                        "effective_sample_size": _number(diagnostics.get("effective_sample_size")),
                        **{f"weight_{q}": _number(value) for q, value in
                           (diagnostics.get("weight_quantiles") or {}).items()},
                        "weight_max": _number(diagnostics.get("weight_max")),
                    })
    return rows


def _tuning_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    recommended = result["recommendation"]["candidate"]
    pareto = set(result["pareto_front"])
    rows = []
    for candidate in result["candidates"]:
        for objective, by_estimator in candidate["objectives"].items():
            for estimator, cell in by_estimator.items():
                lower, upper = cell["interval"]
                lift_lower, lift_upper = cell["lift_interval"]
                rows.append({
                    "candidate": candidate["id"], "source": candidate["source"],
                    **{f"weight_{name}": weight for name, weight in candidate["weights"].items()},
                    "objective": objective, "estimator": estimator,
                    "estimate": _number(cell["estimate"]), "lower": _number(lower),
                    "upper": _number(upper), "lift": _number(cell["lift"]),
                    "lift_lower": _number(lift_lower), "lift_upper": _number(lift_upper),
                    "passes": candidate["passes"], "reliable": candidate["reliable"],
                    "pareto": candidate["id"] in pareto,
                    "recommended": candidate["id"] == recommended,
                    "effective_sample_size": _number(candidate["effective_sample_size"]),
                })
    return rows


def result_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """An evaluation's or a tuning's result as a tidy table, one row per estimate.

    Evaluation: ``candidate``, ``objective``, ``slot`` (``ccb``: ``"total"`` or the position;
    else None), ``estimator``, ``estimate``, ``lower``/``upper`` (the skew-corrected interval),
    ``standard_error``, ``lift`` over logging with ``lift_lower``/``lift_upper``, and the weight
    diagnostics ``n``, ``effective_sample_size``, ``weight_p50``, ``weight_p90``, ``weight_p99``,
    ``weight_p99.9``, ``weight_max``.

    Tuning: ``candidate`` (its id), ``source``, ``weight_<objective>`` for each objective,
    ``objective``, ``estimator`` (dr, snips), ``estimate``, ``lower``, ``upper``, ``lift``,
    ``lift_lower``, ``lift_upper``, ``passes``, ``reliable``, ``pareto``, ``recommended``,
    ``effective_sample_size``.
    """
    if "pareto_front" in result:
        return pd.DataFrame.from_records(_tuning_rows(result))
    if "candidates" in result and isinstance(result["candidates"], Mapping):
        return pd.DataFrame.from_records(_evaluation_rows(result))
    raise ValueError("not the result of an evaluation or a tuning job (see docs/ope.md, docs/tuning.md)")


# -- one estimate on a frame ------------------------------------------------------------------

def estimate(frame: pd.DataFrame, target_probability: Any, estimator: str | Mapping[str, Any] = "snips",
             objective: str = "reward", **options: Any):
    """One :func:`bandits.ope.estimate` of a target policy over a frame of
    :func:`~bandits.analysis.load_decisions`: ``reward`` is the frame's ``objective`` column,
    ``propensity`` its ``probability``, and ``target_probability`` (an array, or a column name)
    the target's probability of each row's ``chosen`` action. ``options`` go to
    :func:`bandits.ope.estimate` (``alpha``, ``n_bootstrap``, ``random_state``, ``q_logged``
    and ``q_target`` for DM/DR, ...). Returns its :class:`bandits.ope.Estimate`."""
    from bandits.ope import estimate as ope_estimate

    if isinstance(target_probability, str):
        target_probability = frame[target_probability]
    return ope_estimate(dict(estimator) if isinstance(estimator, Mapping) else estimator,
                        reward=np.asarray(frame[objective], dtype=float),
                        propensity=np.asarray(frame["probability"], dtype=float),
                        target_probability=np.asarray(target_probability, dtype=float), **options)
