"""A whole tuning on arrays in memory, and its result as JSON: :func:`tune`.

The job (:mod:`bandits.jobs.tuning`) reads the log, splits it and fits the reward models; this
module needs only the tune and holdout splits' :class:`~bandits.tuning.data.TuningArrays`, so
analysts can run it in a notebook on arrays of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bandits.ope.intervals import gaussian_interval
from bandits.tuning.data import TuningArrays
from bandits.tuning.policies import Exploration
from bandits.tuning.scoring import ESTIMATORS, Score, Scorer
from bandits.tuning.search import Candidate, Problem, Search, judge, recommend, sensitivity


def _interval(value: float, error: float, alpha: float) -> tuple[float, float]:
    found = gaussian_interval(float(value), float(error), alpha)
    return found.lower, found.upper


def _rounded(weights: np.ndarray, objectives: tuple[str, ...]) -> dict[str, float]:
    return {name: float(f"{value:.6g}") for name, value in zip(objectives, weights)}


def score_json(problem: Problem, score: Score) -> dict[str, Any]:
    """Per objective, per estimator: estimate, interval, lift and its interval."""
    out: dict[str, Any] = {}
    for k, objective in enumerate(problem.objectives):
        out[objective] = {
            name: {"estimate": float(score.value[e, k]),
                   "interval": list(score.interval(e, k, problem.alpha)),
                   "lift": float(score.lift[e, k]),
                   "lift_interval": list(score.lift_interval(e, k, problem.alpha))}
            for e, name in enumerate(ESTIMATORS)
        }
    return out


def candidate_json(problem: Problem, candidate: Candidate, index: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": candidate.source,
        "weights": _rounded(candidate.weights, problem.objectives),
        "normalised_weights": _rounded(candidate.point, problem.objectives),
        "objectives": score_json(problem, candidate.score),
        "guardrails": candidate.guardrails, "passes": candidate.passes,
        "reliable": candidate.reliable, "pareto": candidate.pareto,
        "effective_sample_size": candidate.score.effective_sample_size,
    }
    score = candidate.score
    if score.versus_reference is not None:
        row["versus_current"] = {
            objective: {"difference": float(score.versus_reference[k]),
                        "interval": list(_interval(score.versus_reference[k],
                                                   score.versus_reference_standard_error[k],
                                                   problem.alpha))}
            for k, objective in enumerate(problem.objectives)}
    return {"id": index, **row} if index is not None else row


def tune(problem: Problem, exploration: Exploration, tune_split: TuningArrays,
         holdout_split: TuningArrays, budget: int, seed: int,
         progress: Callable[[float], None] = lambda fraction: None) -> dict[str, Any]:
    """Search weights on ``tune_split``, pick one, re-estimate it on ``holdout_split``.

    Returns the candidates table, the Pareto front (candidate ids), the recommendation with its
    holdout estimates and sensitivity, and the logger's means on both splits.
    """
    search = Search(problem, Scorer(tune_split, exploration), progress)
    candidates = search.run(budget, seed)
    chosen, reason = recommend(candidates)
    current = candidates[0]
    holdout = Scorer(holdout_split, exploration)
    picked = chosen or current
    holdout_score = holdout.score(picked.weights)
    checks, passes, reliable, _ = judge(problem, holdout_score, holdout.logged_mean)
    recommendation: dict[str, Any] = {
        "action": "apply" if chosen is not None else "keep",
        "reason": reason,
        "candidate": candidates.index(chosen) if chosen is not None else None,
        "weights": _rounded(picked.weights, problem.objectives),
        "holdout": {
            "objectives": score_json(problem, holdout_score), "guardrails": checks,
            "passes": passes, "reliable": reliable,
            "effective_sample_size": holdout_score.effective_sample_size,
        },
    }
    if chosen is not None:
        recommendation["current_holdout"] = score_json(problem, holdout.score(current.weights))
        recommendation["sensitivity"] = [
            candidate_json(problem, neighbour) for neighbour in sensitivity(search, chosen)]
    return {
        "objectives": list(problem.objectives), "primary": problem.primary,
        "guardrails": [{"objective": g.objective, "max_drop": g.max_drop} for g in problem.guardrails],
        "confidence": 1.0 - problem.alpha, "estimators": list(ESTIMATORS),
        "scales": _rounded(problem.scales, problem.objectives),
        "directions": _rounded(problem.directions, problem.objectives),
        "logged_mean": {"tune": _rounded(search.scorer.logged_mean, problem.objectives),
                        "holdout": _rounded(holdout.logged_mean, problem.objectives)},
        "candidates": [candidate_json(problem, c, i) for i, c in enumerate(candidates)],
        "pareto_front": [i for i, c in enumerate(candidates) if c.pareto],
        "recommendation": recommendation,
    }
