"""Weight diagnostics: hand-computed values, exact quantiles for discrete weights, bounded error
otherwise, and constant memory across chunks."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.ope import WeightDiagnostics, estimate


def test_hand_computed_diagnostics(tiny):
    tiny["unsupported_mass"] = np.array([0.0, 0.5, 0.0, 0.1])
    diagnostics = estimate("ips", **tiny).diagnostics
    # w = [2, 0, 2, 1]
    assert diagnostics.n == 4
    assert diagnostics.effective_sample_size == pytest.approx(25 / 9)
    assert (diagnostics.weight_mean, diagnostics.weight_min, diagnostics.weight_max) == (
        1.25, 0.0, 2.0)
    assert diagnostics.weight_quantiles == {"p50": 1.0, "p90": 2.0, "p99": 2.0, "p99.9": 2.0}
    assert diagnostics.zero_weight_share == 0.25
    assert diagnostics.unsupported_share == 0.5
    assert diagnostics.unsupported_mass_mean == pytest.approx(0.15)


def test_quantiles_of_discrete_weights_are_exact():
    weights = np.repeat([0.0, 1.0, 10.0, 50.0], [500, 400, 90, 10])
    accumulator = WeightDiagnostics()
    for chunk in np.array_split(np.random.default_rng(0).permutation(weights), 7):
        accumulator.update(chunk)
    expected = {"p50": 0.0, "p90": 1.0, "p99": 10.0, "p99.9": 50.0}
    assert accumulator.result().weight_quantiles == expected


def test_quantiles_of_continuous_weights_are_within_0_6_percent():
    weights = np.random.default_rng(1).lognormal(sigma=2.0, size=100_000)
    accumulator = WeightDiagnostics()
    accumulator.update(weights)
    result = accumulator.result()
    for key, level in {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}.items():
        exact = np.quantile(weights, level, method="inverted_cdf")
        assert result.weight_quantiles[key] == pytest.approx(exact, rel=0.006)
    assert result.weight_max == weights.max()


def test_signed_weights_and_extremes():
    weights = np.array([-2.0, -1.0, 0.0, 1e-12, 3.0, 1e12])
    accumulator = WeightDiagnostics()
    accumulator.update(weights)
    result = accumulator.result()
    # ranks ceil(q n) of [-2, -1, 0, 1e-12, 3, 1e12]: p50 is the third, the rest the sixth
    assert result.weight_quantiles == {"p50": 0.0, "p90": 1e12, "p99": 1e12, "p99.9": 1e12}
    lower = WeightDiagnostics()
    lower.update(np.array([-2.0, -1.0, 1e-12, 3.0]))
    assert lower.result().weight_quantiles["p50"] == -1.0
    assert result.weight_min == -2.0


def test_memory_does_not_grow_with_events():
    accumulator = WeightDiagnostics()
    accumulator.update(np.ones(10))
    sizes = [array.nbytes for array in vars(accumulator._streams[0]).values()
             if isinstance(array, np.ndarray)]
    for _ in range(20):
        accumulator.update(np.random.default_rng(2).exponential(size=50_000))
    assert sizes == [array.nbytes for array in vars(accumulator._streams[0]).values()
                     if isinstance(array, np.ndarray)]
    assert accumulator.result().n == 1_000_010
