"""Estimators by name, for jobs that read them from JSON.

A spec is a name (``"snips"``), a mapping with a ``name`` and the hyperparameters
(``{"name": "switch-dr", "threshold": 20}``), or an estimator instance.

>>> make_estimator({"name": "switch-dr", "threshold": 20}).label
'switch-dr(threshold=20.0)'
>>> make_estimator("ipw")
Traceback (most recent call last):
...
bandits.ope.errors.UnknownEstimatorError: unknown estimator 'ipw'; known: dm, dr, dr-os, ...
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from bandits.ope.base import Estimator
from bandits.ope.errors import InvalidParameterError, UnknownEstimatorError
from bandits.ope.estimators import SINGLE_SLOT
from bandits.ope.slates import SLATE

ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in SINGLE_SLOT + SLATE}
"""Every estimator class by its registry name."""

EstimatorSpec = str | Mapping[str, Any] | Estimator


def make_estimator(spec: EstimatorSpec, **params: Any) -> Estimator:
    """An estimator from a name, a ``{"name": ..., **params}`` mapping, or an instance.

    Raises
    ------
    UnknownEstimatorError
        The name is not in :data:`ESTIMATORS`.
    InvalidParameterError
        A hyperparameter is missing, unknown or out of range.
    """
    if isinstance(spec, Estimator):
        if params:
            raise InvalidParameterError(f"{spec.label} is already built; do not pass parameters")
        return spec
    if isinstance(spec, Mapping):
        params = {**{key: value for key, value in spec.items() if key != "name"}, **params}
        name = spec.get("name")
    else:
        name = spec
    if not isinstance(name, str):
        raise UnknownEstimatorError(f"an estimator spec needs a name, got {spec!r}")
    cls = ESTIMATORS.get(name)
    if cls is None:
        raise UnknownEstimatorError(
            f"unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}")
    parameters = ({} if cls.__init__ is object.__init__ else
                  {key: parameter for key, parameter in
                   inspect.signature(cls.__init__).parameters.items() if key != "self"})
    accepted = list(parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise InvalidParameterError(
            f"estimator {name!r} does not take {', '.join(unknown)} (parameters: {allowed})")
    missing = [key for key, parameter in parameters.items()
               if parameter.default is inspect.Parameter.empty and key not in params]
    if missing:
        raise InvalidParameterError(f"estimator {name!r} needs {', '.join(missing)}")
    return cls(**params)
