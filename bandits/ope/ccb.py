r"""CCB (conditional contextual bandit) logs: each slot evaluated as a single-slot bandit.

A ``ccb`` loop fills slots in order from one pool; slot :math:`k`'s logged probability
:math:`\mu(a_k \mid x, a_{<k})` is conditional on the actions already placed. Treating slot
:math:`k` as a single-slot problem with those conditional probabilities, the target's conditional
probability :math:`\pi(a_k \mid x, a_{<k})` of the logged action and the slot's reward
:math:`r_k`, any single-slot estimator estimates

.. math::

    V_k = E_x\, E_{a_{<k} \sim \mu}\, E_{a_k \sim \pi(\cdot \mid x, a_{<k})}[r_k],

the value of slot :math:`k` **with the earlier slots as the logger filled them**. That equals the
target's own value of slot :math:`k` only when the earlier slots agree with the target (or do
not affect slot :math:`k`'s reward beyond removing their actions from the pool); the sum over slots
is not the target's slate value in general (VW's maintainers note the same of all-slot IPS with
conditional probabilities). For the whole slate use :class:`~bandits.ope.slates.RIPS` (cascade
assumption) on the same conditional probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from bandits.ope.bootstrap import RandomState, entropy_of
from bandits.ope.batches import BanditBatch
from bandits.ope.errors import InvalidParameterError, LengthMismatchError, OPEInputError
from bandits.ope.evaluation import Evaluation
from bandits.ope.registry import EstimatorSpec
from bandits.ope.results import Report
from bandits.ope.validation import as_array

_PER_SLOT = ("reward", "propensity", "q_logged", "target_probability", "q_target",
             "unsupported_mass")


class PerSlotEvaluation:
    """One single-slot :class:`~bandits.ope.evaluation.Evaluation` per slot of ``(n, slots)`` logs.

    Parameters
    ----------
    slots : int
        Number of slots :math:`L`.
    estimators, candidates, **options
        As for :class:`~bandits.ope.evaluation.Evaluation` (single-slot estimators). With a
        ``random_state``, each slot's bootstrap gets its own independent seed derived from it.
    """

    def __init__(self, slots: int, estimators: Sequence[EstimatorSpec],
                 candidates: Sequence[str] = ("target",), *,
                 random_state: RandomState | None = None, **options) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InvalidParameterError(f"slots must be a positive integer, got {slots!r}")
        seeds: list[RandomState | None] = [None] * slots
        if random_state is not None:
            seeds = np.random.SeedSequence(entropy_of(random_state)).spawn(slots)
        self.slots = [Evaluation(estimators, candidates, random_state=seed, **options)
                      for seed in seeds]
        if self.slots[0].kind != "bandit":
            raise InvalidParameterError("per-slot evaluation takes single-slot estimators")

    def update(self, *, shown: ArrayLike | None = None,
               candidates: Mapping[str, Mapping[str, ArrayLike]] | None = None,
               **arrays: ArrayLike) -> None:
        """Add a chunk of ``(n, slots)`` arrays (the names of the single-slot batch, per slot).

        ``shown[i, k]`` is false where slot :math:`k` of event :math:`i` was not filled; those
        entries are skipped (and may hold anything, e.g. NaN).
        """
        if candidates is None:
            names = self.slots[0].candidates
            if len(names) != 1:
                raise InvalidParameterError(f"give each candidate's arrays in candidates= for "
                                            f"{names}")
            candidates = {names[0]: {key: arrays.pop(key) for key in list(arrays)
                                     if key in ("target_probability", "q_target",
                                                "unsupported_mass")}}
        tables = {("", key): value for key, value in arrays.items()}
        for name, own in candidates.items():
            tables.update({(name, key): value for key, value in own.items()})
        converted = {}
        for (name, key), value in tables.items():
            if key not in _PER_SLOT:
                raise InvalidParameterError(f"unknown array {key!r}; expected some of {_PER_SLOT}")
            converted[name, key] = as_array(key, value, ndim=2)
        mask = None if shown is None else np.asarray(shown, dtype=bool)
        shapes = {f"{name + '.' if name else ''}{key}": array.shape
                  for (name, key), array in converted.items()}
        if mask is not None:
            shapes["shown"] = mask.shape
        expected = (next(iter(shapes.values()))[0], len(self.slots))
        if any(shape != expected for shape in shapes.values()):
            raise LengthMismatchError(f"per-slot arrays must all have shape {expected}: {shapes}")
        chunks = []
        for slot in range(len(self.slots)):
            rows = slice(None) if mask is None else mask[:, slot]
            if mask is not None and not rows.any():
                continue
            column = {key: array[rows, slot] for key, array in converted.items()}
            logged = {key: column["", key] for (owner, key) in column if owner == ""}
            own = {name: {key: column[name, key] for (owner, key) in column if owner == name}
                   for name in candidates}
            try:  # check every slot before any evaluation changes: a chunk is all or nothing
                for arrays_of_candidate in own.values():
                    BanditBatch.from_arrays(**{**logged, **arrays_of_candidate})
            except OPEInputError as error:
                raise type(error)(f"slot {slot}: {error}") from None
            chunks.append((slot, logged, own))
        for slot, logged, own in chunks:
            self.slots[slot].update(candidates=own, **logged)

    def result(self, alpha: float = 0.05) -> list[Report | None]:
        """Per slot, its report (``None`` for a slot that was never filled)."""
        return [evaluation.result(alpha) if evaluation.n else None for evaluation in self.slots]
