r"""Every objective's value of a weight vector's policy, by DR and SNIPS, with paired lifts.

For the policy :math:`\pi_w` (:mod:`bandits.tuning.policies`) and event :math:`i` with logged
action :math:`a_i`, propensity :math:`\mu_i` and outcomes :math:`r_{ik}`:
:math:`\rho_i = \pi_w(a_i \mid x_i) / \mu_i`, :math:`\hat q_{ik} = \sum_a \pi_w(a \mid x_i)
\hat f_k(x_i, a)`, and per objective

* DR: :math:`\hat V_k = E_n[\hat q_{ik} + \rho_i (r_{ik} - \hat f_k(x_i, a_i))]`,
* SNIPS: :math:`\hat V_k = E_n[\rho_i r_{ik}] / E_n[\rho_i]`,

the same estimators as :mod:`bandits.ope` (a test checks that they agree), computed for all
objectives at once and without the streaming machinery, because a tuning scores hundreds of
policies on the same events held in memory. Lifts are paired differences with what the logger
obtained on the same events, :math:`E_n[r_{ik}]`; their standard errors use the per-event
differences (for SNIPS, its linearisation :math:`\rho_i (r_{ik} - \hat V_k) / E_n[\rho]`), so
shared noise cancels. Intervals are Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandits.ope.intervals import gaussian_interval
from bandits.tuning.data import TuningArrays
from bandits.tuning.policies import Exploration

ESTIMATORS = ("dr", "snips")
LEARNABILITY_QUANTILE = 0.05


@dataclass(frozen=True)
class Score:
    """One policy's estimates on one split. Arrays are indexed ``[estimator, objective]``
    (estimators in :data:`ESTIMATORS` order)."""

    value: np.ndarray
    standard_error: np.ndarray
    lift: np.ndarray
    lift_standard_error: np.ndarray
    effective_sample_size: float
    n: int
    # DR's paired difference with the reference policy (the current weights'), per objective.
    versus_reference: np.ndarray | None = None
    versus_reference_standard_error: np.ndarray | None = None

    def interval(self, estimator: int, objective: int, alpha: float) -> tuple[float, float]:
        found = gaussian_interval(float(self.value[estimator, objective]),
                                  float(self.standard_error[estimator, objective]), alpha)
        return found.lower, found.upper

    def lift_interval(self, estimator: int, objective: int, alpha: float) -> tuple[float, float]:
        found = gaussian_interval(float(self.lift[estimator, objective]),
                                  float(self.lift_standard_error[estimator, objective]), alpha)
        return found.lower, found.upper


def _moments(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and sample covariance of the per-event terms, one row per term (c, n). ``rows``
    is centred in place (a copy of it cost as much as the product)."""
    n = rows.shape[1]
    mean = rows.mean(axis=1)
    if n < 2:
        return mean, np.full((rows.shape[0],) * 2, np.nan)
    rows -= mean[:, None]
    return mean, (rows @ rows.T) / (n - 1)


def _error(variance: np.ndarray, n: int) -> np.ndarray:
    return np.sqrt(np.maximum(variance, 0.0) / n)


