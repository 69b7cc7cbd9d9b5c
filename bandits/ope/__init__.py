r"""Off-policy evaluation: estimators, intervals and diagnostics over plain numpy arrays.

Everything streams: feed chunks of logged events to an :class:`Evaluation` and memory stays
constant (moments, a Poisson bootstrap of :math:`O(B)` sums, histogram diagnostics). Numpy and
scipy only; nothing here touches the database or HTTP.

* Single-slot estimators (:mod:`~bandits.ope.estimators`): ``ips``, ``ips-clipped``, ``snips``,
  ``dm``, ``dr``, ``sndr``, ``switch-dr``, ``dr-os``.
* Slates (:mod:`~bandits.ope.slates`): ``pi``, ``snpi``, ``iips``, ``rips``; CCB per slot with
  :class:`PerSlotEvaluation`.
* Intervals: Gaussian (delta method) and skew-corrected (Hall's transform) for all, empirical
  likelihood for the IPS and PI families,
  a vectorised Poisson bootstrap that re-normalises self-normalised estimators per resample.
* Diagnostics with every estimate, paired lifts over the logging policy, cross-fitted reward
  models (:mod:`~bandits.ope.crossfit`), a registry by name for JSON job specs.

>>> import numpy as np
>>> from bandits.ope import estimate
>>> result = estimate("snips", reward=[1.0, 0.0, 1.0, 0.0], propensity=[0.5, 0.5, 0.25, 0.75],
...                   target_probability=[1.0, 0.0, 0.5, 0.75])
>>> result.value, result.diagnostics.n
(0.8, 4)

See ``docs/ope.md`` for the formulas, assumptions and a full example.
"""

from bandits.ope.base import Estimator
from bandits.ope.batches import BanditBatch, SlateBatch
from bandits.ope.bootstrap import PoissonBootstrap
from bandits.ope.ccb import PerSlotEvaluation
from bandits.ope.crossfit import CrossFitRidge, cross_fit_ridge
from bandits.ope.diagnostics import Diagnostics, WeightDiagnostics
from bandits.ope.empirical_likelihood import empirical_likelihood_interval
from bandits.ope.errors import (
    EmptyInputError,
    InvalidParameterError,
    InvalidProbabilityError,
    LengthMismatchError,
    MissingInputError,
    NonFiniteError,
    OPEInputError,
    ShapeError,
    UnknownEstimatorError,
)
from bandits.ope.estimators import DM, DR, IPS, SNDR, SNIPS, ClippedIPS, DRos, SwitchDR
from bandits.ope.evaluation import Evaluation, estimate
from bandits.ope.intervals import Interval
from bandits.ope.moments import Moments
from bandits.ope.registry import ESTIMATORS, make_estimator
from bandits.ope.results import Difference, Estimate, Report
from bandits.ope.slates import IIPS, PI, RIPS, SNPI

__all__ = [
    "BanditBatch", "ClippedIPS", "CrossFitRidge", "DM", "DR", "DRos", "Diagnostics",
    "Difference", "ESTIMATORS", "EmptyInputError", "Estimate", "Estimator", "Evaluation",
    "IIPS", "IPS", "Interval", "InvalidParameterError", "InvalidProbabilityError",
    "LengthMismatchError", "MissingInputError", "Moments", "NonFiniteError", "OPEInputError",
    "PI", "PerSlotEvaluation", "PoissonBootstrap", "RIPS", "Report", "SNDR", "SNIPS", "SNPI",
    "ShapeError", "SlateBatch", "SwitchDR", "UnknownEstimatorError", "WeightDiagnostics",
    "cross_fit_ridge", "empirical_likelihood_interval", "estimate", "make_estimator",
]
