r"""Confidence intervals from streamed moments: Gaussian (delta method) and bootstrap percentiles.

Gaussian (CLT) interval of :math:`\hat V = g(\bar t)`:

.. math::

    \hat V \pm z_{1-\alpha/2}\, \widehat{\mathrm{se}}, \qquad
    \widehat{\mathrm{se}}^2 = \nabla g(\bar t)^\top \hat\Sigma\, \nabla g(\bar t) / n,

with :math:`\hat\Sigma` the sample covariance of the per-event terms. For linear estimators this
is the usual :math:`s / \sqrt n`; for self-normalised ones it is the delta-method variance (for
SNIPS, :math:`E_n[w_i^2 (r_i - \hat V)^2] / (n E_n[w_i]^2)` up to the ``n - 1`` correction).
For a difference of two estimates on the same events (a paired difference) :math:`g` is
:math:`g_1 - g_2` over the stacked terms, so the covariance between them is used.

Empirical likelihood is in :mod:`~bandits.ope.empirical_likelihood`, the resampling in
:mod:`~bandits.ope.bootstrap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A two-sided interval at confidence ``level`` (= 1 - alpha), and how it was made."""

    method: str
    lower: float
    upper: float
    level: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"method": self.method, "lower": self.lower, "upper": self.upper,
                "level": self.level}

    def __contains__(self, value: float) -> bool:
        return self.lower <= value <= self.upper


def delta_method_standard_error(gradient: np.ndarray, covariance: np.ndarray, n: int) -> float:
    r"""Standard error :math:`\sqrt{\nabla g^\top \hat\Sigma \nabla g / n}` (NaN if undefined)."""
    if n < 2 or not np.all(np.isfinite(gradient)):
        return math.nan
    variance = float(gradient @ covariance @ gradient) / n
    return math.sqrt(max(variance, 0.0))


def gaussian_interval(value: float, standard_error: float, alpha: float) -> Interval:
    """``value ± z(1 - alpha/2) · standard_error``; NaN bounds when either is undefined."""
    if not (math.isfinite(value) and math.isfinite(standard_error)):
        return Interval("gaussian", math.nan, math.nan, 1.0 - alpha)
    # The standard library's normal quantile: no scipy in processes that only build estimators.
    half_width = -NormalDist().inv_cdf(alpha / 2.0) * standard_error
    return Interval("gaussian", value - half_width, value + half_width, 1.0 - alpha)


def percentile_interval(samples: np.ndarray, alpha: float) -> Interval:
    """The alpha/2 and 1 - alpha/2 quantiles of resampled values, ignoring undefined ones.

    NaN bounds when more than ``alpha`` of the resamples are undefined (e.g. a self-normalised
    estimate whose resample has no positive weight), since the tails would then be unreliable.
    """
    finite = samples[np.isfinite(samples)]
    if finite.size == 0 or finite.size < (1.0 - alpha) * samples.size:
        return Interval("bootstrap", math.nan, math.nan, 1.0 - alpha)
    lower, upper = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval("bootstrap", float(lower), float(upper), 1.0 - alpha)
