r"""Validated chunks of logged events, the input every estimator reads.

A *batch* is one chunk of events with everything the estimators need, already checked and
converted to float64. Build it with ``from_arrays`` (which raises the errors of
:mod:`bandits.ope.errors`); the estimators and :class:`~bandits.ope.evaluation.Evaluation` never
see unchecked input.

* :class:`BanditBatch`: single-slot events. Per event :math:`i`: the reward :math:`r_i`, the
  logging propensity :math:`\mu_i = \mu(a_i \mid x_i)` of the logged action, the target policy's
  probability :math:`\pi_i = \pi(a_i \mid x_i)` of that action and, for DM and the DR family, the
  reward model's prediction for the logged action :math:`\hat q_i = \hat q(x_i, a_i)` and the
  target's expectation :math:`\hat q_i^\pi = \sum_a \pi(a \mid x_i)\, \hat q(x_i, a)`.
* :class:`SlateBatch`: slates of :math:`L` slots, with per-slot propensities and target
  probabilities of the logged slot actions, and the slate reward and/or per-slot rewards.

Both carry an optional ``unsupported_mass``: per event, the target's total probability on actions
(or slates) to which the logger gave probability 0. No importance-weighted estimator can see that
part of the target, so it is reported by the diagnostics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from bandits.ope.errors import InvalidParameterError, MissingInputError
from bandits.ope.validation import (
    as_array,
    check_finite,
    check_lengths,
    check_probability,
    check_propensity,
    check_slots,
)


def _optional(name: str, values: ArrayLike | None, ndim: int = 1) -> np.ndarray | None:
    return None if values is None else check_finite(name, as_array(name, values, ndim))


class _Batch:
    """What both batch types share: their length and a check for optional arrays."""

    reward: np.ndarray

    def __len__(self) -> int:
        return self.reward.shape[0]

    def require(self, estimator: str, *names: str) -> None:
        """Raise :class:`MissingInputError` naming the arrays ``estimator`` needs but lacks."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise MissingInputError(f"estimator {estimator!r} needs {' and '.join(missing)}")


@dataclass(frozen=True, eq=False)
class BanditBatch(_Batch):
    r"""Single-slot events, shapes ``(n,)``; ``weight`` is :math:`w_i = \pi_i / \mu_i`."""

    reward: np.ndarray
    propensity: np.ndarray
    target_probability: np.ndarray
    weight: np.ndarray
    q_logged: np.ndarray | None = None
    q_target: np.ndarray | None = None
    unsupported_mass: np.ndarray | None = None

    LOGGED = ("reward", "propensity", "q_logged")
    CANDIDATE = ("target_probability", "q_target", "unsupported_mass", "q_logged")

    @classmethod
    def from_arrays(cls, *, reward: ArrayLike, propensity: ArrayLike,
                    target_probability: ArrayLike, q_logged: ArrayLike | None = None,
                    q_target: ArrayLike | None = None,
                    unsupported_mass: ArrayLike | None = None) -> BanditBatch:
        """Check and convert one chunk.

        Parameters
        ----------
        reward : array_like, shape (n,)
            Observed reward of each event; finite.
        propensity : array_like, shape (n,)
            Logging probability of the logged action, in (0, 1].
        target_probability : array_like, shape (n,)
            Target policy's probability of the logged action, in [0, 1].
        q_logged, q_target : array_like, shape (n,), optional
            Reward-model prediction for the logged action, and the target's expectation of the
            predictions over all actions; needed by DM and the DR family.
        unsupported_mass : array_like, shape (n,), optional
            Target's mass on actions the logger gave probability 0, in [0, 1].
        """
        arrays = {
            "reward": check_finite("reward", as_array("reward", reward)),
            "propensity": check_propensity("propensity", as_array("propensity", propensity)),
            "target_probability": check_probability(
                "target_probability", as_array("target_probability", target_probability)),
            "q_logged": _optional("q_logged", q_logged),
            "q_target": _optional("q_target", q_target),
            "unsupported_mass": None if unsupported_mass is None else check_probability(
                "unsupported_mass", as_array("unsupported_mass", unsupported_mass)),
        }
        check_lengths(arrays)
        weight = arrays["target_probability"] / arrays["propensity"]
        return cls(weight=weight, **arrays)


