r"""Empirical-likelihood intervals for the IPS family, from streamed moments.

Following the construction of Karampatziakis, Langford & Mineiro (*Empirical Likelihood for
Contextual Bandits*, NeurIPS 2020), the data are pairs :math:`(w_i, r_i)` from the logging
distribution, whose weights must have mean one (:math:`E_\mu[w] = 1`), and the value is
:math:`V = E[w r]`. A candidate distribution gives each observed pair mass
:math:`q_i = (1 + \delta_i)/n` and may put the rest, :math:`\rho \ge 0`, on one pair *not* in the
sample (large weights are rare, so the sample may lack them): a corner :math:`(w_0, r_0)` of the
box :math:`[w_{\min}, w_{\max}] \times [r_{\min}, r_{\max}]`. The empirical-likelihood statistic
:math:`-2 \sum_i \log(n q_i)` is used in its Cressie-Read :math:`\lambda = -2` (Euclidean)
expansion, :math:`2 n \rho + \sum_i \delta_i^2`, keeping the first-order price :math:`2 n \rho`
of unseen mass:

.. math::

    T(v) = \min_{\text{corner},\ \rho \ge 0,\ \delta}\; 2 n \rho + \sum_i \delta_i^2
    \quad \text{s.t.} \quad
    \sum_i q_i + \rho = 1,\;\;
    \sum_i q_i w_i + \rho w_0 = 1,\;\;
    \sum_i q_i w_i r_i + \rho w_0 r_0 = v.

For fixed :math:`\rho` the minimum over :math:`\delta` is the least-norm solution of three linear
equations, :math:`n\,(c(v) - \rho e)^\top \bar G^{-1} (c(v) - \rho e)`, with :math:`\bar G` the mean
of :math:`z_i z_i^\top`, :math:`z_i = (1, w_i, w_i r_i)` (six running moments suffice),
:math:`c(v) = (0,\ 1 - \bar w,\ v - \overline{wr})` and :math:`e = (1, w_0, w_0 r_0)`; the best
:math:`\rho` then has a closed form. (With :math:`w_{\max} = \infty` the corner is the limit
:math:`\rho \to 0`, :math:`\rho w_0 = a`: any amount :math:`a` of weight at no price.) The interval
is the profile set :math:`\{v : T(v) - \min_u T(u) \le F_{1, n-1}(1 - \alpha)\}` (the F quantile is
Owen's small-sample calibration of :math:`\chi^2_1`), the hull over the corners, found by root
finding on each corner's convex :math:`T`.

Without the corner this is the Gaussian interval of the control-variate estimator
:math:`\overline{wr} - \hat\beta(\bar w - 1)`, and for large :math:`n` the price :math:`2 n\rho`
makes the corner irrelevant; in small samples or with heavy weights the interval widens to
cover what unseen large weights could do. **Pass the true bounds**: ``max_weight`` (e.g.
:math:`\max_x \max_a \pi(a|x)/\mu(a|x)`, at most :math:`1/\min \mu`) and the reward range; with
:math:`w_{\max} = \infty` unseen weight is free and the interval can be several times wider. For
clipped weights (:math:`E[w] \ne 1`) the weight constraint is dropped and the interval is for
:math:`E[\min(w, \lambda) r]`. Mass outside the logger's support breaks :math:`E_\mu[w] = 1`.
This closed form is ours (not a port of another library's estimator).
"""

from __future__ import annotations

import math

import numpy as np

from bandits.ope.intervals import Interval


def _corners(weight_range: tuple[float, float], reward_range: tuple[float, float],
             coordinates: list[int]) -> list[tuple[np.ndarray, float]]:
    """Each corner's direction and the price of unit coefficient (2 per unit of mass)."""
    corners = {}
    for weight in weight_range:
        for reward in reward_range:
            if math.isinf(weight):  # unit weight at no mass: rho -> 0 with rho * w0 fixed
                vector, price = (0.0, 1.0, reward), 0.0
            else:
                vector, price = (1.0, weight, weight * reward), 2.0
            corners[tuple(vector[k] for k in coordinates)] = price
    return [(np.array(vector), price) for vector, price in corners.items()]


def _value_range(weight_range: tuple[float, float], reward_range: tuple[float, float],
                 unit_mean: bool) -> tuple[float, float]:
    if unit_mean:
        return reward_range
    products = [w * r if not math.isinf(w) else math.copysign(math.inf, r) if r else 0.0
                for w in weight_range for r in reward_range]
    return (min(products), max(products))


