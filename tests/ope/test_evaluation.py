"""Evaluations of several candidates: chunked equals one-shot, partitions merge, paired
comparisons, and a JSON-ready report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandits.ope import Evaluation, InvalidParameterError
from tests.ope.conftest import logged_bandit

ESTIMATORS = ["ips", {"name": "ips-clipped", "clip": 3}, "snips", "dm", "dr", "sndr",
              {"name": "switch-dr", "threshold": 3}, {"name": "dr-os", "shrinkage": 4}]


def _candidates(n: int, seed: int) -> tuple[dict, dict]:
    """Logged arrays and two candidates (the second with unsupported mass) on the same events."""
    first, second = logged_bandit(n, seed), logged_bandit(n, seed + 1, unsupported=True)
    logged = {key: first[key] for key in ("reward", "propensity", "q_logged")}
    candidates = {
        "model-a": {"target_probability": first["target_probability"],
                    "q_target": first["q_target"]},
        "model-b": {"target_probability": second["target_probability"] * 0.9,
                    "q_target": second["q_target"],
                    "unsupported_mass": second["unsupported_mass"]},
    }
    return logged, candidates


def _evaluation() -> Evaluation:
    return Evaluation(ESTIMATORS, candidates=["model-a", "model-b"], n_bootstrap=100,
                      bootstrap_estimators=["snips", "dr"], random_state=7,
                      empirical_likelihood=True, reward_range=(0, 1))


def _feed(evaluation: Evaluation, logged: dict, candidates: dict, rows) -> None:
    evaluation.update(
        candidates={name: {key: values[rows] for key, values in arrays.items()}
                    for name, arrays in candidates.items()},
        **{key: values[rows] for key, values in logged.items()})


def _assert_reports_match(chunked: dict, whole: dict) -> None:
    """Equal to rounding; bootstrap sums are float32 products, so equal to ~1e-6 absolute."""
    assert chunked["n"] == whole["n"]
    for kind in ("estimates", "lifts"):
        for ours, theirs in zip(chunked[kind], whole[kind]):
            assert ours["value"] == pytest.approx(theirs["value"], rel=1e-12, abs=1e-14)
            assert ours["standard_error"] == pytest.approx(theirs["standard_error"], rel=1e-9)
            for method, interval in theirs["intervals"].items():
                tolerance = {"abs": 1e-6} if method == "bootstrap" else {"rel": 1e-8, "abs": 1e-12}
                for bound in ("lower", "upper"):
                    assert ours["intervals"][method][bound] == pytest.approx(interval[bound],
                                                                             **tolerance)
            if kind == "estimates":
                _assert_same_diagnostics(ours["diagnostics"], theirs["diagnostics"])


def _assert_same_diagnostics(ours: dict, theirs: dict) -> None:
    for key, value in theirs.items():
        if isinstance(value, (dict, float)):
            assert ours[key] == pytest.approx(value, rel=1e-12)
        else:
            assert ours[key] == value


def test_chunked_equals_one_shot_for_every_estimate_interval_and_diagnostic():
    logged, candidates = _candidates(6000, seed=1)
    whole, chunked = _evaluation(), _evaluation()
    _feed(whole, logged, candidates, slice(None))
    for rows in np.array_split(np.arange(6000), [1, 2, 4096, 4097, 5000]):
        _feed(chunked, logged, candidates, rows)
    _assert_reports_match(chunked.result().to_dict(), whole.result().to_dict())


def test_partitions_merge_into_the_whole():
    logged, candidates = _candidates(5000, seed=2)
    whole, first, second = _evaluation(), _evaluation(), _evaluation()
    _feed(whole, logged, candidates, slice(None))
    second.update(start=3000, candidates={name: {key: values[3000:] for key, values in
                                                 arrays.items()}
                                          for name, arrays in candidates.items()},
                  **{key: values[3000:] for key, values in logged.items()})
    _feed(first, logged, candidates, slice(0, 3000))
    first.merge(second)
    _assert_reports_match(first.result().to_dict(), whole.result().to_dict())
    with pytest.raises(InvalidParameterError, match="same estimators and candidates"):
        first.merge(Evaluation(["ips"], candidates=["model-a", "model-b"]))


def test_report_has_every_estimate_lift_and_diagnostic_as_json():
    logged, candidates = _candidates(3000, seed=3)
    evaluation = _evaluation()
    _feed(evaluation, logged, candidates, slice(None))
    report = evaluation.result(alpha=0.1)
    encoded = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert encoded["level"] == pytest.approx(0.9)
    assert len(encoded["estimates"]) == len(encoded["lifts"]) == 2 * len(ESTIMATORS)
    snips = report.estimate("model-b", "snips")
    assert set(snips.intervals) == {"gaussian", "skew_corrected", "empirical_likelihood",
                                    "bootstrap"}
    assert set(report.estimate("model-b", "dm").intervals) == {"gaussian", "skew_corrected"}
    assert set(report.lift("model-a", "dr").intervals) == {"gaussian", "skew_corrected",
                                                           "bootstrap"}
    diagnostics = snips.diagnostics
    unsupported = candidates["model-b"]["unsupported_mass"]
    assert diagnostics.unsupported_share == pytest.approx((unsupported > 0).mean())
    assert diagnostics.unsupported_mass_mean == pytest.approx(unsupported.mean())
    assert report.estimate("model-a", "snips").diagnostics.unsupported_share is None
    # estimators that apply the same weights share diagnostics; clipping changes them
    assert report.estimate("model-a", "dr").diagnostics is not None
    assert report.estimate("model-a", "ips-clipped(clip=3.0)").diagnostics.weight_max <= 3.0
    with pytest.raises(InvalidParameterError, match="no estimate of 'model-c'"):
        report.estimate("model-c", "snips")


def test_paired_comparison_between_candidates():
    logged, candidates = _candidates(4000, seed=4)
    evaluation = _evaluation()
    _feed(evaluation, logged, candidates, slice(None))
    report = evaluation.result()
    difference = evaluation.compare("model-a", "model-b", "snips")
    a, b = report.estimate("model-a", "snips"), report.estimate("model-b", "snips")
    assert difference.value == pytest.approx(a.value - b.value, abs=1e-14)
    assert (difference.candidate, difference.baseline) == ("model-a", "model-b")
    assert set(difference.intervals) == {"gaussian", "bootstrap"}
    same = evaluation.compare("model-a", "model-a", "dr")
    assert same.value == 0.0 and same.standard_error == 0.0
    with pytest.raises(InvalidParameterError, match="unknown candidate 'nope'"):
        evaluation.compare("nope", "model-a", "dr")
    with pytest.raises(InvalidParameterError, match="unknown estimator 'ipw'"):
        evaluation.compare("model-a", "model-b", "ipw")


def test_one_candidate_takes_its_arrays_as_keywords():
    data = logged_bandit(500, seed=5)
    by_keyword, by_mapping = Evaluation(["dr"]), Evaluation(["dr"], candidates=["target"])
    by_keyword.update(**data)
    by_mapping.update(candidates={"target": {"target_probability": data["target_probability"],
                                             "q_target": data["q_target"]}},
                      **{key: data[key] for key in ("reward", "propensity", "q_logged")})
    assert by_keyword.result().to_dict() == by_mapping.result().to_dict()
