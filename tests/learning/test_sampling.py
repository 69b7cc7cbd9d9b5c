"""Seeded sampling: reproducible draws that follow the PMF and never pick an impossible action."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from bandits.learning.sampling import normalise, sample, seed_for, uniform

REPO = Path(__file__).resolve().parents[2]

seeds = st.integers(min_value=0, max_value=2**63 - 1)
loop_ids = st.integers(min_value=1, max_value=2**63 - 1)
event_ids = st.text(max_size=40)
# PMFs as VW hands them to the service: float32 noise, zeros (excluded actions), a positive mass.
pmfs = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1.0), st.floats(-1e-7, 0.0)),
    min_size=1,
    max_size=12,
).filter(lambda pmf: any(p > 0.0 for p in pmf))


@settings(max_examples=1000, deadline=None)
@given(pmfs, seeds)
@example([0.0, 1.0], 0)
@example([1.0, 0.0], 2**63 - 1)
@example([0.5, 0.5, 0.0], 2**63 - 1)
@example([1e-300, 0.0, 0.0], 2**63 - 1)
def test_sample_never_picks_an_impossible_action(pmf, seed):
    for candidate in (pmf, normalise(pmf)):
        index = sample(candidate, seed)
        assert 0 <= index < len(pmf)
        assert pmf[index] > 0.0


@settings(max_examples=300, deadline=None)
@given(pmfs, seeds)
def test_sample_is_a_function_of_the_seed(pmf, seed):
    assert sample(pmf, seed) == sample(list(pmf), seed)
    assert sample(pmf, seed) == sample(tuple(pmf), seed)


@settings(max_examples=300, deadline=None)
@given(pmfs, seeds)
def test_sample_is_the_inverse_cdf_of_the_draw(pmf, seed):
    pmf = normalise(pmf)
    index = sample(pmf, seed)
    draw = uniform(seed)
    below = sum(pmf[:index])
    # The draw falls inside the chosen action's slice of [0, 1) (up to rounding at the very top).
    assert below <= draw
    assert draw < below + pmf[index] or index == max(i for i, p in enumerate(pmf) if p > 0)


def test_sample_refuses_a_pmf_without_mass():
    with pytest.raises(ValueError, match="no mass"):
        sample([0.0, 0.0], 123)
    with pytest.raises(ValueError, match="no mass"):
        sample([], 123)


# -- seeds -----------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(loop_ids, event_ids)
def test_seed_fits_a_signed_bigint_and_maps_into_the_unit_interval(loop_id, event_id):
    seed = seed_for(loop_id, event_id)
    assert isinstance(seed, int)
    assert 0 <= seed <= 2**63 - 1
    assert 0.0 <= uniform(seed) < 1.0


@settings(max_examples=500, deadline=None)
@given(seeds)
@example(0)
@example(2**63 - 1)
@example(1023)
def test_uniform_is_in_the_unit_interval(seed):
    assert 0.0 <= uniform(seed) < 1.0


@settings(max_examples=300, deadline=None)
@given(loop_ids, loop_ids, event_ids)
@example(1, 11, "1")  # "1" + sep + "1…" must not collide with "11" + sep + "…"
def test_seed_differs_across_loops(first_loop, second_loop, event_id):
    if first_loop != second_loop:
        assert seed_for(first_loop, event_id) != seed_for(second_loop, event_id)


@settings(max_examples=300, deadline=None)
@given(loop_ids, event_ids, event_ids)
@example(1, "a", "a\x00")
@example(1, "", " ")
def test_seed_differs_across_event_ids(loop_id, first_event, second_event):
    if first_event != second_event:
        assert seed_for(loop_id, first_event) != seed_for(loop_id, second_event)


def test_seed_is_the_same_in_another_process():
    inputs = [
        [1, "evt-1"], [1, "evt-2"], [2, "evt-1"], [2**63 - 1, ""], [7, "évènement 🎲"],
        [42, "a b|c:d%20"], [3, "\x00\t\n"], [9, "x" * 256],
    ]
    here = [seed_for(loop_id, event_id) for loop_id, event_id in inputs]
    code = (
        "import json, sys\n"
        "from bandits.learning.sampling import seed_for\n"
        "print(json.dumps([seed_for(l, e) for l, e in json.load(sys.stdin)]))"
    )
    # A different hash seed shows the derivation does not lean on Python's salted ``hash``.
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(inputs), capture_output=True, text=True,
        cwd=REPO, env=environment, check=True, timeout=60,
    )
    assert json.loads(there.stdout) == here
    assert len(set(here)) == len(here)


def test_draws_over_many_events_follow_the_pmf():
    pmf = [0.1, 0.2, 0.7]
    events = 20_000
    observed = [0, 0, 0]
    for number in range(events):
        observed[sample(pmf, seed_for(1, f"evt-{number}"))] += 1
    result = chisquare(observed, [p * events for p in pmf])
    assert result.pvalue > 0.001, (observed, result)


# -- normalise -------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(pmfs)
@example([-1e-8, 0.5, 0.5])
@example([1e-300, 0.0])
@example([5e-324, 1.0, 1.0])
def test_normalise_clips_negatives_and_sums_to_one(pmf):
    normalised = normalise(pmf)
    assert len(normalised) == len(pmf)
    assert sum(normalised) == pytest.approx(1.0, abs=1e-12)
    for raw, probability in zip(pmf, normalised):
        assert probability >= 0.0
        if raw <= 0.0:
            assert probability == 0.0
    total = sum(p for p in pmf if p > 0.0)
    assert normalised == pytest.approx([p / total if p > 0.0 else 0.0 for p in pmf])


@pytest.mark.parametrize("pmf", [[0.0], [0.0, 0.0, 0.0], [-0.1, -1e-9], [-0.0, 0.0], []])
def test_normalise_refuses_a_pmf_without_mass(pmf):
    with pytest.raises(ValueError, match="no mass"):
        normalise(pmf)


def test_normalise_clips_float32_noise():
    assert normalise([-1e-8, 0.25, 0.75]) == [0.0, 0.25, 0.75]
    assert normalise([0.2, 0.2]) == [0.5, 0.5]
