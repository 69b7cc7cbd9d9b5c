"""Property-based tests (hypothesis) of the estimators over arbitrary valid logs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bandits.ope import (
    DR,
    IPS,
    PI,
    SNIPS,
    BanditBatch,
    Evaluation,
    Moments,
    SlateBatch,
    estimate,
)

finite = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False, allow_subnormal=False)
propensities = st.floats(min_value=0.01, max_value=1.0)
probabilities = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def logs(draw, min_size: int = 1, max_size: int = 40):
    n = draw(st.integers(min_value=min_size, max_value=max_size))

    def column(elements):
        return np.array(draw(st.lists(elements, min_size=n, max_size=n)))

    return {"reward": column(finite), "propensity": column(propensities),
            "target_probability": column(probabilities), "q_logged": column(finite),
            "q_target": column(finite)}


@st.composite
def splits(draw, data):
    n = data["reward"].shape[0]
    cuts = draw(st.lists(st.integers(min_value=0, max_value=n), max_size=4))
    return sorted(cuts)


ALL = ["ips", {"name": "ips-clipped", "clip": 2.0}, "snips", "dm", "dr", "sndr",
       {"name": "switch-dr", "threshold": 2.0}, {"name": "dr-os", "shrinkage": 1.0}]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_chunked_equals_one_shot(data):
    arrays = data.draw(logs(min_size=2))
    cuts = data.draw(splits(arrays))
    whole, parts = Evaluation(ALL), Evaluation(ALL)
    whole.update(**arrays)
    for rows in np.split(np.arange(arrays["reward"].size), cuts):
        if rows.size:
            parts.update(**{key: values[rows] for key, values in arrays.items()})
    for ours, theirs in zip(parts.result().estimates, whole.result().estimates):
        np.testing.assert_allclose(ours.value, theirs.value, rtol=1e-9, atol=1e-9)
        # Variances, not standard errors: where the true variance is 0, rounding leaves ~1e-15,
        # whose square root (~3e-8) would fail an absolute test that the variance passes.
        np.testing.assert_allclose(ours.standard_error ** 2, theirs.standard_error ** 2, rtol=1e-6,
                                   atol=1e-12)
        assert ours.diagnostics.n == theirs.diagnostics.n


@settings(max_examples=100, deadline=None)
@given(logs())
def test_the_logger_evaluated_on_its_own_logs_gives_the_logged_mean(arrays):
    arrays["target_probability"] = arrays["propensity"]
    batch = BanditBatch.from_arrays(**arrays)
    mean = arrays["reward"].mean()
    assert abs(IPS().estimate(batch) - mean) <= 1e-12
    assert abs(SNIPS().estimate(batch) - mean) <= 1e-12


@settings(max_examples=100, deadline=None)
@given(logs())
def test_snips_is_a_weighted_mean_of_the_rewards(arrays):
    batch = BanditBatch.from_arrays(**arrays)
    value = SNIPS().estimate(batch)
    if batch.weight.sum() > 0:
        assert arrays["reward"].min() - 1e-9 <= value <= arrays["reward"].max() + 1e-9
    else:
        assert np.isnan(value)


@settings(max_examples=100, deadline=None)
@given(logs(min_size=2))
def test_gaussian_intervals_are_centred_on_the_estimate(arrays):
    for name in ("ips", "dr"):
        result = estimate(name, **arrays)
        interval = result.intervals["gaussian"]
        assert interval.lower <= result.value <= interval.upper
        np.testing.assert_allclose(result.value - interval.lower, interval.upper - result.value,
                                   rtol=1e-9, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(logs())
def test_dr_with_an_exact_model_of_the_logged_reward_is_dm(arrays):
    arrays["q_logged"] = arrays["reward"]
    batch = BanditBatch.from_arrays(**arrays)
    assert abs(DR().estimate(batch) - arrays["q_target"].mean()) <= 1e-12


@settings(max_examples=100, deadline=None)
@given(logs())
def test_pi_with_a_single_slot_is_ips(arrays):
    slate = SlateBatch.from_arrays(reward=arrays["reward"],
                                   propensity=arrays["propensity"][:, None],
                                   target_probability=arrays["target_probability"][:, None])
    single = BanditBatch.from_arrays(**arrays)
    assert abs(PI().estimate(slate) - IPS().estimate(single)) <= 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=30),
       st.integers(min_value=0, max_value=30))
def test_moments_merge_like_one_pass(rows, cut):
    terms = np.array(rows)
    whole, left, right = Moments(3), Moments(3), Moments(3)
    whole.update(terms)
    left.update(terms[:cut])
    right.update_rows(terms[cut:].T.copy())  # the (terms, events) layout, centred in place
    left.merge(right)
    assert left.n == whole.n
    np.testing.assert_allclose(left.mean, whole.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(left.comoment, whole.comoment, rtol=1e-9, atol=1e-9)
