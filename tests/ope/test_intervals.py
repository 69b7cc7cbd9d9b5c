"""Gaussian, skew-corrected, empirical-likelihood and percentile intervals: their defining
properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import f as f_distribution

from bandits.ope import Evaluation, empirical_likelihood_interval, estimate
from bandits.ope.intervals import (
    gaussian_interval,
    percentile_interval,
    skew_corrected_interval,
)
from tests.ope.conftest import logged_bandit


def _deterministic_target(n: int, seed: int, actions: int = 10, ctr=(0.3, 0.1)):
    """Uniform logger over ``actions``, target always action 0: weights in {0, actions}."""
    rng = np.random.default_rng(seed)
    action = rng.integers(0, actions, n)
    reward = (rng.random(n) < np.where(action == 0, *ctr)).astype(float)
    return {"reward": reward, "propensity": np.full(n, 1 / actions),
            "target_probability": (action == 0).astype(float)}


def test_one_event_has_no_interval_and_json_says_none():
    result = estimate("ips", reward=[1.0], propensity=[0.5], target_probability=[1.0],
                      empirical_likelihood=True, reward_range=(0, 1))
    assert result.value == 2.0 and math.isnan(result.standard_error)
    for interval in result.intervals.values():
        assert math.isnan(interval.lower) and math.isnan(interval.upper)
    encoded = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert encoded["intervals"]["gaussian"]["lower"] is None


def test_snips_with_no_positive_weight_is_undefined_not_an_error():
    result = estimate("snips", reward=[1.0, 0.0], propensity=[0.5, 0.5],
                      target_probability=[0.0, 0.0])
    assert math.isnan(result.value) and result.diagnostics.effective_sample_size == 0.0


def test_empirical_likelihood_on_the_loggers_own_logs_is_the_gaussian_interval():
    rng = np.random.default_rng(0)
    reward = (rng.random(4000) < 0.3).astype(float)
    result = estimate("ips", reward=reward, propensity=np.full(4000, 0.25),
                      target_probability=np.full(4000, 0.25), empirical_likelihood=True,
                      reward_range=(0, 1), max_weight=1.0)
    el, gaussian = result.intervals["empirical_likelihood"], result.intervals["gaussian"]
    width = gaussian.upper - gaussian.lower
    assert abs(el.lower - gaussian.lower) < 0.01 * width
    assert abs(el.upper - gaussian.upper) < 0.01 * width


def test_empirical_likelihood_tends_to_the_control_variate_interval():
    data = _deterministic_target(200_000, seed=1)
    w = data["target_probability"] / data["propensity"]
    wr = w * data["reward"]
    beta = np.cov(wr, w, ddof=0)[0, 1] / w.var()
    centre = wr.mean() - beta * (w.mean() - 1.0)
    half = math.sqrt(f_distribution.isf(0.05, 1, w.size - 1)
                     * (wr.var() - beta**2 * w.var()) / w.size)
    interval = estimate("ips", empirical_likelihood=True, reward_range=(0, 1), max_weight=10,
                        **data).intervals["empirical_likelihood"]
    assert interval.lower == pytest.approx(centre - half, rel=2e-3)
    assert interval.upper == pytest.approx(centre + half, rel=2e-3)


def test_empirical_likelihood_widens_for_weights_the_sample_may_lack():
    data = _deterministic_target(300, seed=2, actions=20, ctr=(0.5, 0.1))
    intervals = {bound: estimate("snips", empirical_likelihood=True, reward_range=(0, 1),
                                 max_weight=bound, **data).intervals["empirical_likelihood"]
                 for bound in (20.0, 200.0, math.inf)}
    assert intervals[20.0].upper <= intervals[200.0].upper <= intervals[math.inf].upper
    assert intervals[math.inf].upper > intervals[20.0].upper + 0.05
    for interval in intervals.values():
        assert 0.0 <= interval.lower <= interval.upper <= 1.0  # inside the reward range


def test_empirical_likelihood_for_clipped_and_slate_weights():
    data = logged_bandit(3000, seed=3)
    clipped = estimate({"name": "ips-clipped", "clip": 2.0}, empirical_likelihood=True, **data)
    interval = clipped.intervals["empirical_likelihood"]
    assert interval.lower < clipped.value < interval.upper
    slot = [logged_bandit(2000, seed=10 + k) for k in range(3)]  # a product logger and target
    slates = estimate("pi", empirical_likelihood=True, reward_range=(0, 3),
                      propensity=np.column_stack([s["propensity"] for s in slot]),
                      target_probability=np.column_stack([s["target_probability"] for s in slot]),
                      slot_reward=np.column_stack([s["reward"] for s in slot]))
    interval = slates.intervals["empirical_likelihood"]
    assert interval.lower < slates.value < interval.upper
    assert slates.diagnostics.weight_min > -2.0  # PI weights are bounded below by 1 - L
    assert "empirical_likelihood" not in estimate("dr", empirical_likelihood=True,
                                                  **data).intervals


def test_empirical_likelihood_with_constant_rewards_is_a_point():
    interval = empirical_likelihood_interval(10, np.array([2.0, 1.0]), np.zeros((2, 2)), 0.05,
                                             reward_range=(2.0, 2.0), weight_range=(0, 5))
    assert (interval.lower, interval.upper) == (2.0, 2.0)


def test_gaussian_interval_of_a_lift_is_paired():
    """Two intervals overlap although the paired difference is clearly positive."""
    data = logged_bandit(4000, seed=5)
    evaluation = Evaluation(["dr"])
    evaluation.update(**data)
    report = evaluation.result()
    estimate_, lift = report.estimate("target", "dr"), report.lift("target", "dr")
    reward = data["reward"]
    unpaired = math.sqrt(estimate_.standard_error**2 + reward.var(ddof=1) / reward.size)
    assert lift.standard_error < unpaired
    per_event = (data["q_target"] + data["target_probability"] / data["propensity"]
                 * (reward - data["q_logged"])) - reward
    assert lift.value == pytest.approx(per_event.mean(), abs=1e-12)
    assert lift.standard_error == pytest.approx(per_event.std(ddof=1) / math.sqrt(4000),
                                                rel=1e-9)


def test_percentile_interval_refuses_too_many_undefined_resamples():
    samples = np.r_[np.linspace(0, 1, 90), np.full(10, np.nan)]
    assert math.isnan(percentile_interval(samples, 0.05).lower)
    kept = percentile_interval(np.r_[np.linspace(0, 1, 99), np.nan], 0.05)
    assert kept.lower == pytest.approx(0.025) and kept.upper == pytest.approx(0.975)


def _hall(terms: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Hall's interval for the mean of ``terms``, written out from the paper's formulas."""
    n = terms.size
    mean, s = terms.mean(), terms.std(ddof=1)
    gamma = ((terms - mean) ** 3).mean() / s**3
    z = 1.959963984540054

    def w(u: float) -> float:  # solves T + g T^2/(3 sqrt n) + g^2 T^3/(27 n) + g/(6 sqrt n) = u
        # for W = T / sqrt(n) by bisection: the transform is increasing in T
        low, high = -50.0, 50.0
        for _ in range(200):
            t = (low + high) / 2
            value = (t + gamma * t**2 / (3 * math.sqrt(n)) + gamma**2 * t**3 / (27 * n)
                     + gamma / (6 * math.sqrt(n)))
            low, high = (t, high) if value < u else (low, t)
        return low / math.sqrt(n)

    return mean - s * w(z), mean - s * w(-z)


