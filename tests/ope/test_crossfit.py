"""Cross-fitted ridge reward models: the ridge solution, no event corrected by a model that saw
it, streaming equal to in-memory, and DR with them on a simple world."""

from __future__ import annotations

import numpy as np

from bandits.ope import CrossFitRidge, cross_fit_ridge


def _data(n: int, seed: int, actions: int = 3):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 4))
    action = rng.integers(0, actions, n)
    coefficients = rng.normal(size=(actions, 4))
    rewards = (features * coefficients[action]).sum(axis=1) + action + rng.normal(size=n) * 0.1
    return features, action, rewards


def test_each_fold_uses_the_ridge_solution_of_the_other_folds():
    features, action, rewards = _data(600, seed=0)
    model = CrossFitRidge(3, 4, n_folds=4, ridge=2.0, random_state=1)
    model.fit(features, action, rewards)
    folds = model.folds(np.arange(600))
    coefficients = model.coefficients()
    for fold in range(4):
        for a in range(3):
            rows = (folds != fold) & (action == a)
            design = np.column_stack([np.ones(rows.sum()), features[rows]])
            penalty = np.diag([0.0, 2.0, 2.0, 2.0, 2.0])
            expected = np.linalg.solve(design.T @ design + penalty, design.T @ rewards[rows])
            np.testing.assert_allclose(coefficients[fold, a], expected, rtol=1e-10, atol=1e-12)


def test_no_event_is_corrected_by_a_model_that_saw_its_reward():
    features, action, rewards = _data(1000, seed=1)
    pmf = np.full((1000, 3), 1 / 3)
    q_logged, q_target = cross_fit_ridge(features, action, rewards, pmf, n_actions=3)
    folds = CrossFitRidge(3, 4, random_state=0).folds(np.arange(1000))
    changed = rewards.copy()
    changed[folds == 2] += 100.0  # only fold 2's rewards move
    q_changed, _ = cross_fit_ridge(features, action, changed, pmf, n_actions=3)
    np.testing.assert_allclose(q_changed[folds == 2], q_logged[folds == 2], rtol=1e-12)
    assert np.abs(q_changed[folds != 2] - q_logged[folds != 2]).mean() > 10.0  # the others do
    model = CrossFitRidge(3, 4, random_state=0)
    model.fit(features, action, rewards)
    np.testing.assert_allclose(q_target, model.predict_all(features).mean(axis=1), rtol=1e-12)


def test_streaming_two_passes_equals_in_memory():
    features, action, rewards = _data(5000, seed=2)
    pmf = np.random.default_rng(3).dirichlet(np.ones(3), size=5000)
    expected = cross_fit_ridge(features, action, rewards, pmf, n_actions=3, random_state=5)
    model = CrossFitRidge(3, 4, random_state=5)
    chunks = np.array_split(np.arange(5000), 9)
    for rows in chunks:
        model.fit(features[rows], action[rows], rewards[rows])
    parts = [model.predict(features[rows], action[rows], pmf[rows]) for rows in chunks]
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), expected[0], rtol=1e-10)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), expected[1], rtol=1e-10)


def test_stable_keys_make_the_order_irrelevant():
    features, action, rewards = _data(800, seed=4)
    keys = np.arange(10_000, 10_800)
    model = CrossFitRidge(3, 4, random_state=2)
    model.fit(features, action, rewards, keys=keys)
    order = np.random.default_rng(0).permutation(800)
    shuffled = model.predict_all(features[order], keys=keys[order])
    np.testing.assert_allclose(shuffled, model.predict_all(features, keys=keys)[order])


def test_an_action_without_training_events_gets_the_mean_reward():
    features, action, rewards = _data(300, seed=5, actions=2)
    model = CrossFitRidge(3, 4, n_folds=2, random_state=0)
    model.fit(features, action, rewards)
    predictions = model.predict_all(features)
    folds = model.folds(np.arange(300))
    for fold in range(2):
        np.testing.assert_allclose(predictions[folds == fold, 2], rewards[folds != fold].mean())
