"""Errors for bad input: every one is a :class:`ValueError` with a precise message.

A job that reads estimator specs from JSON can catch :class:`OPEInputError` (or ``ValueError``)
and show the message as it is: it names the array or parameter, the offending index and value.

>>> from bandits.ope import estimate
>>> estimate("ips", reward=[1.0], propensity=[0.0], target_probability=[1.0])
Traceback (most recent call last):
...
bandits.ope.errors.InvalidProbabilityError: propensity must be in (0, 1]: propensity[0] = 0.0 ...
"""

from __future__ import annotations


class OPEInputError(ValueError):
    """Base class: the input to an estimator, an interval or an evaluation is not usable."""


class EmptyInputError(OPEInputError):
    """No events: an estimate needs at least one (an interval at least two)."""


class ShapeError(OPEInputError):
    """An array has the wrong number of dimensions or a length that does not match the others."""


class LengthMismatchError(ShapeError):
    """Arrays that describe the same events have different lengths."""


class InvalidProbabilityError(OPEInputError):
    """A propensity outside (0, 1], or a target probability / unsupported mass outside [0, 1]."""


class NonFiniteError(OPEInputError):
    """NaN or infinity in rewards, reward-model predictions or features."""


class MissingInputError(OPEInputError):
    """An estimator needs an array that was not given (e.g. DR without ``q_logged``)."""


class UnknownEstimatorError(OPEInputError):
    """No estimator of that name in the registry."""


class InvalidParameterError(OPEInputError):
    """A hyperparameter, interval level or option is out of range or not understood."""