def test_skew_corrected_interval_is_halls_on_the_linearised_terms():
    rng = np.random.default_rng(11)
    n = 3000
    reward = np.where(rng.random(n) < 0.05, rng.lognormal(3.0, 0.8, n), 0.0)  # rare, large
    data = {"reward": reward, "propensity": np.full(n, 0.2),
            "target_probability": (rng.random(n) < 0.5).astype(float)}
    evaluation = Evaluation(["ips", "snips"])
    evaluation.update(**data)
    report = evaluation.result()
    w = data["target_probability"] / data["propensity"]
    ips = report.estimate("target", "ips").intervals["skew_corrected"]
    assert (ips.lower, ips.upper) == pytest.approx(_hall(w * reward), rel=1e-9)
    # SNIPS: Hall's interval of the delta method's linearised terms (w r - V w) / mean(w).
    snips = report.estimate("target", "snips")
    linear = (w * reward - snips.value * w) / w.mean()
    lower, upper = _hall(linear)
    found = snips.intervals["skew_corrected"]
    assert (found.lower, found.upper) == pytest.approx((lower + snips.value, upper + snips.value),
                                                       rel=1e-9)
    # The lift's: the paired per-event difference w r - r.
    lift = report.lift("target", "ips").intervals["skew_corrected"]
    assert (lift.lower, lift.upper) == pytest.approx(_hall(w * reward - reward), rel=1e-9)
    # Right-skewed terms: the interval reaches further above the estimate than below it.
    gaussian = report.estimate("target", "ips").intervals["gaussian"]
    value = report.estimate("target", "ips").value
    assert ips.upper - value > value - ips.lower
    assert ips.upper > gaussian.upper and ips.lower > gaussian.lower


def test_skew_corrected_interval_is_gaussian_without_skew_and_chunks_do_not_matter():
    rng = np.random.default_rng(12)
    n = 5000
    data = {"reward": rng.normal(size=n), "propensity": np.full(n, 0.5),
            "target_probability": np.full(n, 0.5)}
    result = estimate("ips", **data)
    gaussian, corrected = result.intervals["gaussian"], result.intervals["skew_corrected"]
    width = gaussian.upper - gaussian.lower
    assert abs(corrected.lower - gaussian.lower) < 0.01 * width
    assert abs(corrected.upper - gaussian.upper) < 0.01 * width
    assert skew_corrected_interval(1.0, 0.1, 0.0, 100, 0.05).upper == pytest.approx(
        gaussian_interval(1.0, 0.1, 0.05).upper)
    skewed = logged_bandit(3000, seed=13)
    skewed["reward"] = skewed["reward"] * rng.lognormal(2.0, 1.0, 3000)
    whole, parts = Evaluation(["dr", "snips"]), Evaluation(["dr", "snips"])
    whole.update(**skewed)
    for rows in np.array_split(np.arange(3000), [7, 1000, 2999]):
        parts.update(**{key: values[rows] for key, values in skewed.items()})
    for ours, theirs in zip(parts.result().estimates + parts.result().lifts,
                            whole.result().estimates + whole.result().lifts):
        a, b = ours.intervals["skew_corrected"], theirs.intervals["skew_corrected"]
        assert (a.lower, a.upper) == pytest.approx((b.lower, b.upper), rel=1e-9)


def test_skew_corrected_interval_edge_cases():
    assert skew_corrected_interval(2.0, 0.0, math.nan, 10, 0.05).lower == 2.0  # no spread: a point
    assert math.isnan(skew_corrected_interval(2.0, 0.5, math.nan, 2, 0.05).upper)
    assert math.isnan(skew_corrected_interval(math.nan, 0.5, 1.0, 10, 0.05).lower)
    # Extreme skew on few events still gives an ordered interval around the estimate.
    extreme = skew_corrected_interval(1.0, 0.5, 30.0, 10, 0.05)
    assert extreme.lower < 1.0 < extreme.upper
