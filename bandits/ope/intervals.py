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

Skew-corrected interval (Hall 1992, "On the removal of skewness by transformation"): on skewed
terms (rare large rewards, large weights) the studentised estimate is skewed the other way, and
the Gaussian interval misses on the side of the long tail more often than on the other. With
:math:`\psi_i = \nabla g^\top (t_i - \bar t)` the linearised terms, :math:`s` their standard
deviation and :math:`\hat\gamma = E_n[\psi^3] / s^3` their skewness, Hall's monotone transform
of :math:`T = \sqrt n (\hat V - V) / s`,

.. math::

    T_H = T + \frac{\hat\gamma T^2}{3\sqrt n} + \frac{\hat\gamma^2 T^3}{27 n}
          + \frac{\hat\gamma}{6 \sqrt n},

is normal to order :math:`1/n` instead of :math:`1/\sqrt n`. Inverting it at
:math:`\pm z_{1-\alpha/2}` gives the interval

.. math::

    \big[\hat V - s\,W(z_{1-\alpha/2}),\ \hat V - s\,W(-z_{1-\alpha/2})\big], \qquad
    W(u) = \frac{3}{\hat\gamma}\Big[\Big(1 + \hat\gamma\big(\tfrac{u}{\sqrt n}
           - \tfrac{\hat\gamma}{6n}\big)\Big)^{1/3} - 1\Big],

longer on the side of the tail; with :math:`\hat\gamma = 0` it is the Gaussian interval.

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


def skewness(gradient: np.ndarray, second: np.ndarray, third: np.ndarray, n: int) -> float:
    r"""Skewness :math:`E_n[\psi^3] / s^3` of the linearised terms
    :math:`\psi_i = \nabla g^\top (t_i - \bar t)`, from the centred co-moment sums of the
    terms (``second``: :math:`\sum_i c_i c_i^\top`, ``third``: :math:`\sum_i c_i^{\otimes 3}`);
    ``s`` uses the ``n - 1`` correction, as the standard error does. NaN when undefined
    (fewer than 3 events, constant terms, a non-finite gradient); 0 when the spread underflows.
    """
    if n < 3 or not np.all(np.isfinite(gradient)):
        return math.nan
    variance = float(gradient @ second @ gradient) / (n - 1)
    if not variance > 0.0:
        return math.nan
    cubed = float(np.einsum("ijk,i,j,k->", third, gradient, gradient, gradient)) / n
    scale = variance**1.5
    if scale == 0.0:  # a spread at rounding level (underflow): nothing to correct
        return 0.0
    # |sample skewness| <= (n - 2) / sqrt(n - 1); rounding noise on a near-zero spread may not be.
    bound = (n - 2) / math.sqrt(n - 1)
    return min(max(cubed / scale, -bound), bound)


def skew_corrected_interval(value: float, standard_error: float, skew: float, n: int,
                            alpha: float) -> Interval:
    """Hall's (1992) skew-corrected interval around ``value`` (see the module's docstring).

    ``standard_error`` is ``s / sqrt(n)`` and ``skew`` the terms' skewness (:func:`skewness`).
    A zero standard error gives the point; NaN bounds when anything is undefined.
    """
    level = 1.0 - alpha
    if not (math.isfinite(value) and math.isfinite(standard_error)):
        return Interval("skew_corrected", math.nan, math.nan, level)
    if standard_error == 0.0:
        return Interval("skew_corrected", value, value, level)
    if not math.isfinite(skew):
        return Interval("skew_corrected", math.nan, math.nan, level)
    z = -NormalDist().inv_cdf(alpha / 2.0)
    root_n = math.sqrt(n)
    s = standard_error * root_n

    def inverse(u: float) -> float:  # W(u): the (V̂ - V) / s at which T_H = u
        if abs(skew) < 1e-12:
            return u / root_n
        return 3.0 / skew * (float(np.cbrt(1.0 + skew * (u / root_n - skew / (6.0 * n)))) - 1.0)

    return Interval("skew_corrected", value - s * inverse(z), value - s * inverse(-z), level)


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
