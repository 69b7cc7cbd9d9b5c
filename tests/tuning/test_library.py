"""The tuning library on arrays: policies, estimates (against bandits.ope), search and choice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandits.ope import Evaluation
from bandits.ope.errors import InvalidProbabilityError, LengthMismatchError, NonFiniteError, ShapeError
from bandits.tuning import (
    Exploration,
    Guardrail,
    Problem,
    Scorer,
    TuningArrays,
    pareto_mask,
    simplex_grid,
    sobol_simplex,
    tune,
)

EXPLORATIONS = [Exploration("epsilon", 0.2), Exploration("squarecb", 40.0), Exploration("softmax", 3.0)]


def _arrays(seed: int, n: int = 4000, actions: int = 5, objectives: int = 3, excluded: bool = True):
    """Events logged by a uniform logger; outcomes drawn around the true means ``truth``."""
    rng = np.random.default_rng(seed)
    truth = rng.random((n, actions, objectives))
    allowed = np.ones((n, actions), dtype=bool)
    if excluded:
        allowed[::4, actions - 1] = False
    logged = np.array([rng.choice(np.flatnonzero(row)) for row in allowed])
    propensity = 1.0 / allowed.sum(axis=1)
    rows = np.arange(n)
    outcomes = (rng.random((n, objectives)) < truth[rows, logged]).astype(float)
    noisy = np.clip(truth + rng.normal(0, 0.1, truth.shape), 0, 1)  # a reward model, not the truth
    return TuningArrays.of(noisy, allowed, logged, propensity, outcomes), truth


@pytest.mark.parametrize("exploration", EXPLORATIONS, ids=lambda e: e.algorithm)
def test_policies_are_distributions_over_the_allowed_actions(exploration):
    arrays, _ = _arrays(0)
    pmf = Scorer(arrays, exploration).pmf(np.array([1.0, 0.5, -0.2]))
    assert pmf.shape == (arrays.allowed.shape[1], arrays.n)
    assert np.allclose(pmf.sum(axis=0), 1.0, atol=1e-5)
    assert pmf.min() >= 0 and pmf[~arrays.allowed.T].max() == 0.0


def test_exploration_formulas_on_one_event():
    scores = np.array([[1.0], [3.0], [2.0]], dtype=np.float32)  # (actions, events)
    epsilon = Exploration("epsilon", 0.3).pmf(scores)[:, 0]
    assert np.allclose(epsilon, [0.1, 0.8, 0.1])
    squarecb = Exploration("squarecb", 10.0).pmf(scores)[:, 0]
    others = [1 / (3 + 10 * 2.0), 1 / (3 + 10 * 1.0)]  # 1 / (|A| + γ gap)
    assert np.allclose(squarecb, [others[0], 1 - sum(others), others[1]], atol=1e-6)
    softmax = Exploration("softmax", 2.0).pmf(scores)[:, 0]
    assert np.allclose(softmax, np.exp([2.0, 6.0, 4.0]) / np.exp([2.0, 6.0, 4.0]).sum(), atol=1e-6)
    tied = Exploration("epsilon", 0.0).pmf(np.array([[2.0], [2.0], [1.0]], dtype=np.float32))[:, 0]
    assert np.allclose(tied, [0.5, 0.5, 0.0])  # ties share the greedy mass
    with pytest.raises(ValueError):
        Exploration("epsilon", 1.5)


@pytest.mark.parametrize("exploration", EXPLORATIONS, ids=lambda e: e.algorithm)
def test_estimates_equal_those_of_the_ope_library(exploration):
    arrays, _ = _arrays(1)
    scorer = Scorer(arrays, exploration)
    weights = np.array([1.0, 0.3, 0.6])
    score = scorer.score(weights)
    pmf = scorer.pmf(weights).astype(float)
    rows = np.arange(arrays.n)
    for k in range(arrays.objectives):
        evaluation = Evaluation(["dr", "snips"], candidates=["w"])
        evaluation.update(
            reward=arrays.outcomes[:, k], propensity=arrays.propensity,
            q_logged=arrays.predictions[rows, arrays.logged, k],
            candidates={"w": {"target_probability": pmf[arrays.logged, rows],
                              "q_target": np.einsum("an,na->n", pmf, arrays.predictions[:, :, k])}})
        report = evaluation.result(0.05)
        for e, name in enumerate(["dr", "snips"]):
            assert score.value[e, k] == pytest.approx(report.estimate("w", name).value, abs=1e-6)
            assert score.standard_error[e, k] == pytest.approx(report.estimate("w", name).standard_error, rel=1e-5)
            assert score.lift[e, k] == pytest.approx(report.lift("w", name).value, abs=1e-6)
            assert score.lift_standard_error[e, k] == pytest.approx(report.lift("w", name).standard_error, rel=1e-5)


def test_dr_and_snips_intervals_cover_the_truth_about_95_percent_of_the_time():
    covered = {"dr": 0, "snips": 0}
    replications = 100
    for seed in range(replications):
        arrays, truth = _arrays(100 + seed, n=2000)
        exploration = Exploration("epsilon", 0.2)
        scorer = Scorer(arrays, exploration)
        weights = np.array([1.0, 0.0, 0.5])
        score = scorer.score(weights)
        pmf = scorer.pmf(weights).astype(float)
        value = float(np.einsum("an,na->", pmf, truth[:, :, 0])) / arrays.n  # the policy's true click
        for e, name in enumerate(["dr", "snips"]):
            low, high = score.interval(e, 0, 0.05)
            covered[name] += low <= value <= high
    # 100 replications: 95 % coverage gives 89-100 with probability > 0.99.
    assert all(88 <= count <= 100 for count in covered.values()), covered


def test_bad_arrays_are_refused_with_the_problem_named():
    arrays, _ = _arrays(2, n=50)
    parts = dict(predictions=arrays.predictions, allowed=arrays.allowed, logged=arrays.logged,
                 propensity=arrays.propensity, outcomes=arrays.outcomes)
    cases = [
        ({"propensity": np.zeros(50)}, InvalidProbabilityError, "(0, 1]"),
        ({"outcomes": np.full((50, 3), np.nan)}, NonFiniteError, "outcomes"),
        ({"logged": arrays.logged[:10]}, LengthMismatchError, "logged"),
        ({"predictions": arrays.predictions[:, :, 0]}, ShapeError, "predictions"),
    ]
    for change, error, fragment in cases:
        with pytest.raises(error, match=fragment if fragment != "(0, 1]" else r"\(0, 1\]"):
            TuningArrays.of(**{**parts, **change})
    excluded_logged = arrays.allowed.copy()
    excluded_logged[0, arrays.logged[0]] = False
    with pytest.raises(ShapeError, match="not among"):
        TuningArrays.of(**{**parts, "allowed": excluded_logged})


def test_grids_sobol_points_and_pareto_flags():
    for objectives, budget in [(2, 11), (3, 100), (3, 1000)]:
        grid = simplex_grid(objectives, budget)
        assert len(grid) <= budget and np.allclose(grid.sum(axis=1), 1.0)
        assert any(np.allclose(point, np.eye(objectives)[0]) for point in grid)  # vertices included
    assert len(simplex_grid(3, 100)) == math.comb(12 + 2, 2)
    points = sobol_simplex(5, 40, seed=3)
    assert points.shape == (40, 5) and np.allclose(points.sum(axis=1), 1.0)
    assert np.array_equal(points, sobol_simplex(5, 40, seed=3))  # seeded
    values = np.array([[1, 1], [2, 0], [0, 2], [0.5, 0.5], [1, 1]])
    assert pareto_mask(values).tolist() == [True, True, True, False, True]


def _tradeoff_arrays(n: int, seed: int):
    """Two actions per event: action 0 is good on objective 0, action 1 on objective 1 (by 20 %
    less on 0); the reward models are the truth; a uniform logger."""
    rng = np.random.default_rng(seed)
    means = np.tile(np.array([[0.5, 0.2], [0.4, 0.6]]), (n, 1, 1))
    logged = rng.integers(0, 2, n)
    outcomes = (rng.random((n, 2)) < means[np.arange(n), logged]).astype(float)
    return TuningArrays.of(means, np.ones((n, 2), dtype=bool), logged, np.full(n, 0.5), outcomes)


@pytest.mark.parametrize("max_drop, action", [(0.3, "apply"), (0.05, "keep")])
def test_the_recommendation_respects_the_guardrail(max_drop, action):
    tune_split, holdout = _tradeoff_arrays(20_000, 1), _tradeoff_arrays(20_000, 2)
    problem = Problem(("click", "revenue"), "revenue", (Guardrail("click", max_drop),),
                      current=np.array([1.0, 0.0]), scales=np.array([0.45, 0.4]), alpha=0.05)
    result = tune(problem, Exploration("epsilon", 0.1), tune_split, holdout, budget=21, seed=0)
    recommendation = result["recommendation"]
    assert recommendation["action"] == action, recommendation["reason"]
    if action == "apply":
        chosen = result["candidates"][recommendation["candidate"]]
        assert chosen["passes"] and chosen["weights"]["revenue"] > 0
        assert recommendation["holdout"]["objectives"]["revenue"]["dr"]["lift"] > 0.1
    else:  # every candidate that favours revenue drops clicks by about 20 %
        assert "keep" in recommendation["reason"]
        assert recommendation["weights"] == {"click": 1.0, "revenue": 0.0}
    assert result["candidates"][0]["source"] == "current"
    assert set(result["pareto_front"]) <= {c["id"] for c in result["candidates"]}


def test_more_than_three_objectives_search_quasi_randomly_then_refine():
    rng = np.random.default_rng(5)
    n, k = 5000, 4
    means = rng.random((n, 3, k))
    logged = rng.integers(0, 3, n)
    outcomes = (rng.random((n, k)) < means[np.arange(n), logged]).astype(float)
    arrays = TuningArrays.of(means, np.ones((n, 3), dtype=bool), logged, np.full(n, 1 / 3), outcomes)
    problem = Problem(("a", "b", "c", "d"), "a", (Guardrail("b", 0.5),), current=np.array([0.0, 1, 1, 1]),
                      scales=outcomes.mean(axis=0), alpha=0.05)
    result = tune(problem, Exploration("squarecb", 30.0), arrays, arrays, budget=60, seed=1)
    sources = [c["source"] for c in result["candidates"]]
    assert len(sources) <= 60 and "quasi-random" in sources and "refined" in sources
    assert result == tune(problem, Exploration("squarecb", 30.0), arrays, arrays, budget=60, seed=1)
