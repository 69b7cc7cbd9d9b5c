r"""The arrays a tuning works on: logged events with every action's predicted outcomes.

For ``n`` events, at most ``A`` actions each and ``K`` objectives:

=================  ===========  =========================================================
array              shape        meaning
=================  ===========  =========================================================
``predictions``    (n, A, K)    :math:`\hat f_k(x_i, a)`: each objective's reward model for
                                every action of the event, in the objective's own units
``allowed``        (n, A)       the actions the policy may show (offered and not excluded);
                                events with fewer actions are padded with ``False``
``logged``         (n,)         index of the action the logger showed (allowed)
``propensity``     (n,)         the logger's probability of that action, in (0, 1]
``outcomes``       (n, K)       what was observed, per objective
=================  ===========  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from bandits.ope.errors import (
    EmptyInputError,
    InvalidProbabilityError,
    LengthMismatchError,
    NonFiniteError,
    ShapeError,
)


@dataclass(frozen=True)
class TuningArrays:
    """Validated arrays of one split (see the module docstring); build with :meth:`of`."""

    predictions: np.ndarray
    allowed: np.ndarray
    logged: np.ndarray
    propensity: np.ndarray
    outcomes: np.ndarray

    @classmethod
    def of(cls, predictions: ArrayLike, allowed: ArrayLike, logged: ArrayLike,
           propensity: ArrayLike, outcomes: ArrayLike) -> TuningArrays:
        """Check shapes and values; raise an :class:`~bandits.ope.errors.OPEInputError` naming
        the problem."""
        predictions = np.asarray(predictions, dtype=float)
        allowed = np.asarray(allowed, dtype=bool)
        logged = np.asarray(logged)
        propensity = np.asarray(propensity, dtype=float)
        outcomes = np.asarray(outcomes, dtype=float)
        if predictions.ndim != 3:
            raise ShapeError(f"predictions must have shape (events, actions, objectives), got "
                             f"{predictions.shape}")
        n, actions, objectives = predictions.shape
        if n == 0:
            raise EmptyInputError("no events to tune on")
        expected = {"allowed": (allowed, (n, actions)), "logged": (logged, (n,)),
                    "propensity": (propensity, (n,)), "outcomes": (outcomes, (n, objectives))}
        for name, (array, shape) in expected.items():
            if array.shape != shape:
                raise LengthMismatchError(f"{name} has shape {array.shape}; predictions imply {shape}")
        for name, array in (("predictions", predictions), ("outcomes", outcomes)):
            if not np.all(np.isfinite(array)):
                raise NonFiniteError(f"{name} holds NaN or infinite values")
        if not np.issubdtype(logged.dtype, np.integer) or logged.min() < 0 or logged.max() >= actions:
            raise ShapeError(f"logged must hold action indices in [0, {actions})")
        rows = np.arange(n)
        if not allowed[rows, logged].all():
            raise ShapeError("a logged action is not among its event's allowed actions")
        if not np.all((propensity > 0) & (propensity <= 1)):
            raise InvalidProbabilityError("propensities must be in (0, 1]")
        logged = logged.astype(np.intp)
        return cls(predictions, allowed, logged, propensity, outcomes)

    @property
    def n(self) -> int:
        return self.predictions.shape[0]

    @property
    def objectives(self) -> int:
        return self.predictions.shape[2]

    def logged_predictions(self) -> np.ndarray:
        """(n, K): the reward models' predictions for the logged actions."""
        return self.predictions[np.arange(self.n), self.logged]
