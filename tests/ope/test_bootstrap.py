"""The streaming Poisson bootstrap: seeded, independent of chunking, equal to the naive
per-resample computation, and re-normalising self-normalised estimators in every resample."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.ope import SNIPS, BanditBatch, Evaluation, PoissonBootstrap, estimate
from bandits.ope.bootstrap import BLOCK, COUNT_CELLS
from tests.ope.conftest import logged_bandit


def test_counts_follow_poisson_one_rounded_to_1_256():
    assert sum(COUNT_CELLS) == 256
    assert np.array(COUNT_CELLS) / 256 == pytest.approx(
        [0.3679, 0.3679, 0.1839, 0.0613, 0.0153, 0.0031], abs=0.002)
    bootstrap = PoissonBootstrap(500, 1, random_state=3)
    counts = bootstrap._counts(0)
    frequencies = np.bincount(counts.astype(int).ravel(), minlength=6) / counts.size
    assert frequencies == pytest.approx(np.array(COUNT_CELLS) / 256, abs=0.002)
    assert counts.mean() == pytest.approx(257 / 256, abs=0.005)
    assert counts.var() == pytest.approx(1.0, abs=0.01)


def test_sums_equal_the_naive_computation_with_the_same_counts():
    rng = np.random.default_rng(0)
    terms = rng.normal(size=(BLOCK + 1000, 3)) * [1.0, 50.0, 1e-3] + [0.5, 100.0, 0.0]
    bootstrap = PoissonBootstrap(64, 3, random_state=9)
    bootstrap.update(terms)
    counts = np.hstack([bootstrap._counts(0).astype(np.float64),
                        bootstrap._counts(1)[:, :1000].astype(np.float64)])
    naive = np.array([counts[b] @ terms for b in range(64)])  # a loop over resamples
    np.testing.assert_allclose(bootstrap.sums, naive, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(bootstrap.sizes, counts.sum(axis=1))


def test_independent_of_chunking_and_reproducible():
    terms = np.random.default_rng(1).normal(size=(3 * BLOCK + 17, 2))
    aligned, uneven, other_seed = (PoissonBootstrap(100, 2, random_state=seed)
                                   for seed in (5, 5, 6))
    whole = PoissonBootstrap(100, 2, random_state=5)
    whole.update(terms)
    for begin in range(0, terms.shape[0], BLOCK):  # block-aligned chunks: the same arithmetic
        aligned.update(terms[begin: begin + BLOCK])
    np.testing.assert_array_equal(aligned.sums, whole.sums)
    for chunk in np.array_split(np.arange(terms.shape[0]), [1, 100, 5000, 5001, 9000]):
        uneven.update(terms[chunk])
    np.testing.assert_allclose(uneven.sums, whole.sums, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(uneven.sizes, whole.sizes)
    other_seed.update(terms)
    assert not np.allclose(other_seed.sums, whole.sums)


def test_partitions_merge_into_the_whole_stream():
    terms = np.random.default_rng(2).normal(size=(10_000, 2))
    whole = PoissonBootstrap(50, 2, random_state=np.random.SeedSequence(8))
    whole.update(terms)
    first = PoissonBootstrap(50, 2, random_state=np.random.SeedSequence(8))
    second = PoissonBootstrap(50, 2, random_state=np.random.SeedSequence(8))
    second.update(terms[6000:], start=6000)  # another worker's partition
    first.update(terms[:6000])
    first.merge(second)
    np.testing.assert_allclose(first.sums, whole.sums, rtol=1e-5, atol=1e-4)
    assert first.events == 10_000


def test_generator_seeds_are_drawn_once():
    terms = np.ones((10, 1))
    one = PoissonBootstrap(10, 1, random_state=np.random.default_rng(4))
    two = PoissonBootstrap(10, 1, random_state=np.random.default_rng(4))
    one.update(terms)
    two.update(terms)
    np.testing.assert_array_equal(one.sums, two.sums)


def test_self_normalised_estimates_are_renormalised_per_resample():
    data = logged_bandit(3000, seed=4)
    evaluation = Evaluation(["snips"], n_bootstrap=400, random_state=1)
    evaluation.update(**data)
    means = evaluation._bootstrap.means()
    block = evaluation._boot_slice(evaluation._blocks["target", "snips"])
    resampled = SNIPS().combine(means[:, block])
    # each resample's SNIPS is a weighted mean of rewards, so it stays within them
    assert resampled.min() >= 0.0 and resampled.max() <= 1.0
    result = evaluation.result().estimate("target", "snips")
    assert result.value == SNIPS().estimate(BanditBatch.from_arrays(**data))
    assert result.value != pytest.approx(resampled.mean(), abs=1e-9)  # the point, not the mean
    lower, upper = np.quantile(resampled, [0.025, 0.975])
    assert (result.intervals["bootstrap"].lower, result.intervals["bootstrap"].upper) == (
        pytest.approx(lower), pytest.approx(upper))
    # and the bootstrap agrees with the delta method on a sample this size
    gaussian = result.intervals["gaussian"]
    assert result.intervals["bootstrap"].lower == pytest.approx(gaussian.lower, abs=0.01)
    assert result.intervals["bootstrap"].upper == pytest.approx(gaussian.upper, abs=0.01)


def test_bootstrap_intervals_of_an_evaluation_do_not_depend_on_chunks():
    data = logged_bandit(9000, seed=6)
    whole = estimate("dr", n_bootstrap=200, random_state=2, **data)
    evaluation = Evaluation(["dr"], n_bootstrap=200, random_state=2)
    for begin in range(0, 9000, 1234):
        evaluation.update(**{key: values[begin: begin + 1234] for key, values in data.items()})
    chunked = evaluation.result().estimates[0]
    assert chunked.intervals["bootstrap"].lower == pytest.approx(
        whole.intervals["bootstrap"].lower, rel=1e-6)
    assert chunked.intervals["bootstrap"].upper == pytest.approx(
        whole.intervals["bootstrap"].upper, rel=1e-6)
