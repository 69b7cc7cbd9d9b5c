"""The decision log as DataFrames: every shown decision once, its propensity and outcomes as the
tables hold them; per slot for ccb and slates loops; chunks that add up to the whole."""

from __future__ import annotations

import pandas as pd
import pytest

from bandits.analysis import iter_decisions, load_decisions
from tests.export.logs import create_loop, log_decisions, stored


def _shown(db, name: str, kind: str):
    # e1 is deferred and never activated: never shown, so not in the frames.
    return [d for d in stored(db, name, kind) if not d.unactivated]


def test_one_row_per_decision_with_the_logged_propensity_and_outcomes(app, client, db, database_url):
    log_decisions(client, "shop", "cb", create_loop(app, "shop", "cb"))

    frame = load_decisions(database_url, "shop")

    logged = _shown(db, "shop", "cb")
    assert len(frame) == len(logged) == 11
    assert frame["event_id"].tolist() == [d.event_id for d in logged]
    assert frame["chosen"].tolist() == [d.chosen for d in logged]
    assert frame["probability"].tolist() == [d.probability for d in logged]
    assert frame["pmf"].tolist() == [d.pmf for d in logged]
    assert frame["reward"].tolist() == pytest.approx([d.reward for d in logged])
    assert frame["n_actions"].tolist() == [len(set(d.action_ids) - set(d.excluded)) for d in logged]
    # click counts once (max), revenue adds up (sum); no reward at all: the defaults (0)
    e4 = frame.set_index("event_id").loc["e4"]
    assert (e4["click"], e4["revenue"]) == (0.0, 4.0 + 1.5)
    assert frame.set_index("event_id").loc["e3", ["click", "revenue", "reward"]].tolist() == [0, 0, 0]
    assert list(frame.columns) == ["event_id", "ts", "model_version", "chosen", "probability",
                                   "n_actions", "pmf", "click", "revenue", "reward"]
    assert str(frame["ts"].dtype) .endswith("UTC]")
    assert frame["ts"].is_monotonic_increasing
    assert (frame["model_version"] == 0).all()


def test_a_ccb_loop_has_a_row_per_slot_with_its_own_propensity_and_reward(app, client, db, database_url):
    log_decisions(client, "page", "ccb", create_loop(app, "page", "ccb"))

    slots = load_decisions(db, "page", per="slot")
    decisions = load_decisions(db, "page")

    logged = _shown(db, "page", "ccb")
    expected = [(d.event_id, k, s["id"], s["chosen"]) for d in logged for k, s in enumerate(d.slots)]
    assert len(slots) == len(expected) == 3 * 11
    got = slots[["event_id", "position", "slot", "chosen"]]
    assert [tuple(row) for row in got.itertuples(index=False)] == expected
    assert slots["probability"].tolist() == [s["probability"] for d in logged for s in d.slots]
    assert slots["pmf"].tolist() == [s["pmf"] for d in logged for s in d.slots]
    assert slots["reward"].tolist() == pytest.approx(
        [d.slot_rewards[s["id"]] for d in logged for s in d.slots])
    # a slot's PMF is conditional on the slots above: their actions are out of its reach
    side = slots[slots["slot"] == "side"].iloc[0]
    assert side["n_actions"] == 6 - 1 - 1  # the pool less its exclusion (a4) and the hero's action
    # the decision's row holds the page: the sum of its slots
    assert decisions["reward"].tolist() == pytest.approx([d.reward for d in logged])
    assert decisions["reward"].tolist() == pytest.approx(slots.groupby("event_id", sort=False)["reward"].sum().tolist())


def test_a_slates_loop_has_slot_rows_without_per_slot_rewards(app, client, db):
    log_decisions(client, "grid", "slates", create_loop(app, "grid", "slates"))

    slots = load_decisions(db, "grid", per="slot")

    logged = _shown(db, "grid", "slates")
    assert slots["probability"].tolist() == [s["probability"] for d in logged for s in d.slots]
    assert slots["reward"].isna().all()  # one reward for the page: per="decision" has it
    assert load_decisions(db, "grid")["reward"].tolist() == pytest.approx([d.reward for d in logged])


def test_chunks_add_up_to_the_whole_window_and_windows_cut_by_time(app, client, db):
    log_decisions(client, "shop", "cb", create_loop(app, "shop", "cb"))
    whole = load_decisions(db, "shop")

    chunks = list(iter_decisions(db, "shop", chunksize=4))

    assert [len(chunk) for chunk in chunks] == [4, 4, 3]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    middle = whole["ts"].iloc[5]
    assert load_decisions(db, "shop", until=middle)["event_id"].tolist() == whole["event_id"][:5].tolist()
    assert load_decisions(db, "shop", since=middle.isoformat())["event_id"].tolist() == \
        whole["event_id"][5:].tolist()
    later = load_decisions(db, "shop", since="2999-01-01")
    assert later.empty and list(later.columns) == list(whole.columns)


def test_context_on_request_and_clear_errors(app, client, db):
    log_decisions(client, "shop", "cb", create_loop(app, "shop", "cb"))

    with_context = load_decisions(db, "shop", context=True)

    assert with_context["context"].iloc[0] == {"user": {"country": "AR", "age": 31,
                                                        "segments": ["new", "mobile"], "vip": True}}
    with pytest.raises(LookupError, match="nope"):
        load_decisions(db, "nope")
    with pytest.raises(ValueError, match="cb loop"):
        load_decisions(db, "shop", per="slot")
    with pytest.raises(ValueError, match="must be after"):
        load_decisions(db, "shop", since="2026-01-02", until="2026-01-01")
