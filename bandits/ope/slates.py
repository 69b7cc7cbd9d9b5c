r"""Slate estimators: a slate of :math:`L` slots, one logged action per slot.

Per event :math:`i` and slot :math:`k` (see :class:`~bandits.ope.batches.SlateBatch`): the logged
action :math:`s_{ik}`, its logging probability :math:`\mu_{ik}`, the target's probability
:math:`\pi_{ik}` and the ratio :math:`w_{ik} = \pi_{ik} / \mu_{ik}`; the slate reward
:math:`r_i` and, for IIPS and RIPS, per-slot rewards :math:`r_{ik}`.

Each estimator buys lower variance than the joint-slate weight
:math:`\prod_k w_{ik}` (whose variance grows exponentially with :math:`L`) with an assumption
about how rewards depend on the slate. They differ in which probability they read:

=========  ==========================================  =========================================
estimator  :math:`\mu_{ik}`, :math:`\pi_{ik}` are        reward assumption
=========  ==========================================  =========================================
PI, SNPI   marginals of slot :math:`k`; the logger       linearity: :math:`E[r \mid x, s] =
           must draw slots independently (a product)     \sum_k \phi_x(k, s_k)` (slate reward)
IIPS       marginals: P(action at slot :math:`k`)        item-position: :math:`E[r_k \mid x, s]`
                                                         depends only on :math:`(x, k, s_k)`
RIPS       conditional on the logged earlier slots       cascade: :math:`E[r_k \mid x, s]`
                                                         depends only on :math:`(x, s_1..s_k)`
=========  ==========================================  =========================================

For product policies (each slot drawn on its own, as ``slates`` loops do) marginal and
conditional probabilities coincide. Support must hold per slot (:math:`\pi_{ik} > 0
\Rightarrow \mu_{ik} > 0`).

>>> from bandits.ope.batches import SlateBatch
>>> batch = SlateBatch.from_arrays(reward=[1.0, 0.0], propensity=[[0.5, 0.5], [0.5, 0.25]],
...                                target_probability=[[1.0, 0.5], [0.5, 0.5]])
>>> PI().estimate(batch)  # weights 2 + 1 - 1 = 2 and 1 + 2 - 1 = 2
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bandits.ope.base import Estimator, SelfNormalised
from bandits.ope.batches import SlateBatch
from bandits.ope.errors import InvalidParameterError


def pseudo_inverse_weight(batch: SlateBatch) -> np.ndarray:
    r"""Per-slate PI weight :math:`w_i = \sum_k w_{ik} - (L - 1)` (may be negative)."""
    return batch.weight.sum(axis=1) - (batch.slots - 1)


class PI(Estimator):
    r"""Pseudo-inverse estimator (Swaminathan et al. 2017): :math:`\hat V = E_n[w_i r_i]` with
    :math:`w_i = \sum_{k=1}^L \pi_{ik}/\mu_{ik} - (L - 1)`.

    This is the pseudo-inverse :math:`q_\pi^\top \Gamma_\mu^\dagger 1_s` for a logger that draws
    slots independently. Unbiased when the expected slate reward is additive over (slot, action)
    pairs and each slot's target is supported by the logger; only the slate reward is used.
    With duplicate actions removed across slots the logger is no longer an independent product
    and the formula is an approximation. Weights lie in :math:`[1 - L, \infty)` and
    :math:`E_\mu[w] = 1`, so the empirical-likelihood interval applies.
    """

    name = "pi"
    kind = "slate"
    n_terms = 2
    supports_empirical_likelihood = True

    def weights(self, batch: SlateBatch) -> np.ndarray:
        return pseudo_inverse_weight(batch)

    def weight_key(self) -> tuple:
        return ("pi",)

    def weight_bounds(self, slots: int) -> tuple[float, float]:
        return (1.0 - slots, np.inf)

    def terms(self, batch: SlateBatch) -> np.ndarray:
        weight = pseudo_inverse_weight(batch)
        return np.column_stack((weight * batch.reward, weight))


class SNPI(SelfNormalised, PI):
    r"""Self-normalised pseudo-inverse (wPI): :math:`\hat V = E_n[w_i r_i] / E_n[w_i]` with the PI
    weights. Consistent under the PI assumptions, biased of order :math:`1/n`, lower variance."""

    name = "snpi"


class _PerPosition(Estimator):
    """IIPS and RIPS: the value is the expected sum of the first ``top_k`` slot rewards."""

    def __init__(self, top_k: int | None = None) -> None:
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or top_k < 1):
            raise InvalidParameterError(f"top_k must be a positive integer or None, got {top_k!r}")
        self.top_k = top_k

    def params(self) -> dict[str, Any]:
        return {} if self.top_k is None else {"top_k": self.top_k}

    def _positions(self, batch: SlateBatch) -> int:
        batch.require(self.name, "slot_reward")
        return batch.slots if self.top_k is None else min(self.top_k, batch.slots)

    def weight_key(self) -> tuple:
        return (self.name, self.top_k)

    def observed(self, batch: SlateBatch) -> np.ndarray:
        return batch.slot_reward[:, : self._positions(batch)].sum(axis=1)

    def observed_key(self) -> tuple:
        return ("slot_reward", self.top_k)

    def terms(self, batch: SlateBatch) -> np.ndarray:
        positions = self._positions(batch)
        weighted = self.weights(batch) * batch.slot_reward[:, :positions]
        return weighted.sum(axis=1)[:, None]


class IIPS(_PerPosition):
    r"""Independent (item-position) IPS: :math:`\hat V = E_n[\sum_{k \le K} w_{ik} r_{ik}]`.

    Estimates the expected sum of the first :math:`K` (``top_k``, default all) slot rewards.
    Unbiased when the reward at slot :math:`k` depends only on the action shown there (Li et
    al. 2018), with :math:`\mu_{ik}, \pi_{ik}` the marginal probabilities of that action at
    slot :math:`k`. Diagnostics are per position.
    """

    name = "iips"
    kind = "slate"

    def weights(self, batch: SlateBatch) -> np.ndarray:
        return batch.weight[:, : self._positions(batch)]


class RIPS(_PerPosition):
    r"""Reward-interaction (cascade) IPS with prefix weights:
    :math:`\hat V = E_n[\sum_{k \le K} W_{ik} r_{ik}]`, :math:`W_{ik} = \prod_{j \le k} w_{ij}`.

    :math:`W_{ik}` is the ratio of the prefix probabilities :math:`\pi(s_{1..k}|x) /
    \mu(s_{1..k}|x)`, so :math:`\mu_{ij}, \pi_{ij}` must be conditional on the logged earlier
    slots (what ``ccb`` loops log). Unbiased under the cascade assumption: the reward at slot
    :math:`k` depends only on the actions in slots :math:`1..k` (McInerney et al. 2020, in the
    prefix-weight form OBP calls RIPS). ``top_k`` limits the sum to the first :math:`K` slots,
    which caps the weights' variance. Diagnostics are per position (prefix weights).
    """

    name = "rips"
    kind = "slate"

    def weights(self, batch: SlateBatch) -> np.ndarray:
        return np.cumprod(batch.weight[:, : self._positions(batch)], axis=1)


SLATE = (PI, SNPI, IIPS, RIPS)
