"""Single-slot estimators: hand-computed values, limits between them, the A/A check, and one
generic contract every registered estimator must meet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandits.ope import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNDR,
    SNIPS,
    BanditBatch,
    ClippedIPS,
    DRos,
    Evaluation,
    SwitchDR,
    estimate,
    make_estimator,
)
from tests.ope.conftest import logged_bandit

# Computed by hand from conftest.TINY: w = [2, 0, 2, 1], r - q = [.5, -.25, .5, -.25].
HAND = [
    (IPS(), (2 + 0 + 2 + 0) / 4),
    (ClippedIPS(clip=1.5), (1.5 + 1.5) / 4),
    (SNIPS(), 4 / 5),
    (DM(), (0.75 + 0.5 + 0.5 + 0.25) / 4),
    (DR(), (1.75 + 0.5 + 1.5 + 0.0) / 4),
    (SNDR(), 0.5 + (1.0 + 0 + 1.0 - 0.25) / 5),
    (SwitchDR(threshold=1.5), (0.75 + 0.5 + 0.5 + (0.25 - 0.25)) / 4),
    (DRos(shrinkage=2.0), (2.0 + 2 / 3 * 0.5 + 2 / 3 * 0.5 - 2 / 3 * 0.25) / 4),
]


@pytest.mark.parametrize("estimator, expected", HAND, ids=lambda item: getattr(item, "label", ""))
def test_hand_computed_values(tiny, estimator, expected):
    batch = BanditBatch.from_arrays(**tiny)
    assert estimator.estimate(batch) == pytest.approx(expected, abs=1e-15)
    assert estimate(estimator, **tiny).value == pytest.approx(expected, abs=1e-15)


def test_hand_computed_gaussian_intervals(tiny):
    z = 1.959963984540054
    ips = estimate("ips", **tiny)
    # terms w r = [2, 0, 2, 0]: sample variance 4/3, standard error sqrt(4/3 / 4).
    assert ips.standard_error == pytest.approx(math.sqrt(1 / 3), rel=1e-12)
    assert ips.intervals["gaussian"].lower == pytest.approx(1 - z * math.sqrt(1 / 3), rel=1e-12)
    snips = estimate("snips", **tiny)
    # delta method: sum w^2 (r - 0.8)^2 / (n - 1) / mean(w)^2 / n = (0.96 / 3) / 1.5625 / 4.
    assert snips.standard_error == pytest.approx(math.sqrt(0.96 / 3 / 1.5625 / 4), rel=1e-12)
    assert snips.intervals["gaussian"].upper == pytest.approx(
        0.8 + z * math.sqrt(0.2048 / 4), rel=1e-12)


def test_hand_computed_paired_lift(tiny):
    evaluation = Evaluation(["ips"])
    evaluation.update(**tiny)
    lift = evaluation.result().lift("target", "ips")
    # per event w r - r = [1, 0, 1, 0]: mean 0.5, sample variance 1/3.
    assert (lift.value, lift.candidate_value, lift.baseline_value) == (0.5, 1.0, 0.5)
    assert lift.standard_error == pytest.approx(math.sqrt(1 / 3 / 4), rel=1e-12)
    assert lift.baseline == "logging"


def test_logging_policy_on_its_own_logs_gives_the_logged_mean():
    data = logged_bandit(5000, seed=3)
    data["target_probability"] = data["propensity"].copy()
    evaluation = Evaluation(["ips", "snips"], n_bootstrap=50, random_state=1)
    for begin in range(0, 5000, 777):
        evaluation.update(**{name: values[begin: begin + 777] for name, values in data.items()})
    report = evaluation.result()
    logged_mean = data["reward"].mean()
    for name in ("ips", "snips"):
        assert abs(report.estimate("target", name).value - logged_mean) <= 1e-12
        lift = report.lift("target", name)
        assert abs(lift.value) <= 1e-12
        assert lift.intervals["gaussian"].upper - lift.intervals["gaussian"].lower <= 1e-9


def test_limits_between_estimators():
    batch = BanditBatch.from_arrays(**logged_bandit(2000, seed=5))
    dr, dm, ips = DR().estimate(batch), DM().estimate(batch), IPS().estimate(batch)
    assert DRos(shrinkage=0.0).estimate(batch) == pytest.approx(dm, abs=1e-14)
    assert DRos(shrinkage=math.inf).estimate(batch) == pytest.approx(dr, abs=1e-14)
    assert SwitchDR(threshold=math.inf).estimate(batch) == pytest.approx(dr, abs=1e-14)
    assert SwitchDR(threshold=1e-9).estimate(batch) == pytest.approx(dm, abs=1e-14)
    assert ClippedIPS(clip=batch.weight.max()).estimate(batch) == pytest.approx(ips, abs=1e-14)
    # DR with a model that predicts the logged reward exactly is DM.
    exact = BanditBatch.from_arrays(reward=batch.reward, propensity=batch.propensity,
                                    target_probability=batch.target_probability,
                                    q_logged=batch.reward, q_target=batch.q_target)
    assert DR().estimate(exact) == pytest.approx(dm, abs=1e-14)


@pytest.mark.parametrize("name", sorted(name for name, cls in ESTIMATORS.items()
                                        if cls.kind == "bandit"))
def test_every_single_slot_estimator_meets_the_contract(name):
    params = {"ips-clipped": {"clip": 5.0}, "switch-dr": {"threshold": 5.0},
              "dr-os": {"shrinkage": 5.0}}.get(name, {})
    estimator = make_estimator(name, **params)
    data = logged_bandit(3000, seed=11)
    batch = BanditBatch.from_arrays(**data)
    terms = estimator.terms(batch)
    assert terms.shape == (3000, estimator.n_terms) and np.isfinite(terms).all()
    # streaming: 7 uneven chunks give the one-shot value, standard error and diagnostics
    whole = Evaluation([estimator])
    whole.update(**data)
    parts = Evaluation([estimator])
    for chunk in np.array_split(np.arange(3000), [5, 400, 401, 1500, 2999]):
        parts.update(**{key: values[chunk] for key, values in data.items()})
    one, many = whole.result().estimates[0], parts.result().estimates[0]
    assert many.value == pytest.approx(one.value, rel=1e-12, abs=1e-15)
    assert many.standard_error == pytest.approx(one.standard_error, rel=1e-9)
    assert many.diagnostics.weight_quantiles == pytest.approx(one.diagnostics.weight_quantiles)
    assert one.intervals["gaussian"].lower < one.value < one.intervals["gaussian"].upper
    # the A/A check: estimators without a model term return the logged mean for the logger
    if name in ("ips", "snips", "ips-clipped"):
        data["target_probability"] = data["propensity"]
        assert estimate(estimator, **data).value == pytest.approx(data["reward"].mean(), abs=1e-12)


def test_a_tiny_self_normalising_denominator_is_no_error():
    """Found by hypothesis: a mean weight of 3e-240 squared underflows to 0 in the gradient."""
    for name in ("snips", "sndr"):
        result = estimate(name, reward=[0.0, 0.0], propensity=[1.0, 1.0],
                          target_probability=[0.0, 6.9e-240], q_logged=[0.0, 0.0],
                          q_target=[0.0, 0.0])
        assert result.value == 0.0
