"""CCB logs evaluated per slot: each slot is a single-slot problem with its conditional
propensities, and the estimand is the slot's value with the earlier slots as logged."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bandits.ope import IPS, BanditBatch, Evaluation, InvalidProbabilityError, PerSlotEvaluation


def _ccb_logs(n: int, seed: int, slots: int = 3):
    rng = np.random.default_rng(seed)
    return {
        "reward": rng.integers(0, 2, (n, slots)).astype(float),
        "propensity": rng.uniform(0.1, 1.0, (n, slots)),
        "target_probability": rng.uniform(0.0, 1.0, (n, slots)),
        "q_logged": rng.uniform(0, 1, (n, slots)),
        "q_target": rng.uniform(0, 1, (n, slots)),
    }


def test_each_slot_is_the_single_slot_evaluation_of_its_filled_events():
    data = _ccb_logs(400, seed=0)
    shown = np.ones((400, 3), dtype=bool)
    shown[::3, 2] = False  # some events had fewer actions than slots
    data["propensity"][~shown] = np.nan  # unfilled entries are ignored, whatever they hold
    per_slot = PerSlotEvaluation(3, ["ips", "dr"])
    for rows in np.array_split(np.arange(400), 3):
        per_slot.update(shown=shown[rows], **{key: values[rows] for key, values in data.items()})
    reports = per_slot.result()
    for slot in range(3):
        single = Evaluation(["ips", "dr"])
        single.update(**{key: values[shown[:, slot], slot] for key, values in data.items()})
        expected = single.result()
        assert reports[slot].n == expected.n == shown[:, slot].sum()
        for ours, theirs in zip(reports[slot].estimates + reports[slot].lifts,
                                expected.estimates + expected.lifts):
            assert (ours.estimator, ours.candidate) == (theirs.estimator, theirs.candidate)
            assert ours.value == pytest.approx(theirs.value, rel=1e-12, abs=1e-15)
            assert ours.standard_error == pytest.approx(theirs.standard_error, rel=1e-9)


def test_a_slot_never_filled_has_no_report_and_bootstraps_are_seeded_per_slot():
    data = _ccb_logs(300, seed=1, slots=2)
    shown = np.ones((300, 2), dtype=bool)
    shown[:, 1] = False
    results = []
    for _ in range(2):
        evaluation = PerSlotEvaluation(2, ["snips"], n_bootstrap=50, random_state=3)
        evaluation.update(shown=shown, **data)
        results.append(evaluation.result())
    assert results[0][1] is None
    assert results[0][0].to_dict() == results[1][0].to_dict()


def test_the_per_slot_estimand_keeps_the_earlier_slots_as_logged():
    """Exact expectation over every ordered pair from a pool of 4 (no repeats)."""
    rng = np.random.default_rng(2)
    logger_base, target_base = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4) * 0.4)
    reward_table = rng.uniform(0, 1, size=(4, 4))  # second slot's reward depends on both
    slates = np.array(list(itertools.permutations(range(4), 2)))
    first, second = slates[:, 0], slates[:, 1]
    mu_first = logger_base[first]
    mu_second = logger_base[second] / (1 - logger_base[first])
    pi_second = target_base[second] / (1 - target_base[first])
    batch = BanditBatch.from_arrays(reward=reward_table[first, second], propensity=mu_second,
                                    target_probability=pi_second)
    expectation = float((mu_first * mu_second) @ IPS().terms(batch)[:, 0])
    as_logged = float((mu_first * pi_second) @ reward_table[first, second])
    fully_target = float((target_base[first] * pi_second) @ reward_table[first, second])
    assert expectation == pytest.approx(as_logged, abs=1e-12)
    assert abs(expectation - fully_target) > 1e-3


def test_a_bad_slot_names_itself_and_changes_no_slot():
    data = _ccb_logs(50, seed=3)
    evaluation = PerSlotEvaluation(3, ["ips"])
    evaluation.update(**data)
    before = [report.to_dict() for report in evaluation.result()]
    data["propensity"][7, 2] = 0.0
    with pytest.raises(InvalidProbabilityError, match=r"slot 2: propensity must be in \(0, 1\]: "
                                                      r"propensity\[7\] = 0.0"):
        evaluation.update(**data)
    assert [report.to_dict() for report in evaluation.result()] == before