class _Corner:
    r"""The statistic when the unseen mass sits at one corner: per unit :math:`n`,
    :math:`T(v)/n = \min_{\rho \ge 0} \|b + v d - \rho a\|^2 + k \rho` (whitened vectors)."""

    def __init__(self, base: np.ndarray, direction: np.ndarray, corner: np.ndarray | None,
                 price: float) -> None:
        self.base, self.direction, self.price = base, direction, price
        self.corner = corner
        self.corner_norm = float(corner @ corner) if corner is not None else 0.0

    def __call__(self, value: float) -> float:
        residual = self.base + value * self.direction
        total = float(residual @ residual)
        if self.corner is None or self.corner_norm == 0.0:
            return total
        slope = float(self.corner @ residual) - self.price / 2.0
        return total - slope * slope / self.corner_norm if slope > 0 else total

    def minimiser(self) -> float:
        d, b = self.direction, self.base
        plain = -float(d @ b) / float(d @ d)
        if self.corner is None or self.corner_norm == 0.0:
            return plain
        a = self.corner
        system = np.array([[d @ d, -(d @ a)], [-(a @ d), a @ a]])
        rhs = np.array([-(d @ b), a @ b - self.price / 2.0])
        value, mass = np.linalg.lstsq(system, rhs, rcond=None)[0]
        return float(value) if mass > 0 else plain


def empirical_likelihood_interval(n: int, mean: np.ndarray, covariance: np.ndarray, alpha: float,
                                  *, reward_range: tuple[float, float],
                                  weight_range: tuple[float, float],
                                  unit_mean: bool = True) -> Interval:
    r"""The empirical-likelihood interval of :math:`V = E[w r]` described in the module.

    Parameters
    ----------
    n : int
        Number of events.
    mean : ndarray, shape (2,)
        :math:`(\overline{w r}, \bar w)`.
    covariance : ndarray, shape (2, 2)
        Plug-in (``ddof=0``) covariance of :math:`(w r, w)`.
    alpha : float
        The interval has level :math:`1 - \alpha`.
    reward_range, weight_range : (float, float)
        A-priori bounds on rewards and weights (``weight_range[1]`` may be ``inf``).
    unit_mean : bool
        Whether :math:`E_\mu[w] = 1` is imposed (false for clipped weights).
    """
    # scipy here rather than at the top: the api's workers import this package to check job
    # specs, and scipy would add some 60 MB to each of them.
    from scipy.linalg import solve_triangular
    from scipy.optimize import brentq
    from scipy.stats import f as f_distribution

    level = 1.0 - alpha
    if n < 2:
        return Interval("empirical_likelihood", math.nan, math.nan, level)
    mean_wr, mean_w = float(mean[0]), float(mean[1])
    if reward_range[1] == reward_range[0] and unit_mean:
        return Interval("empirical_likelihood", reward_range[0], reward_range[0], level)
    gram = np.empty((3, 3))
    gram[0] = (1.0, mean_w, mean_wr)
    gram[1:, 0] = (mean_w, mean_wr)
    gram[1:, 1:] = covariance[::-1, ::-1] + np.outer([mean_w, mean_wr], [mean_w, mean_wr])
    coordinates = [0, 1, 2] if unit_mean else [0, 2]
    gram = gram[np.ix_(coordinates, coordinates)]
    diagonal = np.diag(gram)
    # A relative ridge keeps G invertible when a coordinate is degenerate (e.g. all w = 1); the
    # degenerate direction then costs ~1e10 and acts as a hard constraint.
    gram = gram + np.diag(1e-10 * np.maximum(diagonal, 1e-12 * diagonal.max()))
    lower = np.linalg.cholesky(gram)
    base = solve_triangular(lower, np.array([0.0, 1.0 - mean_w, -mean_wr])[coordinates],
                            lower=True)
    direction = solve_triangular(lower, np.array([0.0, 0.0, 1.0])[coordinates], lower=True)
    corners = [_Corner(base, direction, None, 0.0)] + [
        _Corner(base, direction, solve_triangular(lower, vector, lower=True), price)
        for vector, price in _corners(weight_range, reward_range, coordinates)]
    low, high = _value_range(weight_range, reward_range, unit_mean)
    centres = [min(max(corner.minimiser(), low), high) for corner in corners]
    threshold = (min(corner(centre) for corner, centre in zip(corners, centres))
                 + float(f_distribution.isf(alpha, 1, n - 1)) / n)
    scale = math.sqrt(max(covariance[0, 0], 1e-300) / n) + 1e-12

    def root(corner: _Corner, centre: float, sign: float, limit: float) -> float:
        def excess(value: float) -> float:
            return corner(value) - threshold
        if math.isfinite(limit):
            if excess(limit) <= 0:
                return limit
            outside = limit
        else:
            step = 8.0 * scale
            while excess(outside := centre + sign * step) <= 0:
                step *= 4.0
        return brentq(excess, *sorted((centre, outside)), xtol=1e-13 * (1.0 + abs(centre)))

    bounds = [(root(corner, centre, -1.0, low), root(corner, centre, 1.0, high))
              for corner, centre in zip(corners, centres) if corner(centre) <= threshold]
    return Interval("empirical_likelihood", min(bound[0] for bound in bounds),
                    max(bound[1] for bound in bounds), level)
