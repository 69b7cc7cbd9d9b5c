r"""Streaming evaluation of several candidate policies by several estimators on the same events.

:class:`Evaluation` keeps, whatever the number of events: the joint moments of every
(candidate, estimator) term and of the observed rewards (:class:`~bandits.ope.moments.Moments`),
the third co-moments of each (candidate, estimator) block with its observed column
(:class:`~bandits.ope.moments.ThirdMoments`, for the skew-corrected intervals), one
:class:`~bandits.ope.diagnostics.WeightDiagnostics` per (candidate, weights), and, if asked, a
:class:`~bandits.ope.bootstrap.PoissonBootstrap` over the terms it needs. Feed it chunks with
:meth:`Evaluation.update` (or merge partitions with :meth:`Evaluation.merge`), then call
:meth:`Evaluation.result`.

Lifts are paired: the lift of a candidate is :math:`g(\bar t) - \bar o`, with :math:`o_i` what
the logging policy obtained on event :math:`i` (its reward; the sum of the evaluated slot
rewards for IIPS and RIPS), and its interval uses the covariance of the candidate's terms with
:math:`o` on the same events, so shared noise cancels instead of adding up as it would in two
separate intervals. :meth:`Evaluation.compare` does the same between two candidates.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n = 10_000
>>> propensity = np.full(n, 0.5)
>>> logged = rng.integers(0, 2, n)                    # uniform logger over 2 actions
>>> reward = rng.binomial(1, np.where(logged == 1, 0.6, 0.4)).astype(float)
>>> evaluation = Evaluation(["ips", "snips"], candidates=["always-1"])
>>> evaluation.update(reward=reward, propensity=propensity,
...                   candidates={"always-1": {"target_probability": (logged == 1) * 1.0}})
>>> report = evaluation.result(alpha=0.05)
>>> snips = report.estimate("always-1", "snips")
>>> round(snips.value, 3), round(report.lift("always-1", "snips").value, 3)
(0.599, 0.095)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bandits.ope.base import Estimator
from bandits.ope.batches import BanditBatch, SlateBatch, split_chunk
from bandits.ope.bootstrap import PoissonBootstrap, RandomState
from bandits.ope.diagnostics import WeightDiagnostics
from bandits.ope.empirical_likelihood import empirical_likelihood_interval
from bandits.ope.errors import EmptyInputError, InvalidParameterError
from bandits.ope.intervals import (
    Interval,
    delta_method_standard_error,
    gaussian_interval,
    percentile_interval,
    skew_corrected_interval,
    skewness,
)
from bandits.ope.moments import BlockThirdMoments, Moments, ThirdMoments
from bandits.ope.registry import EstimatorSpec, make_estimator
from bandits.ope.results import Difference, Estimate, Report
from bandits.ope.validation import check_alpha, check_positive, check_range

BATCHES = {"bandit": BanditBatch, "slate": SlateBatch}


class Evaluation:
    """Estimates of ``candidates`` by ``estimators``, accumulated chunk by chunk.

    Parameters
    ----------
    estimators : sequence of str, mapping or Estimator
        Specs for :func:`~bandits.ope.registry.make_estimator`; all of one kind (single-slot
        or slate). Their labels must differ.
    candidates : sequence of str
        Names of the target policies evaluated on the same events.
    n_bootstrap : int
        Poisson-bootstrap resamples (0: no bootstrap interval).
    bootstrap_estimators : sequence of str, optional
        Labels of the estimators to bootstrap (default: all, when ``n_bootstrap > 0``).
    random_state : int, numpy SeedSequence or Generator
        Seed of the bootstrap; required when ``n_bootstrap > 0``.
    empirical_likelihood : bool
        Add the empirical-likelihood interval for the estimators that support it (the IPS and
        PI families).
    reward_range : (float, float), optional
        A-priori reward bounds for the empirical-likelihood interval; default: the observed
        minimum and maximum (a chunk with rewards outside a given range is refused).
    max_weight : float or mapping of candidate to float, optional
        A-priori largest importance weight, for the empirical-likelihood interval (default
        ``inf``, which makes it wide; see :mod:`~bandits.ope.empirical_likelihood`).
    """

    def __init__(self, estimators: Sequence[EstimatorSpec], candidates: Sequence[str] = ("target",),
                 *, n_bootstrap: int = 0, bootstrap_estimators: Sequence[str] | None = None,
                 random_state: RandomState | None = None, empirical_likelihood: bool = False,
                 reward_range: tuple[float, float] | None = None,
                 max_weight: float | Mapping[str, float] | None = None) -> None:
        if isinstance(estimators, (str, Mapping, Estimator)):
            estimators = [estimators]
        self.estimators = [make_estimator(spec) for spec in estimators]
        if not self.estimators:
            raise InvalidParameterError("an evaluation needs at least one estimator")
        labels = [estimator.label for estimator in self.estimators]
        if len(set(labels)) != len(labels):
            raise InvalidParameterError(f"estimator labels must differ, got {labels}")
        kinds = {estimator.kind for estimator in self.estimators}
        if len(kinds) != 1:
            raise InvalidParameterError(
                f"single-slot and slate estimators cannot share an evaluation: {labels}")
        self.kind = kinds.pop()
        self._by_label = dict(zip(labels, self.estimators))
        self.candidates = list(candidates)
        if not self.candidates or len(set(self.candidates)) != len(self.candidates) or not all(
                isinstance(name, str) and name for name in self.candidates):
            raise InvalidParameterError(
                f"candidates must be distinct non-empty names, got {self.candidates!r}")
        self.empirical_likelihood = bool(empirical_likelihood)
        self.reward_range = check_range("reward_range", reward_range)
        limits = max_weight.values() if isinstance(max_weight, Mapping) else [max_weight]
        for limit in limits:
            if limit is not None:
                check_positive("max_weight", limit, allow_inf=True)
        self.max_weight = max_weight
        self._layout(labels)
        self._moments = Moments(self._columns)
        # Per block: its columns, then its observed column (an estimate and its lift).
        self._third = BlockThirdMoments({key: np.r_[block.start:block.stop, self._observed[
            self._by_label[key[1]].observed_key()]] for key, block in self._blocks.items()})
        self._diagnostics = {key: WeightDiagnostics() for key in self._weight_keys}
        self._bootstrap_setup(n_bootstrap, bootstrap_estimators, labels, random_state)
        self._reward_seen = (np.inf, -np.inf)
        self._slots: int | None = None

    def _layout(self, labels: list[str]) -> None:
        observed_keys = list(dict.fromkeys(e.observed_key() for e in self.estimators))
        self._observed = {key: column for column, key in enumerate(observed_keys)}
        self._blocks: dict[tuple[str, str], slice] = {}
        column = len(observed_keys)
        for candidate in self.candidates:
            for estimator, label in zip(self.estimators, labels):
                self._blocks[candidate, label] = slice(column, column + estimator.n_terms)
                column += estimator.n_terms
        self._columns = column
        self._weight_keys = list(dict.fromkeys(
            (candidate, estimator.weight_key())
            for candidate in self.candidates for estimator in self.estimators))

    def _bootstrap_setup(self, n_bootstrap: int, chosen: Sequence[str] | None,
                         labels: list[str], random_state: RandomState | None) -> None:
        self._bootstrap: PoissonBootstrap | None = None
        self._boot_index: dict[int, int] = {}
        if not n_bootstrap:
            return
        chosen = labels if chosen is None else list(chosen)
        unknown = sorted(set(chosen) - set(labels))
        if unknown:
            raise InvalidParameterError(
                f"bootstrap_estimators {unknown} are not among the estimators {labels}")
        columns = []
        for estimator, label in zip(self.estimators, labels):
            if label in chosen:
                columns.append(self._observed[estimator.observed_key()])
                for candidate in self.candidates:
                    block = self._blocks[candidate, label]
                    columns.extend(range(block.start, block.stop))
        columns = sorted(set(columns))
        self._boot_index = {column: position for position, column in enumerate(columns)}
        self._boot_columns = np.array(columns)
        self._bootstrap = PoissonBootstrap(n_bootstrap, len(columns), random_state)

    def update(self, *, candidates: Mapping[str, Mapping[str, ArrayLike]] | None = None,
               start: int | None = None, **logged: ArrayLike) -> None:
        """Add one chunk of events.

        Parameters
        ----------
        candidates : mapping of candidate name to mapping of arrays
            Per candidate, its arrays (``target_probability``, ``q_target``,
            ``unsupported_mass``; see the batch types). With a single candidate they may
            instead be passed as keyword arguments next to the logged ones.
        start : int, optional
            Position of the chunk's first event in the whole stream, for the bootstrap when
            partitions are processed separately and merged (default: after the last chunk).
        **logged : array_like
            The logged arrays shared by all candidates: ``reward``, ``propensity``, and
            ``q_logged`` (single-slot) or ``slot_reward`` (slates).
        """
        batch_type = BATCHES[self.kind]
        candidates = split_chunk(batch_type, self.candidates, candidates, logged)
        batches = {name: batch_type.from_arrays(**{**logged, **candidates[name]})
                   for name in self.candidates}
        first = batches[self.candidates[0]]  # the logged arrays are the same in every batch
        count = len(first)
        self._check_slots(first)
        reward_low, reward_high = float(first.reward.min()), float(first.reward.max())
        if self.reward_range and not (self.reward_range[0] <= reward_low
                                      and reward_high <= self.reward_range[1]):
            raise InvalidParameterError(
                f"rewards in [{reward_low}, {reward_high}] fall outside reward_range "
                f"{self.reward_range}")
        terms = np.empty((count, self._columns))
        for estimator in self.estimators:
            terms[:, self._observed[estimator.observed_key()]] = estimator.observed(first)
        weights = {}
        for (candidate, label), block in self._blocks.items():
            estimator = self._by_label[label]
            terms[:, block] = estimator.terms(batches[candidate])
            key = (candidate, estimator.weight_key())
            if key not in weights:  # estimators applying the same weights share diagnostics
                weights[key] = estimator.weights(batches[candidate])
        # Everything is computed and checked: now the accumulators change, all or nothing.
        self._moments.update(terms)
        self._third.update(terms)
        if self._bootstrap is not None:
            self._bootstrap.update(terms[:, self._boot_columns], start)
        for key, weight in weights.items():
            self._diagnostics[key].update(weight, batches[key[0]].unsupported_mass)
        self._reward_seen = (min(self._reward_seen[0], reward_low),
                             max(self._reward_seen[1], reward_high))

    def _check_slots(self, batch: Any) -> None:
        if self.kind != "slate":
            return
        if self._slots is None:
            self._slots = batch.slots
        elif batch.slots != self._slots:
            raise InvalidParameterError(
                f"every chunk must have {self._slots} slots, this one has {batch.slots}")

    def merge(self, other: Evaluation) -> None:
        """Add the events of another evaluation with the same configuration (a partition)."""
        if ([e.label for e in other.estimators], other.candidates, other.kind) != (
                [e.label for e in self.estimators], self.candidates, self.kind):
            raise InvalidParameterError("only evaluations of the same estimators and candidates "
                                        "can be merged")
        if (self._bootstrap is None) != (other._bootstrap is None):
            raise InvalidParameterError("cannot merge an evaluation with a bootstrap and one "
                                        "without")
        if self._slots and other._slots and self._slots != other._slots:
            raise InvalidParameterError(f"cannot merge slates of {other._slots} slots into "
                                        f"slates of {self._slots}")
        self._moments.merge(other._moments)
        self._third.merge(other._third)
        if self._bootstrap is not None:
            self._bootstrap.merge(other._bootstrap)
        for key, diagnostics in other._diagnostics.items():
            self._diagnostics[key].merge(diagnostics)
        self._reward_seen = (min(self._reward_seen[0], other._reward_seen[0]),
                             max(self._reward_seen[1], other._reward_seen[1]))
        self._slots = self._slots or other._slots

    @property
    def n(self) -> int:
        """Events added so far."""
        return self._moments.n

    def result(self, alpha: float = 0.05) -> Report:
        """Every estimate and lift with (1 - alpha) intervals.

        Raises :class:`~bandits.ope.errors.EmptyInputError` when no events were added.
        """
        alpha = check_alpha(alpha)
        if self.n == 0:
            raise EmptyInputError("no events were added to the evaluation")
        boot_means = self._bootstrap.means() if self._bootstrap is not None else None
        estimates, lifts = [], []
        for candidate in self.candidates:
            for estimator in self.estimators:
                estimate = self._estimate(candidate, estimator, alpha, boot_means)
                estimates.append(estimate)
                lifts.append(self._difference(
                    estimator, alpha, boot_means, candidate, "logging",
                    [(self._blocks[candidate, estimator.label], estimator, 1.0)],
                    [self._observed[estimator.observed_key()]],
                    self._third[candidate, estimator.label]))
        return Report(self.n, 1.0 - alpha, tuple(estimates), tuple(lifts))

    def compare(self, candidate: str, baseline: str, estimator: str,
                alpha: float = 0.05) -> Difference:
        """The paired difference ``candidate - baseline`` by the estimator labelled
        ``estimator``: Gaussian and, when bootstrapped, bootstrap intervals (the third
        co-moments across two candidates' terms are not kept, so no skew-corrected one)."""
        alpha = check_alpha(alpha)
        for name in (candidate, baseline):
            if name not in self.candidates:
                raise InvalidParameterError(f"unknown candidate {name!r}; have {self.candidates}")
        if estimator not in self._by_label:
            raise InvalidParameterError(
                f"unknown estimator {estimator!r}; have {list(self._by_label)}")
        if self.n == 0:
            raise EmptyInputError("no events were added to the evaluation")
        chosen = self._by_label[estimator]
        boot_means = self._bootstrap.means() if self._bootstrap is not None else None
        return self._difference(chosen, alpha, boot_means, candidate, baseline,
                                [(self._blocks[candidate, estimator], chosen, 1.0),
                                 (self._blocks[baseline, estimator], chosen, -1.0)], [])

    def _estimate(self, candidate: str, estimator: Estimator, alpha: float,
                  boot_means: np.ndarray | None) -> Estimate:
        block = self._blocks[candidate, estimator.label]
        mean = self._moments.mean[block]
        value = float(estimator.combine(mean))
        covariance = self._moments.covariance()[block, block]
        gradient = estimator.gradient(mean)
        error = delta_method_standard_error(gradient, covariance, self.n)
        third = self._third[candidate, estimator.label]
        skew = skewness(np.r_[gradient, 0.0], third.comoment, third.third, self.n)
        intervals = {"gaussian": gaussian_interval(value, error, alpha),
                     "skew_corrected": skew_corrected_interval(value, error, skew, self.n, alpha)}
        diagnostics = self._diagnostics[candidate, estimator.weight_key()].result()
        if self.empirical_likelihood and estimator.supports_empirical_likelihood:
            intervals["empirical_likelihood"] = empirical_likelihood_interval(
                self.n, mean[:2], self._moments.covariance(ddof=0)[block, block][:2, :2], alpha,
                reward_range=self.reward_range or self._reward_seen,
                weight_range=self._weight_range(candidate, estimator, diagnostics.weight_max),
                unit_mean=estimator.unit_mean_weights)
        if boot_means is not None and block.start in self._boot_index:
            samples = estimator.combine(boot_means[:, self._boot_slice(block)])
            intervals["bootstrap"] = percentile_interval(samples, alpha)
        return Estimate(candidate, estimator.label, value, error, intervals, diagnostics)

    def _boot_slice(self, block: slice) -> slice:
        start = self._boot_index[block.start]
        return slice(start, start + block.stop - block.start)

    def _weight_range(self, candidate: str, estimator: Estimator,
                      observed_max: float) -> tuple[float, float]:
        low, high = estimator.weight_bounds(self._slots or 1)
        limit = (self.max_weight.get(candidate) if isinstance(self.max_weight, Mapping)
                 else self.max_weight)
        if limit is not None:
            if observed_max > limit * (1.0 + 1e-12):
                raise InvalidParameterError(
                    f"max_weight {limit} for {candidate!r} is below an observed weight "
                    f"{observed_max}")
            high = min(high, float(limit))
        return (low, high)

    def _difference(self, estimator: Estimator, alpha: float, boot_means: np.ndarray | None,
                    candidate: str, baseline: str,
                    parts: list[tuple[slice, Estimator, float]],
                    observed: list[int], third: ThirdMoments | None = None) -> Difference:
        mean = self._moments.mean
        indices, gradient, values = [], [], []
        for block, part, sign in parts:
            values.append(float(part.combine(mean[block])))
            indices.extend(range(block.start, block.stop))
            gradient.extend(sign * part.gradient(mean[block]))
        for column in observed:
            values.append(float(mean[column]))
            indices.append(column)
            gradient.append(-1.0)
        covariance = self._moments.covariance()[np.ix_(indices, indices)]
        error = delta_method_standard_error(np.array(gradient), covariance, self.n)
        value = values[0] - values[1]
        intervals: dict[str, Interval] = {"gaussian": gaussian_interval(value, error, alpha)}
        if third is not None:  # a lift: the block's columns then its observed one, as indexed
            skew = skewness(np.array(gradient), third.comoment, third.third, self.n)
            intervals["skew_corrected"] = skew_corrected_interval(value, error, skew, self.n,
                                                                  alpha)
        if boot_means is not None and all(i in self._boot_index for i in indices):
            samples = np.zeros(boot_means.shape[0])
            for block, part, sign in parts:
                samples += sign * part.combine(boot_means[:, self._boot_slice(block)])
            for column in observed:
                samples -= boot_means[:, self._boot_index[column]]
            intervals["bootstrap"] = percentile_interval(samples, alpha)
        return Difference(candidate, baseline, estimator.label, value, values[0], values[1],
                          error, intervals)


def estimate(estimator: EstimatorSpec, *, alpha: float = 0.05, n_bootstrap: int = 0,
             random_state: RandomState | None = None, empirical_likelihood: bool = False,
             reward_range: tuple[float, float] | None = None, max_weight: float | None = None,
             **arrays: ArrayLike) -> Estimate:
    """One estimate on arrays held in memory: a one-chunk :class:`Evaluation`.

    ``arrays`` are the logged and candidate arrays together (e.g. ``reward``, ``propensity``,
    ``target_probability``); the other arguments are those of :class:`Evaluation`.
    """
    evaluation = Evaluation([estimator], n_bootstrap=n_bootstrap, random_state=random_state,
                            empirical_likelihood=empirical_likelihood, reward_range=reward_range,
                            max_weight=max_weight)
    evaluation.update(**arrays)
    return evaluation.result(alpha).estimates[0]