class Scorer:
    """Scores weight vectors on one split's :class:`TuningArrays` under one exploration.

    The predictions are held as (K, A, n) float32 (the policy's scores and expected values; a
    tuning is memory-bound over them), the estimators' terms and moments in float64."""

    def __init__(self, arrays: TuningArrays, exploration: Exploration) -> None:
        self.arrays = arrays
        self.exploration = exploration
        self._columns = np.arange(arrays.n)
        self._predictions = np.ascontiguousarray(arrays.predictions.transpose(2, 1, 0), dtype=np.float32)
        self._allowed = None if arrays.allowed.all() else np.ascontiguousarray(arrays.allowed.T)
        self._outcomes = np.ascontiguousarray(arrays.outcomes.T)
        self._residual = self._outcomes - arrays.logged_predictions().T
        self._inverse_propensity = 1.0 / arrays.propensity
        self.logged_mean = arrays.outcomes.mean(axis=0)
        self._reference: np.ndarray | None = None

    def set_reference(self, weights: np.ndarray) -> None:
        """Score every later policy against the policy of ``weights`` too (paired, by DR)."""
        self.set_reference_pmf(self.pmf(weights))

    def set_reference_pmf(self, pmf: np.ndarray) -> None:
        """Score every later policy against the policy whose (A, n) probabilities are ``pmf``."""
        self._reference = None
        rho, q_target = self._weighted(pmf)
        self._reference = q_target + self._residual * rho

    def _weighted(self, pmf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ρ, q̂^π): the importance weight of the logged action at every event (n,), and each
        objective's reward model averaged over the policy (K, n)."""
        pmf = np.asarray(pmf, dtype=np.float32)
        rho = pmf[self.arrays.logged, self._columns] * self._inverse_propensity
        # Summed in float32 (sums of A products, relative error ~1e-7, far below any standard
        # error), in a third of the time of a float64 einsum.
        return rho, np.einsum("an,kan->kn", pmf, self._predictions).astype(np.float64)

    def _scores(self, weights: np.ndarray) -> np.ndarray:
        """(A, n): Σₖ wₖ f̂ₖ of every action at every event."""
        return np.tensordot(np.asarray(weights, dtype=np.float32), self._predictions, axes=1)

    def pmf(self, weights: np.ndarray) -> np.ndarray:
        """(A, n): the policy of ``weights`` (K,) at every event."""
        return self.exploration.pmf(self._scores(weights), self._allowed)

    def score(self, weights: np.ndarray) -> Score:
        return self.score_pmf(self.pmf(weights))

    def learnability(self, weights: np.ndarray) -> float:
        """How clearly the loop could learn the policy of ``weights``: the reward models' margin
        between the best action and the next one at the events where it is smallest (its 5th
        percentile over events), in standard deviations of the scalar reward Σ wₖ rₖ (its noise
        per decision). Weight vectors that give the same policy can differ a lot: with small
        margins the loop's own model, learning from noisy rewards, serves another policy than the
        one estimated."""
        weights = np.asarray(weights, dtype=float)
        noise = float(np.std(self.arrays.outcomes @ weights))
        scores = self._scores(weights)
        if self._allowed is not None:
            scores = np.where(self._allowed, scores, -np.inf)
        if scores.shape[0] < 2 or noise <= 0:
            return 0.0
        top = np.partition(scores, scores.shape[0] - 2, axis=0)[-2:]
        margin = top[1] - top[0]
        margin = margin[np.isfinite(margin)]
        return float(np.quantile(margin, LEARNABILITY_QUANTILE) / noise) if margin.size else 0.0

    def score_pmf(self, pmf: np.ndarray) -> Score:
        """The estimates of a policy given by its (A, n) probabilities at every event (0 where
        an action is not allowed), e.g. a trained model's."""
        arrays = self.arrays
        n, k = arrays.n, arrays.objectives
        rho, q_target = self._weighted(pmf)
        outcomes = self._outcomes
        rho_mean = rho.mean()
        snips = (outcomes @ rho) / n / rho_mean if rho_mean > 0 else np.full(k, np.nan)
        # Per event: DR's terms, SNIPS's influence ρ(r - V)/E[ρ] (the delta method) and the
        # logger's reward; lifts are differences of rows, so their variances come from the
        # same covariance (paired).
        reference = self._reference
        rows = np.empty(((3 if reference is None else 4) * k, n))
        np.multiply(self._residual, rho, out=rows[:k])
        rows[:k] += q_target
        np.subtract(outcomes, snips[:, None], out=rows[k:2 * k])
        rows[k:2 * k] *= rho / rho_mean
        rows[2 * k:3 * k] = outcomes
        if reference is not None:
            rows[3 * k:] = reference
        mean, covariance = _moments(rows)
        variance = np.diag(covariance)
        dr_var, influence_var, outcome_var = variance[:k], variance[k:2 * k], variance[2 * k:3 * k]
        dr_cov = np.diag(covariance[:k, 2 * k:3 * k])
        influence_cov = np.diag(covariance[k:2 * k, 2 * k:3 * k])
        versus = versus_error = None
        if reference is not None:
            versus = mean[:k] - mean[3 * k:]
            versus_error = _error(dr_var + variance[3 * k:] - 2 * np.diag(covariance[:k, 3 * k:]), n)
        ess = float(rho.sum() ** 2 / (rho @ rho)) if rho.any() else 0.0
        return Score(
            value=np.stack([mean[:k], snips]),
            standard_error=np.stack([_error(dr_var, n), _error(influence_var, n)]),
            lift=np.stack([mean[:k] - self.logged_mean, snips - self.logged_mean]),
            lift_standard_error=np.stack([
                _error(dr_var + outcome_var - 2 * dr_cov, n),
                _error(influence_var + outcome_var - 2 * influence_cov, n)]),
            effective_sample_size=ess, n=n, versus_reference=versus,
            versus_reference_standard_error=versus_error,
        )
