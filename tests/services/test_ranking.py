"""The ranking a choose reply lists: every candidate, most probable first, ties in the order the
candidates were given."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bandits.services.decisions import _ranking


def test_most_probable_first_and_ties_in_the_given_order():
    ids = ["a", "b", "c", "d"]
    pmf = [0.25, 0.5, 0.25, 0.0]
    assert [item["id"] for item in _ranking(ids, pmf)] == ["b", "a", "c", "d"]
    assert _ranking(ids, pmf, [3, 2, 0]) == [
        {"id": "c", "probability": 0.25}, {"id": "a", "probability": 0.25},
        {"id": "d", "probability": 0.0},
    ]


@given(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5]), min_size=1, max_size=12), st.data())
def test_the_same_as_sorting_the_candidates_by_falling_probability(pmf, data):
    ids = [f"a{i}" for i in range(len(pmf))]
    candidates = data.draw(st.lists(st.sampled_from(range(len(pmf))), unique=True, min_size=1))
    expected = sorted(({"id": ids[i], "probability": pmf[i]} for i in candidates),
                      key=lambda item: -item["probability"])
    assert _ranking(ids, pmf, candidates) == expected