@dataclass(frozen=True, eq=False)
class SlateBatch(_Batch):
    r"""Slates of :math:`L` slots: per-slot arrays have shape ``(n, L)``, ``reward`` ``(n,)``.

    ``weight[i, k]`` is :math:`\pi_{ik} / \mu_{ik}`, the per-slot ratio of the logged action at
    slot :math:`k`. Which probability each estimator reads there (marginal or conditional on the
    earlier slots) is stated in its docstring; for product policies (each slot drawn on its own,
    as in ``slates`` loops) they are the same.
    """

    reward: np.ndarray
    propensity: np.ndarray
    target_probability: np.ndarray
    weight: np.ndarray
    slot_reward: np.ndarray | None = None
    unsupported_mass: np.ndarray | None = None

    LOGGED = ("reward", "propensity", "slot_reward")
    CANDIDATE = ("target_probability", "unsupported_mass")

    @classmethod
    def from_arrays(cls, *, propensity: ArrayLike, target_probability: ArrayLike,
                    reward: ArrayLike | None = None, slot_reward: ArrayLike | None = None,
                    unsupported_mass: ArrayLike | None = None) -> SlateBatch:
        """Check and convert one chunk.

        Parameters
        ----------
        propensity : array_like, shape (n, L)
            Logging probability of the logged action at each slot, in (0, 1].
        target_probability : array_like, shape (n, L)
            Target's probability of the logged action at each slot, in [0, 1].
        reward : array_like, shape (n,), optional
            Slate reward. When omitted it is the sum of ``slot_reward`` over the slots.
        slot_reward : array_like, shape (n, L), optional
            Per-slot rewards (needed by IIPS and RIPS).
        unsupported_mass : array_like, shape (n,), optional
            Target's mass on slates the logger could not show, in [0, 1].
        """
        slot_rewards = _optional("slot_reward", slot_reward, ndim=2)
        if reward is None and slot_rewards is None:
            raise MissingInputError("slates need reward (per slate) or slot_reward (per slot)")
        rewards = (slot_rewards.sum(axis=1) if reward is None
                   else check_finite("reward", as_array("reward", reward)))
        arrays = {
            "reward": rewards,
            "propensity": check_propensity("propensity", as_array("propensity", propensity, 2)),
            "target_probability": check_probability(
                "target_probability", as_array("target_probability", target_probability, 2)),
            "slot_reward": slot_rewards,
            "unsupported_mass": None if unsupported_mass is None else check_probability(
                "unsupported_mass", as_array("unsupported_mass", unsupported_mass)),
        }
        check_lengths(arrays)
        check_slots({name: arrays[name]
                     for name in ("propensity", "target_probability", "slot_reward")})
        weight = arrays["target_probability"] / arrays["propensity"]
        return cls(weight=weight, **arrays)

    @property
    def slots(self) -> int:
        return self.propensity.shape[1]


def split_chunk(batch_type: type, names: list[str],
                candidates: Mapping[str, Mapping[str, ArrayLike]] | None,
                logged: dict[str, ArrayLike]) -> Mapping[str, Mapping[str, ArrayLike]]:
    """Each candidate's arrays of a chunk for candidates ``names``, checked against
    ``batch_type``'s array names. With one candidate its arrays may come with the logged ones
    (they are then moved out of ``logged``)."""
    if candidates is None:
        if len(names) != 1:
            raise MissingInputError(
                f"give each candidate's arrays in candidates={{name: {{...}}}} for {names}")
        own = {key: logged.pop(key) for key in list(logged) if key in batch_type.CANDIDATE
               and key not in batch_type.LOGGED}
        candidates = {names[0]: own}
    unknown = sorted(set(logged) - set(batch_type.LOGGED))
    if unknown:
        raise InvalidParameterError(
            f"unknown logged array(s) {unknown}; expected some of {list(batch_type.LOGGED)}")
    missing = [name for name in names if name not in candidates]
    extra = sorted(set(candidates) - set(names))
    if missing or extra:
        raise InvalidParameterError(
            f"candidates in the chunk must be {names}: missing {missing}, unexpected {extra}")
    for name, arrays in candidates.items():
        unknown = sorted(set(arrays) - set(batch_type.CANDIDATE))
        if unknown:
            raise InvalidParameterError(
                f"unknown array(s) {unknown} for candidate {name!r}; expected some of "
                f"{list(batch_type.CANDIDATE)}")
    return candidates
