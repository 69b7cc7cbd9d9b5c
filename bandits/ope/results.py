"""What an evaluation returns: estimates, paired differences and a report, all JSON-ready.

``to_dict()`` turns NaN (an undefined estimate or interval) into ``None``, so the output can be
written with any JSON encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bandits.ope.diagnostics import Diagnostics
from bandits.ope.errors import InvalidParameterError
from bandits.ope.intervals import Interval


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


@dataclass(frozen=True)
class Estimate:
    """One candidate's value by one estimator, its intervals (by method) and weight diagnostics.

    ``intervals`` has ``"gaussian"`` and ``"skew_corrected"`` always, ``"empirical_likelihood"``
    and ``"bootstrap"`` when they were asked for and apply.
    """

    candidate: str
    estimator: str
    value: float
    standard_error: float
    intervals: dict[str, Interval]
    diagnostics: Diagnostics

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return _clean({
            "candidate": self.candidate, "estimator": self.estimator, "value": self.value,
            "standard_error": self.standard_error,
            "intervals": {name: interval.to_dict() for name, interval in self.intervals.items()},
            "diagnostics": self.diagnostics.to_dict()})


@dataclass(frozen=True)
class Difference:
    """``candidate`` minus ``baseline`` by one estimator on the same events (paired).

    For a lift the baseline is ``"logging"``: the logging policy's observed mean on these events.
    """

    candidate: str
    baseline: str
    estimator: str
    value: float
    candidate_value: float
    baseline_value: float
    standard_error: float
    intervals: dict[str, Interval]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return _clean({
            "candidate": self.candidate, "baseline": self.baseline, "estimator": self.estimator,
            "value": self.value, "candidate_value": self.candidate_value,
            "baseline_value": self.baseline_value, "standard_error": self.standard_error,
            "intervals": {name: interval.to_dict() for name, interval in self.intervals.items()}})


@dataclass(frozen=True)
class Report:
    """Every (candidate, estimator) estimate and its lift over the logging policy."""

    n: int
    level: float
    estimates: tuple[Estimate, ...]
    lifts: tuple[Difference, ...]

    def estimate(self, candidate: str, estimator: str) -> Estimate:
        """The estimate of ``candidate`` by the estimator labelled ``estimator``."""
        for item in self.estimates:
            if item.candidate == candidate and item.estimator == estimator:
                return item
        raise InvalidParameterError(f"no estimate of {candidate!r} by {estimator!r}")

    def lift(self, candidate: str, estimator: str) -> Difference:
        """The paired lift of ``candidate`` over the logging policy by ``estimator``."""
        for item in self.lifts:
            if item.candidate == candidate and item.estimator == estimator:
                return item
        raise InvalidParameterError(f"no lift of {candidate!r} by {estimator!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"n": self.n, "level": self.level,
                "estimates": [item.to_dict() for item in self.estimates],
                "lifts": [item.to_dict() for item in self.lifts]}
