r"""Single-slot estimators of a target policy's value :math:`V(\pi) = E_x E_{a\sim\pi}[r]`.

Notation (per logged event :math:`i = 1..n`, see :class:`~bandits.ope.batches.BanditBatch`):
:math:`w_i = \pi(a_i \mid x_i) / \mu(a_i \mid x_i)`, :math:`\hat q_i = \hat q(x_i, a_i)`,
:math:`\hat q^\pi_i = \sum_a \pi(a \mid x_i)\, \hat q(x_i, a)`, :math:`E_n` the mean over events.

Assumptions shared by all: events are independent draws from the logging distribution; the
logged propensities are the probabilities the logger really used; the target is absolutely
continuous with respect to the logger (:math:`\pi(a\mid x) > 0 \Rightarrow \mu(a\mid x) > 0`;
where it is not, IPS-type estimates miss the unsupported mass: see the diagnostics). The reward
model must not have been fitted on the events it corrects (use
:mod:`~bandits.ope.crossfit`).

>>> import numpy as np
>>> from bandits.ope.batches import BanditBatch
>>> batch = BanditBatch.from_arrays(reward=[1.0, 0.0, 1.0, 0.0], propensity=[0.5, 0.5, 0.25, 0.75],
...                                 target_probability=[1.0, 0.0, 0.5, 0.75])
>>> IPS().estimate(batch), SNIPS().estimate(batch)
(1.0, 0.8)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bandits.ope.base import Estimator, SelfNormalised, safe_ratio
from bandits.ope.batches import BanditBatch
from bandits.ope.validation import check_positive


def _residual(batch: BanditBatch, name: str) -> np.ndarray:
    batch.require(name, "q_logged", "q_target")
    return batch.reward - batch.q_logged


class IPS(Estimator):
    r"""Inverse propensity scoring: :math:`\hat V = E_n[w_i r_i]`.

    Unbiased under absolute continuity; variance grows with :math:`E[w^2]`. Terms
    :math:`(w_i r_i, w_i)`: the second is unused by the value but gives the
    empirical-likelihood interval its control variate (:math:`E_\mu[w] = 1`).
    """

    name = "ips"
    n_terms = 2
    supports_empirical_likelihood = True

    def terms(self, batch: BanditBatch) -> np.ndarray:
        return np.column_stack((batch.weight * batch.reward, batch.weight))


class ClippedIPS(IPS):
    r"""IPS with weights clipped at :math:`\lambda`: :math:`\hat V = E_n[\min(w_i, \lambda) r_i]`.

    Biased (downwards for non-negative rewards) wherever :math:`w > \lambda`, in exchange for
    variance bounded by :math:`\lambda^2`. The empirical-likelihood interval covers the clipped
    quantity :math:`E_\mu[\min(w, \lambda) r]`, not :math:`V(\pi)`.

    Parameters
    ----------
    clip : float
        :math:`\lambda > 0`.
    """

    name = "ips-clipped"
    unit_mean_weights = False

    def __init__(self, clip: float) -> None:
        self.clip = check_positive("clip", clip)

    def params(self) -> dict[str, Any]:
        return {"clip": self.clip}

    def weights(self, batch: BanditBatch) -> np.ndarray:
        return np.minimum(batch.weight, self.clip)

    def weight_key(self) -> tuple:
        return ("clip", self.clip)

    def weight_bounds(self, slots: int) -> tuple[float, float]:
        return (0.0, self.clip)

    def terms(self, batch: BanditBatch) -> np.ndarray:
        weight = self.weights(batch)
        return np.column_stack((weight * batch.reward, weight))


class SNIPS(SelfNormalised):
    r"""Self-normalised IPS: :math:`\hat V = E_n[w_i r_i] / E_n[w_i]`.

    Consistent, biased of order :math:`1/n`, usually lower variance than IPS; always within the
    observed reward range. NaN when every weight is 0. Delta-method variance:
    :math:`E_n[w_i^2 (r_i - \hat V)^2] / (n\, E_n[w_i]^2)`.
    """

    name = "snips"
    supports_empirical_likelihood = True

    def terms(self, batch: BanditBatch) -> np.ndarray:
        return np.column_stack((batch.weight * batch.reward, batch.weight))


class DM(Estimator):
    r"""Direct method: :math:`\hat V = E_n[\hat q^\pi_i]`.

    Low variance; biased by the reward model's error under the target policy. Its interval
    ignores the model's own uncertainty (it treats :math:`\hat q` as fixed).
    """

    name = "dm"

    def terms(self, batch: BanditBatch) -> np.ndarray:
        batch.require(self.name, "q_target")
        return batch.q_target[:, None]


class DR(Estimator):
    r"""Doubly robust: :math:`\hat V = E_n[\hat q^\pi_i + w_i (r_i - \hat q_i)]`.

    Unbiased if the propensities are right, whatever the model (which only has to be fitted on
    other events); consistent if the model is right even when the weights are not.
    """

    name = "dr"

    def terms(self, batch: BanditBatch) -> np.ndarray:
        residual = _residual(batch, self.name)
        return (batch.q_target + batch.weight * residual)[:, None]


class SNDR(Estimator):
    r"""Self-normalised DR:
    :math:`\hat V = E_n[\hat q^\pi_i] + E_n[w_i (r_i - \hat q_i)] / E_n[w_i]`.

    Terms :math:`(\hat q^\pi_i,\ w_i (r_i - \hat q_i),\ w_i)`; the correction is re-normalised by
    the mean weight, which bounds its size as SNIPS does.
    """

    name = "sndr"
    n_terms = 3

    def terms(self, batch: BanditBatch) -> np.ndarray:
        residual = _residual(batch, self.name)
        return np.column_stack((batch.q_target, batch.weight * residual, batch.weight))

    def combine(self, means: np.ndarray) -> np.ndarray:
        means = np.asarray(means)
        return means[..., 0] + safe_ratio(means[..., 1], means[..., 2])

    def gradient(self, means: np.ndarray) -> np.ndarray:
        correction, weight = float(means[1]), float(means[2])
        if weight == 0.0:
            return np.full(3, np.nan)
        return np.array([1.0, 1.0 / weight, -correction / weight / weight])


class SwitchDR(Estimator):
    r"""Switch-DR (Wang, Agarwal & Dudík 2017):
    :math:`\hat V = E_n[\hat q^\pi_i + w_i\, 1\{w_i \le \tau\}\, (r_i - \hat q_i)]`.

    In expectation this uses the DR correction on actions whose weight is at most :math:`\tau`
    and the model alone on the others, so it is biased by the model's error there. ``threshold =
    inf`` gives DR.

    Parameters
    ----------
    threshold : float
        :math:`\tau > 0` (may be ``inf``).
    """

    name = "switch-dr"

    def __init__(self, threshold: float) -> None:
        self.threshold = check_positive("threshold", threshold, allow_inf=True)

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def weights(self, batch: BanditBatch) -> np.ndarray:
        return np.where(batch.weight <= self.threshold, batch.weight, 0.0)

    def weight_key(self) -> tuple:
        return ("switch", self.threshold)

    def terms(self, batch: BanditBatch) -> np.ndarray:
        residual = _residual(batch, self.name)
        return (batch.q_target + self.weights(batch) * residual)[:, None]


class DRos(Estimator):
    r"""DR with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy & Dudík 2020):
    :math:`\hat V = E_n[\hat q^\pi_i + \tilde w_i (r_i - \hat q_i)]`,
    :math:`\tilde w_i = \lambda w_i / (w_i^2 + \lambda)`.

    :math:`\lambda = 0` gives DM, :math:`\lambda = \infty` gives DR; in between, large weights are
    shrunk towards 0, trading bias (through the model's error) for variance.

    Parameters
    ----------
    shrinkage : float
        :math:`\lambda \ge 0` (may be ``inf``).
    """

    name = "dr-os"

    def __init__(self, shrinkage: float) -> None:
        self.shrinkage = check_positive("shrinkage", shrinkage, allow_zero=True, allow_inf=True)

    def params(self) -> dict[str, Any]:
        return {"shrinkage": self.shrinkage}

    def weights(self, batch: BanditBatch) -> np.ndarray:
        weight = batch.weight
        if np.isinf(self.shrinkage):
            return weight
        if self.shrinkage == 0.0:
            return np.zeros_like(weight)
        return self.shrinkage * weight / (weight * weight + self.shrinkage)

    def weight_key(self) -> tuple:
        return ("shrink", self.shrinkage)

    def terms(self, batch: BanditBatch) -> np.ndarray:
        residual = _residual(batch, self.name)
        return (batch.q_target + self.weights(batch) * residual)[:, None]


SINGLE_SLOT = (IPS, ClippedIPS, SNIPS, DM, DR, SNDR, SwitchDR, DRos)
