r"""What every estimator is: per-event terms and a smooth function of their means.

An estimator maps a chunk of events (a :mod:`~bandits.ope.batches` batch) to a matrix of
per-event terms :math:`t_i \in \mathbb{R}^k` and its value is :math:`\hat V = g(\bar t)`, a smooth
function of their means. That one shape gives everything else:

* streaming: only :math:`n`, :math:`\bar t` and the co-moments are kept
  (:class:`~bandits.ope.moments.Moments`);
* Gaussian intervals by the delta method,
  :math:`\widehat{\mathrm{Var}}(\hat V) = \nabla g(\bar t)^\top \hat\Sigma\, \nabla g(\bar t) / n`;
* the bootstrap: :math:`g` of each resample's weighted means, so self-normalised estimators are
  re-normalised inside every resample;
* paired differences: the terms of two estimates on the same events are stacked and the
  gradient of :math:`g_1 - g_2` is used.

Linear estimators (IPS, DM, DR, ...) have :math:`g(\bar t) = \bar t_0`; self-normalised ones
are ratios. Subclasses set the class attributes and implement :meth:`Estimator.terms`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` elementwise, NaN where the denominator is 0 (no warnings)."""
    numerator, denominator = np.asarray(numerator), np.asarray(denominator)
    nonzero = denominator != 0
    return np.where(nonzero, numerator / np.where(nonzero, denominator, 1.0), np.nan)


class Estimator:
    """Base class. ``name`` is the registry name; ``kind`` the batch type it reads."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "bandit"
    n_terms: ClassVar[int] = 1
    #: Whether terms 0 and 1 are :math:`w_i r_i` and :math:`w_i` (empirical-likelihood interval).
    supports_empirical_likelihood: ClassVar[bool] = False
    #: Whether :math:`E_\mu[w] = 1` holds for the weights in the terms (False once clipped).
    unit_mean_weights: ClassVar[bool] = True

    def params(self) -> dict[str, Any]:
        """Hyperparameters, as they would be given to the registry (JSON-friendly)."""
        return {}

    @property
    def label(self) -> str:
        """The name, with hyperparameters: ``"switch-dr(threshold=20.0)"``."""
        params = self.params()
        if not params:
            return self.name
        return f"{self.name}({', '.join(f'{key}={value}' for key, value in params.items())})"

    def __repr__(self) -> str:
        return f"<estimator {self.label}>"

    def terms(self, batch: Any) -> np.ndarray:
        """Per-event terms, shape ``(n, n_terms)``."""
        raise NotImplementedError

    def combine(self, means: np.ndarray) -> np.ndarray:
        """The value from the terms' means; ``means`` has shape ``(..., n_terms)``."""
        return np.asarray(means)[..., 0]

    def gradient(self, means: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`combine` at ``means`` (shape ``(n_terms,)``), for the delta method."""
        gradient = np.zeros(self.n_terms)
        gradient[0] = 1.0
        return gradient

    def weights(self, batch: Any) -> np.ndarray:
        """The importance weights the estimator applies, for the diagnostics: ``(n,)`` or
        ``(n, positions)``."""
        return batch.weight

    def weight_key(self) -> tuple:
        """Estimators with equal keys apply the same weights and share their diagnostics."""
        return ("raw",)

    def weight_bounds(self, slots: int) -> tuple[float, float]:
        """Smallest and largest weight possible a priori (for the empirical-likelihood interval)."""
        return (0.0, np.inf)

    def observed(self, batch: Any) -> np.ndarray:
        """Per-event value the logging policy actually obtained (the baseline of the lift)."""
        return batch.reward

    def observed_key(self) -> tuple:
        """Estimators with equal keys compare against the same observed column."""
        return ("reward",)

    def estimate(self, batch: Any) -> float:
        """The point estimate on one batch (no streaming, no interval)."""
        return float(self.combine(self.terms(batch).mean(axis=0)))


class SelfNormalised(Estimator):
    r"""A ratio :math:`g(\bar t) = \bar t_0 / \bar t_1`."""

    n_terms = 2

    def combine(self, means: np.ndarray) -> np.ndarray:
        means = np.asarray(means)
        return safe_ratio(means[..., 0], means[..., 1])

    def gradient(self, means: np.ndarray) -> np.ndarray:
        numerator, denominator = float(means[0]), float(means[1])
        if denominator == 0.0:
            return np.full(2, np.nan)
        # d / d, not d**2: the square of a tiny denominator underflows to 0
        return np.array([1.0 / denominator, -numerator / denominator / denominator])
