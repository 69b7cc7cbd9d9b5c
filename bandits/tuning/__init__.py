"""Choosing a loop's reward weights from its logs (numpy and scipy; no database, no HTTP).

A loop's reward is Σₖ wₖ · outcomeₖ. For a weight vector w, the policy the loop would serve is its
exploration over argmaxₐ Σₖ wₖ f̂ₖ(x, a), with f̂ₖ one reward model per objective
(:mod:`~bandits.tuning.policies`). Each objective's value of that policy is estimated by DR and
SNIPS with intervals and paired lifts over the logger (:mod:`~bandits.tuning.scoring`); weights
are searched on a grid or by quasi-random points and Nelder-Mead and judged against guardrails
(:mod:`~bandits.tuning.search`); :func:`tune` shortlists the best distinct policies, confirms
them with the policies the loop would learn (given by its caller) and re-estimates the
recommendation on a holdout split. See docs/tuning.md.
"""

from bandits.tuning.data import TuningArrays
from bandits.tuning.policies import Exploration, exploration_for
from bandits.tuning.report import tune
from bandits.tuning.scoring import ESTIMATORS, Score, Scorer
from bandits.tuning.search import (
    Candidate,
    Guardrail,
    Problem,
    ScoreMany,
    Search,
    pareto_mask,
    recommend,
    simplex_grid,
    sobol_simplex,
)

__all__ = [
    "Candidate", "ESTIMATORS", "Exploration", "Guardrail", "Problem", "Score", "ScoreMany",
    "Scorer", "Search", "TuningArrays", "exploration_for", "pareto_mask", "recommend",
    "simplex_grid", "sobol_simplex", "tune",
]
