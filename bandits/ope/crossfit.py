r"""Cross-fitted reward models for DM and the DR family: per-action ridge regression, numpy only.

The model is :math:`\hat q(x, a) = \beta_{a0} + x^\top \beta_a`, one ridge regression per action
on the events that logged it,

.. math::

    \beta_a = (X_a^\top X_a + \lambda P)^{-1} X_a^\top r_a, \qquad P = \mathrm{diag}(0, 1, .., 1)

(the intercept is not penalised). **Cross-fitting**: each event belongs to one of :math:`K`
folds, and the predictions for an event come from the model fitted on the other :math:`K - 1`
folds, so no event is corrected by a model that saw its own reward (which would bias DR towards
DM). Only :math:`X^\top X`, :math:`X^\top r` and counts per (fold, action) are kept, so fitting
streams: pass 1 :meth:`CrossFitRidge.fit` over the chunks, pass 2 :meth:`CrossFitRidge.predict`
over the same events. An event's fold is a hash (SplitMix64) of its key and the seed; the key
defaults to its position in the stream, so both passes must see the events in the same order,
unless stable keys (e.g. decision ids) are given.

An action with no training events outside a fold is predicted by the mean reward of those
events.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> features = rng.normal(size=(1000, 3))
>>> actions = rng.integers(0, 2, 1000)
>>> rewards = features[:, 0] * (actions == 1) + rng.normal(scale=0.1, size=1000)
>>> q_logged, q_target = cross_fit_ridge(features, actions, rewards, np.full((1000, 2), 0.5),
...                                      n_actions=2)
>>> bool(np.corrcoef(q_logged, rewards)[0, 1] > 0.9)
True
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bandits.ope.bootstrap import RandomState, entropy_of
from bandits.ope.errors import InvalidParameterError, InvalidProbabilityError, ShapeError
from bandits.ope.validation import (
    as_array,
    check_finite,
    check_lengths,
    check_positive,
    check_probability,
)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class CrossFitRidge:
    """Per-action ridge regression, cross-fitted over ``n_folds`` folds, fitted in chunks.

    Parameters
    ----------
    n_actions : int
        Actions are integers ``0 .. n_actions - 1``.
    n_features : int
        Columns of the feature matrix.
    n_folds : int
        :math:`K \\ge 2`.
    ridge : float
        :math:`\\lambda > 0`.
    random_state : int, numpy SeedSequence or Generator
        Seed of the fold assignment.
    """

    def __init__(self, n_actions: int, n_features: int, *, n_folds: int = 5, ridge: float = 1.0,
                 random_state: RandomState = 0) -> None:
        for name, value, least in (("n_actions", n_actions, 1), ("n_features", n_features, 0),
                                   ("n_folds", n_folds, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidParameterError(f"{name} must be an integer >= {least}, got {value!r}")
        self.n_actions, self.n_features, self.n_folds = n_actions, n_features, n_folds
        self.ridge = check_positive("ridge", ridge)
        seed = np.random.SeedSequence(entropy_of(random_state))
        self._salt = seed.generate_state(1, dtype=np.uint64)[0]
        size = n_features + 1
        self._gram = np.zeros((n_folds, n_actions, size, size))
        self._moment = np.zeros((n_folds, n_actions, size))
        self._count = np.zeros((n_folds, n_actions))
        self._reward_sum = np.zeros((n_folds, n_actions))
        self._positions = {"fit": 0, "predict": 0}
        self._coefficients: np.ndarray | None = None

    def folds(self, keys: ArrayLike) -> np.ndarray:
        """The fold of each event key (non-negative integers)."""
        keys = np.asarray(keys)
        if keys.ndim != 1 or not np.issubdtype(keys.dtype, np.integer):
            raise ShapeError(f"keys must be a 1-D array of integers, got {keys.dtype} {keys.shape}")
        hashed = _splitmix64(keys.astype(np.uint64) ^ self._salt)
        return (hashed % np.uint64(self.n_folds)).astype(np.intp)

    def _design(self, features: ArrayLike, keys: ArrayLike | None, stage: str,
                others: dict) -> tuple[np.ndarray, np.ndarray]:
        matrix = check_finite("features", as_array("features", features, ndim=2))
        if matrix.shape[1] != self.n_features:
            raise ShapeError(f"features must have {self.n_features} columns, got "
                             f"{matrix.shape[1]}")
        count = check_lengths({"features": matrix, **others})
        if keys is None:
            keys = np.arange(self._positions[stage], self._positions[stage] + count)
        elif len(keys) != count:
            raise ShapeError(f"keys has {len(keys)} entries for {count} events")
        self._positions[stage] += count
        design = np.empty((count, self.n_features + 1))
        design[:, 0] = 1.0
        design[:, 1:] = matrix
        return design, self.folds(keys)

    def _actions(self, actions: ArrayLike) -> np.ndarray:
        array = np.asarray(actions)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ShapeError(f"actions must be a 1-D array of integers, got {array.dtype}")
        if array.size and (array.min() < 0 or array.max() >= self.n_actions):
            raise InvalidParameterError(
                f"actions must be in 0..{self.n_actions - 1}, got values in "
                f"{array.min()}..{array.max()}")
        return array.astype(np.intp)

    def fit(self, features: ArrayLike, actions: ArrayLike, rewards: ArrayLike,
            keys: ArrayLike | None = None) -> None:
        """Pass 1: add a chunk of (features ``(m, d)``, logged action, reward) to the statistics."""
        action = self._actions(actions)
        reward = check_finite("rewards", as_array("rewards", rewards))
        design, fold = self._design(features, keys, "fit", {"actions": action, "rewards": reward})
        group = fold * self.n_actions + action
        order = np.argsort(group, kind="stable")
        groups, starts = np.unique(group[order], return_index=True)
        for code, begin, end in zip(groups, starts, list(starts[1:]) + [order.size]):
            rows = order[begin:end]
            f, a = divmod(int(code), self.n_actions)
            part = design[rows]
            self._gram[f, a] += part.T @ part
            self._moment[f, a] += part.T @ reward[rows]
            self._count[f, a] += rows.size
            self._reward_sum[f, a] += reward[rows].sum()
        self._coefficients = None

    def coefficients(self) -> np.ndarray:
        r"""Per fold :math:`k` and action, :math:`\beta` fitted without fold :math:`k`:
        shape ``(n_folds, n_actions, n_features + 1)``, intercept first."""
        if self._coefficients is not None:
            return self._coefficients
        if not self._count.any():
            raise InvalidParameterError("the reward model has not been fitted (call fit first)")
        penalty = np.eye(self.n_features + 1) * self.ridge
        penalty[0, 0] = 0.0
        result = np.zeros((self.n_folds, self.n_actions, self.n_features + 1))
        for fold in range(self.n_folds):
            gram = self._gram.sum(axis=0) - self._gram[fold]
            moment = self._moment.sum(axis=0) - self._moment[fold]
            count = self._count.sum(axis=0) - self._count[fold]
            rewards = self._reward_sum.sum() - self._reward_sum[fold].sum()
            fallback = rewards / count.sum() if count.sum() else 0.0
            for action in range(self.n_actions):
                if count[action] == 0:
                    result[fold, action, 0] = fallback
                    continue
                result[fold, action] = np.linalg.solve(gram[action] + penalty, moment[action])
        self._coefficients = result
        return result

    def predict_all(self, features: ArrayLike, keys: ArrayLike | None = None) -> np.ndarray:
        """Pass 2: out-of-fold predictions for every action, shape ``(m, n_actions)``."""
        design, fold = self._design(features, keys, "predict", {})
        coefficients = self.coefficients()
        predictions = np.empty((design.shape[0], self.n_actions))
        for k in range(self.n_folds):
            rows = fold == k
            predictions[rows] = design[rows] @ coefficients[k].T
        return predictions

    def predict(self, features: ArrayLike, actions: ArrayLike, target_pmf: ArrayLike,
                keys: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
        r"""Pass 2: :math:`(\hat q(x_i, a_i),\ \sum_a \pi(a|x_i) \hat q(x_i, a))` per event, out of
        fold: the ``q_logged`` and ``q_target`` arrays of the DM/DR estimators.

        ``target_pmf`` is the target's distribution over the actions, shape ``(m, n_actions)``.
        """
        action = self._actions(actions)
        pmf = check_probability("target_pmf", as_array("target_pmf", target_pmf, ndim=2))
        if pmf.shape != (action.size, self.n_actions):
            raise ShapeError(f"target_pmf must have shape {(action.size, self.n_actions)}, got "
                             f"{pmf.shape}")
        totals = pmf.sum(axis=1)
        if np.any(np.abs(totals - 1.0) > 1e-6):
            row = int(np.flatnonzero(np.abs(totals - 1.0) > 1e-6)[0])
            raise InvalidProbabilityError(f"target_pmf rows must sum to 1: row {row} sums to "
                                          f"{totals[row]!r}")
        predictions = self.predict_all(features, keys)
        return predictions[np.arange(action.size), action], np.einsum("ij,ij->i", pmf, predictions)


def cross_fit_ridge(features: ArrayLike, actions: ArrayLike, rewards: ArrayLike,
                    target_pmf: ArrayLike, *, n_actions: int, n_folds: int = 5,
                    ridge: float = 1.0, random_state: RandomState = 0,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """In memory: fit :class:`CrossFitRidge` on all events, return their out-of-fold
    ``(q_logged, q_target)``."""
    matrix = np.asarray(features)
    model = CrossFitRidge(n_actions, matrix.shape[1] if matrix.ndim == 2 else 0,
                          n_folds=n_folds, ridge=ridge, random_state=random_state)
    model.fit(matrix, actions, rewards)
    return model.predict(matrix, actions, target_pmf)
