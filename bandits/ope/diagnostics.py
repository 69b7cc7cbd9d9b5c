r"""Diagnostics of the importance weights that come with every estimate, streamed in chunks.

For weights :math:`w_1..w_n` (as the estimator applies them: clipped, switched, shrunk, or per
slate position):

* effective sample size (Kish): :math:`n_\mathrm{eff} = (\sum_i w_i)^2 / \sum_i w_i^2`; far below
  :math:`n` means a few events carry the estimate;
* mean (close to 1 for unclipped weights when the propensities are right and the target is
  supported), minimum, maximum and the quantiles p50, p90, p99 and p99.9;
* ``zero_weight_share``: events whose logged action the target never takes;
* ``unsupported_share``: events where the target puts mass on actions the logger gave probability
  0 (from the caller's ``unsupported_mass``), and ``unsupported_mass_mean``, the target's mean
  mass there; IPS-type estimates miss that part of the value entirely, so
  :math:`|\text{bias}| \le` ``unsupported_mass_mean`` :math:`\times \max |r|`.

Quantiles come from a mergeable log-spaced histogram (400 bins per decade over
:math:`10^{-8}..10^{8}` in magnitude, per sign) holding each bin's count and sum; a quantile is the
mean of the weights in its bin, so it is exact when the bin holds one distinct value (weights
from discrete probabilities usually do) and within 0.6 % otherwise. Memory is constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}
_PER_DECADE = 400
_DECADES = (-8, 8)
_BINS = (_DECADES[1] - _DECADES[0]) * _PER_DECADE + 2  # plus under- and overflow


@dataclass(frozen=True)
class Diagnostics:
    """Weight diagnostics of one estimate (``positions`` holds the per-slot ones, if any)."""

    n: int
    effective_sample_size: float
    weight_mean: float
    weight_min: float
    weight_max: float
    weight_quantiles: dict[str, float]
    zero_weight_share: float
    unsupported_share: float | None
    unsupported_mass_mean: float | None
    positions: tuple[Diagnostics, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        result = {key: getattr(self, key) for key in self.__dataclass_fields__}
        result["weight_quantiles"] = dict(self.weight_quantiles)
        result["positions"] = (None if self.positions is None
                               else [position.to_dict() for position in self.positions])
        return result


class _Histogram:
    """One stream of weights: sums, extremes and a signed log histogram of counts and sums."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.total_squares = 0.0
        self.zeros = 0
        self.minimum = np.inf
        self.maximum = -np.inf
        self.counts = np.zeros((2, _BINS), dtype=np.int64)  # row 0: negative, row 1: positive
        self.sums = np.zeros((2, _BINS))

    def update(self, weights: np.ndarray) -> None:
        self.n += weights.size
        self.total += float(weights.sum())
        self.total_squares += float(np.dot(weights, weights))
        self.minimum = min(self.minimum, float(weights.min()))
        self.maximum = max(self.maximum, float(weights.max()))
        nonzero = weights[weights != 0.0]
        self.zeros += weights.size - nonzero.size
        if nonzero.size == 0:
            return
        magnitude = np.abs(nonzero)
        position = np.floor((np.log10(magnitude) - _DECADES[0]) * _PER_DECADE)
        index = np.clip(position, -1, _BINS - 2).astype(np.intp) + 1
        index += (nonzero > 0) * _BINS
        self.counts += np.bincount(index, minlength=2 * _BINS).reshape(2, _BINS)
        self.sums += np.bincount(index, weights=magnitude, minlength=2 * _BINS).reshape(2, _BINS)

    def merge(self, other: _Histogram) -> None:
        self.n += other.n
        self.total += other.total
        self.total_squares += other.total_squares
        self.zeros += other.zeros
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.counts += other.counts
        self.sums += other.sums

    def quantiles(self) -> dict[str, float]:
        # Ascending order: negative bins from the largest magnitude down, zero, positive bins up.
        counts = np.concatenate((self.counts[0, ::-1], [self.zeros], self.counts[1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            negative = -self.sums[0, ::-1] / self.counts[0, ::-1]
            positive = self.sums[1] / self.counts[1]
        values = np.concatenate((negative, [0.0], positive))
        cumulative = np.cumsum(counts)
        result = {}
        for key, level in QUANTILES.items():
            rank = max(1, int(np.ceil(level * self.n)))
            value = values[int(np.searchsorted(cumulative, rank))]
            result[key] = float(min(max(value, self.minimum), self.maximum))
        return result

    def diagnostics(self, unsupported: tuple[float | None, float | None]) -> Diagnostics:
        ess = self.total**2 / self.total_squares if self.total_squares > 0 else 0.0
        return Diagnostics(
            n=self.n, effective_sample_size=ess, weight_mean=self.total / self.n,
            weight_min=self.minimum, weight_max=self.maximum, weight_quantiles=self.quantiles(),
            zero_weight_share=self.zeros / self.n, unsupported_share=unsupported[0],
            unsupported_mass_mean=unsupported[1])


class WeightDiagnostics:
    """Streaming diagnostics of ``(n,)`` weights, or ``(n, positions)`` weights per slot."""

    def __init__(self) -> None:
        self._streams: list[_Histogram] | None = None
        self.n = 0
        self._unsupported_events = 0
        self._unsupported_mass = 0.0
        self._unsupported_seen = 0

    def update(self, weights: np.ndarray, unsupported_mass: np.ndarray | None = None) -> None:
        """Add a chunk's weights and (optionally) its per-event unsupported mass."""
        columns = weights[:, None] if weights.ndim == 1 else weights
        if self._streams is None:
            self._streams = [_Histogram() for _ in range(columns.shape[1])]
        for stream, column in zip(self._streams, columns.T):
            stream.update(np.ascontiguousarray(column))
        self.n += columns.shape[0]
        if unsupported_mass is not None:
            self._unsupported_seen += unsupported_mass.size
            self._unsupported_events += int(np.count_nonzero(unsupported_mass > 0.0))
            self._unsupported_mass += float(unsupported_mass.sum())

    def merge(self, other: WeightDiagnostics) -> None:
        """Add another accumulator's events."""
        if other._streams is None:
            return
        if self._streams is None:
            self._streams = [_Histogram() for _ in other._streams]
        for mine, theirs in zip(self._streams, other._streams):
            mine.merge(theirs)
        self.n += other.n
        self._unsupported_seen += other._unsupported_seen
        self._unsupported_events += other._unsupported_events
        self._unsupported_mass += other._unsupported_mass

    def result(self) -> Diagnostics:
        """The diagnostics; with several positions, the top level is the one of least ESS."""
        if not self._streams or self.n == 0:
            raise ValueError("no weights were added")
        unsupported: tuple[float | None, float | None] = (None, None)
        if self._unsupported_seen:
            unsupported = (self._unsupported_events / self._unsupported_seen,
                           self._unsupported_mass / self._unsupported_seen)
        per_stream = [stream.diagnostics(unsupported) for stream in self._streams]
        if len(per_stream) == 1:
            return per_stream[0]
        worst = min(per_stream, key=lambda item: item.effective_sample_size)
        return Diagnostics(**{**worst.__dict__, "positions": tuple(per_stream)})
