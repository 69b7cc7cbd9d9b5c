"""Slate estimators: hand-computed values, and unbiasedness checked exactly by enumerating every
slate under the assumption each estimator makes (and a bias when the assumption fails)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bandits.ope import IIPS, IPS, PI, RIPS, SNPI, BanditBatch, Evaluation, SlateBatch, estimate

# Two slates of two slots: per-slot weights [[2, 1], [1, 2]], PI weights [2, 2].
SLATES = {
    "propensity": np.array([[0.5, 0.5], [0.5, 0.25]]),
    "target_probability": np.array([[1.0, 0.5], [0.5, 0.5]]),
    "slot_reward": np.array([[1.0, 1.0], [0.0, 1.0]]),
}


@pytest.mark.parametrize("estimator, expected", [
    (PI(), (2 * 2 + 2 * 1) / 2),           # slate rewards [2, 1]
    (SNPI(), (2 * 2 + 2 * 1) / (2 + 2)),
    (IIPS(), ((2 * 1 + 1 * 1) + (1 * 0 + 2 * 1)) / 2),
    (RIPS(), ((2 * 1 + 2 * 1) + (1 * 0 + 2 * 1)) / 2),  # prefix weights [[2, 2], [1, 2]]
    (IIPS(top_k=1), (2 * 1 + 1 * 0) / 2),
    (RIPS(top_k=1), (2 * 1 + 1 * 0) / 2),
], ids=lambda item: getattr(item, "label", ""))
def test_hand_computed_values(estimator, expected):
    batch = SlateBatch.from_arrays(**SLATES)
    assert estimator.estimate(batch) == pytest.approx(expected, abs=1e-15)


def test_slate_reward_defaults_to_the_sum_of_slot_rewards():
    batch = SlateBatch.from_arrays(**SLATES)
    np.testing.assert_array_equal(batch.reward, [2.0, 1.0])
    evaluation = Evaluation(["pi", "iips", {"name": "rips", "top_k": 1}])
    evaluation.update(**SLATES)
    report = evaluation.result()
    assert report.lift("target", "pi").baseline_value == 1.5          # slate rewards
    assert report.lift("target", "rips(top_k=1)").baseline_value == 0.5  # first slot only


def test_pi_with_one_slot_is_ips():
    rng = np.random.default_rng(0)
    propensity, target = rng.uniform(0.1, 1, 50), rng.uniform(0, 1, 50)
    reward = rng.normal(size=50)
    slate = SlateBatch.from_arrays(reward=reward, propensity=propensity[:, None],
                                   target_probability=target[:, None])
    single = BanditBatch.from_arrays(reward=reward, propensity=propensity,
                                     target_probability=target)
    assert PI().estimate(slate) == pytest.approx(IPS().estimate(single), abs=1e-14)


def _expectation(estimator, probability, **arrays):
    """E under the logger of the estimator's first term, over all slates (rows of ``arrays``)."""
    return float(probability @ estimator.terms(SlateBatch.from_arrays(**arrays))[:, 0])


def _product(per_slot: list[np.ndarray]):
    slates = np.array(list(itertools.product(*[range(len(p)) for p in per_slot])))
    chosen = np.column_stack([per_slot[k][slates[:, k]] for k in range(len(per_slot))])
    return slates, chosen


def test_pi_and_iips_are_unbiased_for_product_policies_and_additive_rewards():
    rng = np.random.default_rng(1)
    sizes = (3, 4, 2)
    logger = [rng.dirichlet(np.ones(m)) for m in sizes]
    target = [rng.dirichlet(np.ones(m) * 0.3) for m in sizes]
    slates, mu = _product(logger)
    _, pi = _product(target)
    effect = [rng.uniform(0, 1, m) for m in sizes]
    slot_reward = np.column_stack([effect[k][slates[:, k]] for k in range(len(sizes))])
    truth = float(pi.prod(axis=1) @ slot_reward.sum(axis=1))
    probability = mu.prod(axis=1)
    arrays = {"propensity": mu, "target_probability": pi, "slot_reward": slot_reward}
    assert _expectation(PI(), probability, **arrays) == pytest.approx(truth, abs=1e-12)
    assert _expectation(IIPS(), probability, **arrays) == pytest.approx(truth, abs=1e-12)
    # an interaction between slots breaks the linearity PI relies on
    interaction = (slates[:, 0] == slates[:, 1]).astype(float)
    biased_truth = truth + float(pi.prod(axis=1) @ interaction)
    biased = _expectation(PI(), probability, reward=slot_reward.sum(axis=1) + interaction,
                          propensity=mu, target_probability=pi)
    assert abs(biased - biased_truth) > 1e-3


def _sequential(base: np.ndarray, slots: int):
    """Slates filled in order from one pool without repeats, each slot softmax-like over the rest:
    the conditional probability of each placed action, per slate."""
    rows, conditional = [], []
    for slate in itertools.permutations(range(len(base)), slots):
        remaining, probabilities = list(range(len(base))), []
        for action in slate:
            probabilities.append(base[action] / base[remaining].sum())
            remaining.remove(action)
        rows.append(slate)
        conditional.append(probabilities)
    return np.array(rows), np.array(conditional)


def test_rips_is_unbiased_under_the_cascade_assumption_with_conditional_probabilities():
    rng = np.random.default_rng(2)
    slates, mu = _sequential(rng.dirichlet(np.ones(5)), 3)
    _, pi = _sequential(rng.dirichlet(np.ones(5) * 0.5), 3)
    # the reward at slot k depends on every action in slots 1..k
    table = rng.uniform(0, 1, size=(5, 5, 5))
    slot_reward = np.column_stack([table[slates[:, 0], 0, 0], table[slates[:, 0], slates[:, 1], 0],
                                   table[slates[:, 0], slates[:, 1], slates[:, 2]]])
    truth = float(pi.prod(axis=1) @ slot_reward.sum(axis=1))
    value = _expectation(RIPS(), mu.prod(axis=1), propensity=mu, target_probability=pi,
                         slot_reward=slot_reward)
    assert value == pytest.approx(truth, abs=1e-12)
    top_two = float(pi.prod(axis=1) @ slot_reward[:, :2].sum(axis=1))
    assert _expectation(RIPS(top_k=2), mu.prod(axis=1), propensity=mu, target_probability=pi,
                        slot_reward=slot_reward) == pytest.approx(top_two, abs=1e-12)


def test_pi_weights_can_be_negative_and_diagnostics_say_so():
    result = estimate("pi", reward=[1.0, 2.0], propensity=[[0.5, 0.5], [0.5, 0.5]],
                      target_probability=[[0.0, 0.0], [1.0, 1.0]])
    assert result.value == pytest.approx((-1 * 1.0 + 3 * 2.0) / 2)
    assert result.diagnostics.weight_min == -1.0 and result.diagnostics.weight_max == 3.0


def test_per_position_estimators_report_per_position_diagnostics():
    rng = np.random.default_rng(3)
    arrays = {"propensity": rng.uniform(0.2, 1, (500, 3)),
              "target_probability": rng.uniform(0, 1, (500, 3)),
              "slot_reward": rng.integers(0, 2, (500, 3)).astype(float)}
    result = estimate("rips", **arrays)
    positions = result.diagnostics.positions
    assert len(positions) == 3
    # prefix weights get heavier along the slate; the top level reports the worst position
    assert positions[2].effective_sample_size < positions[0].effective_sample_size
    assert result.diagnostics.effective_sample_size == min(p.effective_sample_size
                                                           for p in positions)
