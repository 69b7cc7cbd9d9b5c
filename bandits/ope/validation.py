"""Checks at the boundary: arrays in, float64 arrays out, or an :mod:`~bandits.ope.errors` error.

Every message names the array, the first offending position and its value, and how many values
are affected, so that a job can show it to the analyst unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from bandits.ope.errors import (
    EmptyInputError,
    InvalidParameterError,
    InvalidProbabilityError,
    LengthMismatchError,
    NonFiniteError,
    OPEInputError,
    ShapeError,
)


def _position(array: np.ndarray, flat_index: int) -> str:
    index = np.unravel_index(flat_index, array.shape)
    return ", ".join(str(int(i)) for i in index)


def as_array(name: str, values: ArrayLike, ndim: int = 1) -> np.ndarray:
    """``values`` as a C-contiguous float64 array with ``ndim`` dimensions (copied if needed)."""
    try:
        array = np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} must be an array of numbers: {exc}") from None
    if array.ndim != ndim:
        shape = "(n,)" if ndim == 1 else "(n, slots)"
        raise ShapeError(f"{name} must have shape {shape}, got shape {array.shape}")
    return array


def _refuse(error: type[OPEInputError], name: str, array: np.ndarray, bad: np.ndarray,
            requirement: str, problem: str) -> np.ndarray:
    """Raise ``error`` naming the first position where ``bad`` holds; else return ``array``."""
    if bad.any():
        first = int(np.flatnonzero(bad.ravel())[0])
        raise error(
            f"{name} must be {requirement}: {name}[{_position(array, first)}] = "
            f"{float(array.ravel()[first])!r} ({int(bad.sum())} of {array.size} values {problem})"
        )
    return array


def check_finite(name: str, array: np.ndarray) -> np.ndarray:
    """Raise :class:`NonFiniteError` if ``array`` holds NaN or ±inf."""
    return _refuse(NonFiniteError, name, array, ~np.isfinite(array), "finite", "are NaN or inf")


def check_propensity(name: str, array: np.ndarray) -> np.ndarray:
    """A logging probability of what was shown: finite and in (0, 1]."""
    with np.errstate(invalid="ignore"):
        bad = ~((array > 0.0) & (array <= 1.0))
    return _refuse(InvalidProbabilityError, name, array, bad, "in (0, 1]", "out of range")


def check_probability(name: str, array: np.ndarray) -> np.ndarray:
    """A probability or a probability mass: finite and in [0, 1]."""
    with np.errstate(invalid="ignore"):
        bad = ~((array >= 0.0) & (array <= 1.0))
    return _refuse(InvalidProbabilityError, name, array, bad, "in [0, 1]", "out of range")


def _common_size(arrays: Mapping[str, np.ndarray | None], axis: int, what: str,
                 things: str) -> int:
    sizes = {name: array.shape[axis] for name, array in arrays.items() if array is not None}
    distinct = set(sizes.values())
    if len(distinct) > 1:
        listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise LengthMismatchError(f"arrays describing the same {what} differ in {things} "
                                  f"({listed})")
    size = distinct.pop() if distinct else 0
    if size == 0:
        raise EmptyInputError(f"no {'events' if axis == 0 else 'slots'}: "
                              f"{', '.join(sizes) or 'the input'} is empty")
    return size


def check_lengths(arrays: Mapping[str, np.ndarray | None]) -> int:
    """The common number of events (first axis) of the given arrays; ``None`` entries are skipped.

    Raises :class:`EmptyInputError` when there are no events and :class:`LengthMismatchError`
    when the arrays disagree.
    """
    return _common_size(arrays, 0, "events", "length")


def check_slots(arrays: Mapping[str, np.ndarray | None]) -> int:
    """The common number of slots (second axis) of 2-D arrays; ``None`` entries are skipped."""
    return _common_size(arrays, 1, "slates", "slots")


def check_alpha(alpha: float) -> float:
    """``alpha`` of a (1 - alpha) interval: a number strictly between 0 and 1."""
    if not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) < 1.0:
        raise InvalidParameterError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return float(alpha)


def check_positive(name: str, value: float, *, allow_zero: bool = False,
                   allow_inf: bool = False) -> float:
    """A hyperparameter that must be a positive (or non-negative) number, maybe infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise InvalidParameterError(f"{name} must be a finite number, got {value!r}")
    if number < 0.0 or (number == 0.0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidParameterError(f"{name} must be {bound}, got {value!r}")
    return number


def check_range(name: str, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    """``None``, or ``(low, high)`` as finite floats with ``low <= high``."""
    if bounds is None:
        return None
    try:
        low, high = (float(bound) for bound in bounds)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be (low, high), got {bounds!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise InvalidParameterError(f"{name} must be finite with low <= high, got {bounds!r}")
    return (low, high)
