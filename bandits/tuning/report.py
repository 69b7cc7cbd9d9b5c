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
from bandits.tuning.search import (
    Candidate, Problem, ScoreMany, Search, judge, recommend, score_here, sensitivity,
)


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


Confirm = Callable[[list[np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]
"""Trains the policy the loop would serve with each weight vector; returns its (A, n)
probabilities on the tune and on the holdout split's events."""


def _shortlist(search: Search, candidates: list[Candidate], count: int) -> list[Candidate]:
    """Up to ``count`` of the best candidates that pass, better than the current weights, one
    per distinct policy (equal estimates), and robust: every neighbour of theirs (each
    normalised weight moved by the sensitivity step) passes the guardrails too, since the reward
    models' errors move the borders between policies. A policy is represented by the weights
    that make it the easiest to learn (:meth:`Scorer.learnability`)."""
    groups: dict[tuple[float, ...], list[Candidate]] = {}
    for candidate in candidates:
        if candidate.passes and candidate.reliable and candidate.source != "current" and candidate.criterion > 0:
            groups.setdefault(tuple(np.round(candidate.score.value[0], 12)), []).append(candidate)
    chosen: list[Candidate] = []
    for members in sorted(groups.values(), key=lambda group: -group[0].criterion):
        clearest = max(members, key=lambda c: search.scorer.learnability(c.weights))
        if all(neighbour.passes for neighbour in sensitivity(search, clearest)):
            chosen.append(clearest)
        if len(chosen) == count:
            break
    return chosen


def _confirmed(problem: Problem, tune_scorer: Scorer, holdout_scorer: Scorer,
               current: Candidate, shortlist: list[Candidate], confirm: Confirm) -> list[dict[str, Any]]:
    """The shortlist's and the current weights' trained policies, judged on the tune split
    against the current weights' trained policy, and their holdout estimates."""
    pmfs = confirm([current.weights, *(c.weights for c in shortlist)])
    tune_scorer.set_reference_pmf(pmfs[0][0])
    holdout_scorer.set_reference_pmf(pmfs[0][1])
    out = []
    for candidate, (tune_pmf, holdout_pmf) in zip([current, *shortlist], pmfs):
        trained = Candidate(candidate.source, candidate.point, candidate.weights,
                            tune_scorer.score_pmf(tune_pmf))
        trained.guardrails, trained.passes, trained.reliable, trained.criterion = judge(
            problem, trained.score, tune_scorer.logged_mean)
        held = holdout_scorer.score_pmf(holdout_pmf)
        checks, passes, reliable, _ = judge(problem, held, holdout_scorer.logged_mean)
        out.append({"candidate": candidate, "trained": trained, "holdout": held,
                    "holdout_checks": (checks, passes, reliable)})
    # Later scores on the tune split (the sensitivity check) compare with the current weights'
    # policy of the search again, not with its trained one.
    tune_scorer.set_reference(problem.current)
    return out


def tune(problem: Problem, exploration: Exploration, tune_split: TuningArrays,
         holdout_split: TuningArrays, budget: int, seed: int,
         progress: Callable[[float], None] = lambda fraction: None,
         confirm: Confirm | None = None, confirm_count: int = 3,
         score_many: ScoreMany = score_here) -> dict[str, Any]:
    """Search weights on ``tune_split``, pick one, re-estimate it on ``holdout_split``.

    With ``confirm``, the search's best candidates (up to ``confirm_count`` distinct policies
    that pass) and the current weights are confirmed: the policies the loop would actually serve
    with them (``confirm`` trains them) are estimated on both splits, and the recommendation is
    chosen among those by the same rule. Without it, among the reward models' policies.
    ``score_many`` scores the search's candidates (:data:`~bandits.tuning.search.ScoreMany`).

    Returns the candidates table, the Pareto front (candidate ids), the recommendation with its
    holdout estimates and sensitivity, and the logger's means on both splits.
    """
    search = Search(problem, Scorer(tune_split, exploration), progress, score_many)
    candidates = search.run(budget, seed)
    current = candidates[0]
    holdout = Scorer(holdout_split, exploration)
    confirmed: list[dict[str, Any]] = []
    shortlist = _shortlist(search, candidates, max(confirm_count, 1))
    if confirm is None:
        chosen, reason = recommend([current, *shortlist[:1]])
        picked = chosen or current
        holdout_score = holdout.score(picked.weights)
        current_holdout = holdout.score(current.weights)
        checks, passes, reliable, _ = judge(problem, holdout_score, holdout.logged_mean)
    else:
        confirmed = _confirmed(problem, search.scorer, holdout, current, shortlist, confirm)
        trained = [entry["trained"] for entry in confirmed]
        best, reason = recommend(trained)
        entry = next((e for e in confirmed if e["trained"] is best), confirmed[0])
        chosen = entry["candidate"] if best is not None else None
        picked = chosen or current
        holdout_score = entry["holdout"]
        current_holdout = confirmed[0]["holdout"]
        checks, passes, reliable = entry["holdout_checks"]
        if best is not None:
            reason += " (confirmed with the policy the loop learns with them)"
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
        recommendation["current_holdout"] = score_json(problem, current_holdout)
        recommendation["sensitivity"] = [
            candidate_json(problem, neighbour) for neighbour in sensitivity(search, chosen)]
    result = {
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
    if confirm is not None:
        result["confirmed"] = [{
            "candidate": candidates.index(entry["candidate"]),
            "weights": _rounded(entry["candidate"].weights, problem.objectives),
            "tune": candidate_json(problem, entry["trained"]),
            "holdout": score_json(problem, entry["holdout"]),
        } for entry in confirmed]
    return result
