"""Bad input is refused with a ValueError subclass whose message names the problem, and a refused
chunk leaves an evaluation unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandits.ope import (
    CrossFitRidge,
    EmptyInputError,
    Evaluation,
    InvalidParameterError,
    InvalidProbabilityError,
    LengthMismatchError,
    MissingInputError,
    NonFiniteError,
    OPEInputError,
    PerSlotEvaluation,
    ShapeError,
    UnknownEstimatorError,
    estimate,
    make_estimator,
)


@pytest.mark.parametrize("field, value, error, message", [
    ("propensity", [0.5, 0.0, 0.5, 0.5], InvalidProbabilityError,
     "propensity must be in (0, 1]: propensity[1] = 0.0 (1 of 4 values out of range)"),
    ("propensity", [0.5, 0.5, 1.5, -0.1], InvalidProbabilityError,
     "propensity[2] = 1.5 (2 of 4 values out of range)"),
    ("propensity", [math.nan, 0.5, 0.5, 0.5], InvalidProbabilityError, "propensity[0] = nan"),
    ("target_probability", [0.5, 1.0000001, 0.5, 0.5], InvalidProbabilityError,
     "target_probability must be in [0, 1]: target_probability[1] = 1.0000001"),
    ("reward", [1.0, math.nan, 0.0, math.inf], NonFiniteError,
     "reward must be finite: reward[1] = nan (2 of 4 values are NaN or inf)"),
    ("q_logged", [0.0, 0.0, -math.inf, 0.0], NonFiniteError, "q_logged[2] = -inf"),
    ("q_target", [0.0, 0.0, 0.0], LengthMismatchError,
     "arrays describing the same events differ in length (reward: 4, propensity: 4, "
     "target_probability: 4, q_logged: 4, q_target: 3)"),
    ("unsupported_mass", [0.0, 0.0, 2.0, 0.0], InvalidProbabilityError,
     "unsupported_mass[2] = 2.0"),
    ("reward", [[1.0], [0.0], [1.0], [0.0]], ShapeError,
     "reward must have shape (n,), got shape (4, 1)"),
    ("reward", ["a", "b", "c", "d"], ShapeError, "reward must be an array of numbers"),
])
def test_bad_arrays_are_named(tiny, field, value, error, message):
    tiny[field] = value
    with pytest.raises(error) as caught:
        estimate("dr", **tiny)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, OPEInputError)


def test_empty_input():
    with pytest.raises(EmptyInputError, match="no events"):
        estimate("ips", reward=[], propensity=[], target_probability=[])
    with pytest.raises(EmptyInputError, match="no events were added"):
        Evaluation(["ips"]).result()


def test_estimator_names_and_parameters():
    with pytest.raises(UnknownEstimatorError, match="unknown estimator 'ipw'; known: dm, dr, "):
        make_estimator("ipw")
    with pytest.raises(UnknownEstimatorError, match="needs a name"):
        make_estimator({"clip": 3})
    with pytest.raises(InvalidParameterError, match="'switch-dr' needs threshold"):
        make_estimator("switch-dr")
    with pytest.raises(InvalidParameterError, match=r"'ips' does not take clip \(parameters: none"):
        make_estimator({"name": "ips", "clip": 3})
    with pytest.raises(InvalidParameterError, match="clip must be > 0, got -1"):
        make_estimator({"name": "ips-clipped", "clip": -1})
    with pytest.raises(InvalidParameterError, match="threshold must be a number"):
        make_estimator({"name": "switch-dr", "threshold": "high"})
    with pytest.raises(InvalidParameterError, match="top_k must be a positive integer"):
        make_estimator({"name": "rips", "top_k": 0})
    assert make_estimator({"name": "dr-os", "shrinkage": 0}).label == "dr-os(shrinkage=0.0)"


def test_missing_model_predictions(tiny):
    del tiny["q_logged"]
    with pytest.raises(MissingInputError, match="estimator 'dr' needs q_logged"):
        estimate("dr", **tiny)
    with pytest.raises(MissingInputError, match="slot_reward"):
        estimate("iips", reward=[1.0], propensity=[[0.5, 0.5]], target_probability=[[1, 1]])


@pytest.mark.parametrize("kwargs, message", [
    ({"estimators": ["ips", "pi"]}, "single-slot and slate estimators cannot share"),
    ({"estimators": ["ips", "ips"]}, "estimator labels must differ"),
    ({"estimators": []}, "at least one estimator"),
    ({"estimators": ["ips"], "candidates": ["a", "a"]}, "candidates must be distinct"),
    ({"estimators": ["ips"], "n_bootstrap": 100}, "the bootstrap needs an explicit random_state"),
    ({"estimators": ["ips"], "n_bootstrap": 1, "random_state": 0}, "n_resamples must be"),
    ({"estimators": ["ips"], "n_bootstrap": 10, "random_state": -3}, "random_state must be >= 0"),
    ({"estimators": ["ips"], "n_bootstrap": 10, "random_state": 0,
      "bootstrap_estimators": ["dr"]}, "bootstrap_estimators ['dr'] are not among"),
    ({"estimators": ["ips"], "reward_range": (1, 0)}, "reward_range must be finite with low"),
    ({"estimators": ["ips"], "max_weight": -1}, "max_weight must be > 0, got -1"),
    ({"estimators": ["ips"], "max_weight": {"target": "big"}}, "max_weight must be a number"),
])
def test_bad_evaluation_settings(kwargs, message):
    with pytest.raises(InvalidParameterError) as caught:
        Evaluation(**kwargs)
    assert message in str(caught.value)


def test_bad_chunks_for_an_evaluation(tiny):
    evaluation = Evaluation(["ips"], candidates=["a", "b"])
    with pytest.raises(MissingInputError, match=r"candidates=\{name"):
        evaluation.update(**tiny)
    arrays = {"target_probability": tiny.pop("target_probability")}
    tiny.pop("q_target")
    with pytest.raises(InvalidParameterError, match=r"missing \['b'\], unexpected \['c'\]"):
        evaluation.update(candidates={"a": arrays, "c": arrays}, **tiny)
    with pytest.raises(InvalidParameterError, match=r"unknown logged array\(s\) \['rewards'\]"):
        evaluation.update(candidates={"a": arrays, "b": arrays}, rewards=tiny["reward"],
                          propensity=tiny["propensity"])
    with pytest.raises(InvalidParameterError, match="unknown array"):
        evaluation.update(candidates={"a": arrays, "b": {"target": [1, 1, 1, 1]}}, **tiny)
    with pytest.raises(InvalidParameterError, match="alpha must be strictly between 0 and 1"):
        evaluation.result(alpha=1.0)
    ranged = Evaluation(["ips"], reward_range=(0.0, 0.5))
    with pytest.raises(InvalidParameterError, match=r"rewards in \[0.0, 1.0\] fall outside"):
        ranged.update(**tiny, **arrays)


def test_a_refused_chunk_changes_nothing(tiny):
    evaluation = Evaluation(["ips", "dr"], candidates=["a", "b"], n_bootstrap=20, random_state=0)
    good = {"target_probability": tiny["target_probability"], "q_target": tiny["q_target"]}
    logged = {key: tiny[key] for key in ("reward", "propensity", "q_logged")}
    evaluation.update(candidates={"a": good, "b": good}, **logged)
    before = evaluation.result().to_dict()
    bad = {**good, "target_probability": [0.5, 0.5, 7.0, 0.5]}
    with pytest.raises(InvalidProbabilityError):
        evaluation.update(candidates={"a": good, "b": bad}, **logged)
    assert evaluation.n == 4 and evaluation.result().to_dict() == before


def test_empirical_likelihood_needs_a_true_weight_bound(tiny):
    with pytest.raises(InvalidParameterError, match="max_weight 1.5 for 'target' is below"):
        estimate("ips", empirical_likelihood=True, max_weight=1.5, **tiny)


def test_slates_must_keep_their_number_of_slots():
    evaluation = Evaluation(["pi"])
    evaluation.update(reward=[1.0], propensity=[[0.5, 0.5]], target_probability=[[1.0, 1.0]])
    with pytest.raises(InvalidParameterError, match="every chunk must have 2 slots"):
        evaluation.update(reward=[1.0], propensity=[[0.5]], target_probability=[[1.0]])
    with pytest.raises(LengthMismatchError, match="differ in slots"):
        estimate("pi", reward=[1.0], propensity=[[0.5, 0.5]], target_probability=[[1.0]])
    with pytest.raises(MissingInputError, match="reward .per slate. or slot_reward"):
        estimate("pi", propensity=[[0.5]], target_probability=[[1.0]])


def test_per_slot_and_cross_fit_inputs():
    evaluation = PerSlotEvaluation(2, ["ips"])
    with pytest.raises(LengthMismatchError, match=r"must all have shape \(2, 2\)"):
        evaluation.update(reward=np.zeros((2, 2)), propensity=np.full((2, 3), 0.5),
                          target_probability=np.ones((2, 2)))
    with pytest.raises(InvalidParameterError, match="single-slot estimators"):
        PerSlotEvaluation(2, ["pi"])
    model = CrossFitRidge(n_actions=3, n_features=2)
    with pytest.raises(InvalidParameterError, match=r"actions must be in 0..2, got values in 0..3"):
        model.fit(np.zeros((2, 2)), np.array([0, 3]), np.zeros(2))
    with pytest.raises(ShapeError, match="features must have 2 columns"):
        model.fit(np.zeros((2, 3)), np.array([0, 1]), np.zeros(2))
    with pytest.raises(InvalidParameterError, match="has not been fitted"):
        model.predict_all(np.zeros((2, 2)))
    model.fit(np.zeros((2, 2)), np.array([0, 1]), np.zeros(2))
    with pytest.raises(InvalidProbabilityError, match="target_pmf rows must sum to 1: row 1"):
        model.predict(np.zeros((2, 2)), np.array([0, 1]), np.array([[1, 0, 0], [0.5, 0, 0]]))
    with pytest.raises(InvalidParameterError, match="n_folds must be an integer >= 2"):
        CrossFitRidge(n_actions=3, n_features=2, n_folds=1)
