r"""Searching reward weights: candidates, guardrails, the Pareto front, the recommendation.

Weights are searched in *normalised* units: objective :math:`k` is divided by a scale
:math:`c_k` (its mean under the logger, so a 0/1 click and revenue in dollars weigh alike) and
oriented by a direction :math:`d_k` (``-1`` for an objective the loop's current weight makes
harmful, e.g. unsubscribes). A point :math:`\omega` of the simplex is the weight vector
:math:`w_k = m\, d_k \omega_k / c_k` in the user's units, with :math:`m = \sum_k |w^0_k| c_k` for
the current weights :math:`w^0`: every candidate keeps the current weights' overall size, which
matters because squarecb and softmax exploration depend on the scores' scale.

Candidates: the current weights, then a grid on the simplex (up to 3 objectives) or Sobol
points followed by a Nelder-Mead refinement (more), within the budget.

A candidate passes a guardrail on objective :math:`g` when the lower bound of its paired DR lift
over the logger, at confidence :math:`1 - \alpha / G` (Bonferroni over the :math:`G`
guardrails), is at least :math:`-\delta_g |\bar r_g|` (the allowed relative drop; for a harmful
objective, the upper bound at most :math:`+\delta_g |\bar r_g|`). It is reliable when its
effective sample size is at least ``min_ess``. The recommendation maximises the lower confidence
bound of the primary objective's gain over the current weights (a paired DR difference on the
same events) among reliable candidates that pass every guardrail, and is a change only when that
bound is above 0; otherwise, or when nothing passes, it says to keep the current weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from bandits.tuning.scoring import Score, Scorer

DR, SNIPS = 0, 1
SENSITIVITY_STEP = 0.05


@dataclass(frozen=True)
class Guardrail:
    objective: str
    max_drop: float


@dataclass(frozen=True)
class Problem:
    """What is tuned: ``objectives`` (names, in the order of the arrays' last axis), the
    ``primary`` one, ``guardrails``, the ``current`` weights (user units), the normalising
    ``scales``, ``alpha`` = 1 - confidence and the smallest acceptable effective sample size."""

    objectives: tuple[str, ...]
    primary: str
    guardrails: tuple[Guardrail, ...]
    current: np.ndarray
    scales: np.ndarray
    alpha: float = 0.05
    min_ess: float = 0.0

    @property
    def directions(self) -> np.ndarray:
        return np.where(self.current < 0, -1.0, 1.0)

    @property
    def magnitude(self) -> float:
        size = float(np.abs(self.current) @ self.scales)
        return size if size > 0 else 1.0

    def index(self, objective: str) -> int:
        return self.objectives.index(objective)

    def user_weights(self, point: np.ndarray) -> np.ndarray:
        return self.magnitude * self.directions * np.asarray(point) / self.scales

    def simplex_point(self, weights: np.ndarray) -> np.ndarray:
        size = np.abs(weights) * self.scales
        total = size.sum()
        return size / total if total > 0 else np.full(len(size), 1 / len(size))


@dataclass(eq=False)
class Candidate:
    source: str
    point: np.ndarray
    weights: np.ndarray
    score: Score
    guardrails: dict[str, dict[str, float | bool]] = field(default_factory=dict)
    passes: bool = True
    reliable: bool = True
    pareto: bool = False
    # The lower confidence bound of the primary objective's gain over the current weights.
    criterion: float = -math.inf


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def judge(problem: Problem, score: Score, logged_mean: np.ndarray) -> tuple[dict, bool, bool, float]:
    """(guardrail checks, passes all, reliable, criterion) of one score."""
    directions = problem.directions
    checks: dict[str, dict[str, float | bool]] = {}
    z_guard = _z(problem.alpha / max(len(problem.guardrails), 1))
    for guardrail in problem.guardrails:
        k = problem.index(guardrail.objective)
        oriented = directions[k] * score.lift[DR, k]
        bound = oriented - z_guard * score.lift_standard_error[DR, k]
        allowed = -guardrail.max_drop * abs(float(logged_mean[k]))
        checks[guardrail.objective] = {
            "lift": float(score.lift[DR, k]), "bound": float(directions[k] * bound),
            "allowed": float(directions[k] * allowed),
            "passes": bool(np.isfinite(bound) and bound >= allowed),
        }
    primary = problem.index(problem.primary)
    if score.versus_reference is None:  # no reference: against the logger
        gain, error = score.lift[DR, primary], score.lift_standard_error[DR, primary]
    else:
        gain = score.versus_reference[primary]
        error = score.versus_reference_standard_error[primary]
    criterion = float(directions[primary] * gain - _z(problem.alpha) * error)
    passes = all(check["passes"] for check in checks.values())
    reliable = score.effective_sample_size >= problem.min_ess
    return checks, passes, reliable, criterion if np.isfinite(criterion) else -math.inf


def simplex_grid(objectives: int, budget: int) -> np.ndarray:
    """The finest regular grid on the simplex with at most ``budget`` points (at least the
    vertices' count is needed: one point per objective)."""
    if objectives == 1:
        return np.ones((1, 1))
    steps = 1
    while math.comb(steps + 1 + objectives - 1, objectives - 1) <= budget:
        steps += 1
    points = [np.array(parts) / steps for parts in _compositions(steps, objectives)]
    return np.array(points)


def _compositions(total: int, parts: int):
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        bounds = (-1, *cuts, total + parts - 1)
        yield [bounds[i + 1] - bounds[i] - 1 for i in range(parts)]


def sobol_simplex(objectives: int, count: int, seed: int) -> np.ndarray:
    """``count`` quasi-random points of the simplex (scrambled Sobol through the Dirichlet(1)
    map), seeded."""
    from scipy.stats import qmc

    power = max(int(math.ceil(math.log2(max(count, 1)))), 0)
    uniform = qmc.Sobol(d=objectives, scramble=True, seed=seed).random_base2(power)[:count]
    exponential = -np.log(np.clip(uniform, 1e-12, 1.0))
    return exponential / exponential.sum(axis=1, keepdims=True)


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Which rows of (candidates, objectives) ``values`` (higher is better) no other row
    dominates."""
    values = np.asarray(values, dtype=float)
    mask = np.ones(len(values), dtype=bool)
    for i, row in enumerate(values):
        dominated = np.all(values >= row, axis=1) & np.any(values > row, axis=1)
        mask[i] = not dominated.any()
    return mask


# Scores weight vectors with a scorer, in order: here by default; a job passes one that spreads
# them over processes (numpy's operations on the scorer's chunks hold the GIL, so threads score
# no faster than one).
ScoreMany = Callable[[Scorer, list[np.ndarray]], Iterable[Score]]


def score_here(scorer: Scorer, weights: list[np.ndarray]) -> Iterable[Score]:
    return map(scorer.score, weights)


class Search:
    """Evaluates candidates on the tune split's :class:`Scorer`."""

    def __init__(self, problem: Problem, scorer: Scorer,
                 progress: Callable[[float], None] = lambda fraction: None,
                 score_many: ScoreMany = score_here) -> None:
        self.problem = problem
        self.scorer = scorer
        self.progress = progress
        self.score_many = score_many
        self.candidates: list[Candidate] = []

    def evaluate(self, point: np.ndarray, source: str, record: bool = True,
                 score: Score | None = None) -> Candidate:
        weights = self.problem.user_weights(point)
        score = score if score is not None else self.scorer.score(weights)
        checks, passes, reliable, criterion = judge(self.problem, score, self.scorer.logged_mean)
        candidate = Candidate(source, np.asarray(point, dtype=float), weights, score, checks,
                              passes, reliable, criterion=criterion)
        if record:
            self.candidates.append(candidate)
        return candidate

    def run(self, budget: int, seed: int) -> list[Candidate]:
        """The current weights and up to ``budget - 1`` more candidates, Pareto flags set."""
        problem = self.problem
        k = len(problem.objectives)
        self.scorer.set_reference(problem.current)
        self.evaluate(problem.simplex_point(problem.current), "current")
        if k <= 3:
            points = [(p, "grid") for p in simplex_grid(k, max(budget - 1, 1))]
        else:
            explored = max((budget - 1) * 7 // 10, 1)
            points = [(p, "quasi-random") for p in sobol_simplex(k, explored, seed)]
        scores = self.score_many(self.scorer, [problem.user_weights(p) for p, _ in points])
        for done, ((point, source), score) in enumerate(zip(points, scores), start=1):
            self.evaluate(point, source, score=score)
            self.progress(done / max(budget, 1))
        if k > 3:
            self._refine(budget - len(self.candidates))
        values = np.array([problem.directions * c.score.value[DR] for c in self.candidates])
        for candidate, optimal in zip(self.candidates, pareto_mask(values)):
            candidate.pareto = bool(optimal)
        self.progress(1.0)
        return self.candidates

    def _refine(self, evaluations: int) -> None:
        """Nelder-Mead from the best candidate so far, over softmax-parametrised simplex
        points, for at most ``evaluations`` more candidates; guardrail shortfalls are
        penalised."""
        if evaluations <= 0:
            return
        from scipy.optimize import minimize

        start = max(self.candidates, key=self._penalised)
        left = [evaluations]

        def objective(z: np.ndarray) -> float:
            if left[0] <= 0:  # the budget is spent: a flat answer ends the simplex's moves
                return math.inf
            left[0] -= 1
            point = np.exp(z - z.max())
            return -self._penalised(self.evaluate(point / point.sum(), "refined"))

        minimize(objective, np.log(np.clip(start.point, 1e-6, None)), method="Nelder-Mead",
                 options={"maxfev": evaluations, "xatol": 1e-3, "fatol": 1e-9})

    def _penalised(self, candidate: Candidate) -> float:
        shortfall = sum(max(0.0, float(check["allowed"]) - float(check["bound"]))
                        if self.problem.directions[self.problem.index(name)] > 0 else
                        max(0.0, float(check["bound"]) - float(check["allowed"]))
                        for name, check in candidate.guardrails.items())
        criterion = candidate.criterion if np.isfinite(candidate.criterion) else -1e9
        return criterion - 1e3 * shortfall


def recommend(candidates: list[Candidate]) -> tuple[Candidate | None, str]:
    """The candidate to apply (None: keep the current weights) and why."""
    eligible = [c for c in candidates if c.passes and c.reliable]
    if not eligible:
        return None, ("no candidate passes every guardrail with a reliable estimate; keep the "
                      "current weights")
    best = max(eligible, key=lambda c: (c.criterion, c.source == "current"))
    if best.source == "current" or best.criterion <= 0:
        return None, ("no candidate that passes every guardrail is better than the current "
                      "weights on the primary objective with confidence; keep them")
    return best, ("the highest lower confidence bound on the primary objective's gain over the "
                  "current weights among the candidates that pass every guardrail")


def sensitivity(search: Search, chosen: Candidate, step: float = SENSITIVITY_STEP) -> list[Candidate]:
    """Candidates around ``chosen``: each objective's normalised weight moved by ±``step``
    (renormalised), scored on the same split. Not added to the search's candidates."""
    out = []
    for k in range(len(chosen.point)):
        for sign in (1.0, -1.0):
            point = chosen.point.copy()
            point[k] = max(point[k] + sign * step, 0.0)
            if point.sum() <= 0:
                continue
            out.append(search.evaluate(point / point.sum(), "sensitivity", record=False))
    return out
