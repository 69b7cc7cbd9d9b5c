"""Client mistakes in multi-slot loops (`ccb`, `slates`), and slot mistakes in `cb` loops.

Same rules as tests/api/test_bad_input.py: each case gets its status, its error code, a message
naming the problem (and the target), never a 500, and writes no row (decisions and outcomes).
Every case runs on SQLite and on Postgres.
"""

from __future__ import annotations

import pytest

from bandits.services.loops import LoopService
from tests.api.test_bad_input import Case, _send, assert_refused
from tests.helpers import actions, choose_body, count_outcomes, count_rows

CCB = "/v1/loops/hero/choose"
SLATES = "/v1/loops/page/choose"
CB = "/v1/loops/shop/choose"
KNOWN = "known"  # an event the `known_events` fixture logs in every loop before each case
CCB_REWARDS = f"/v1/loops/hero/events/{KNOWN}/rewards"
SLATES_REWARDS = f"/v1/loops/page/events/{KNOWN}/rewards"
CB_REWARDS = f"/v1/loops/shop/events/{KNOWN}/rewards"

OBJECTIVES = [{"name": "click"}, {"name": "revenue", "weight": 0.1}]


def _slot(slot_id: str, baseline: str, **extra) -> dict:
    return {"id": slot_id, "baseline": baseline, **extra}


def ccb_body(**overrides) -> dict:
    """A valid ccb request: a pool of four actions (a0..a3), two slots."""
    body = {
        "context": {"user": {"country": "AR", "age": 31}},
        "actions": actions(4),
        "slots": [_slot("hero", "a0", features={"place": {"position": 0, "size": "big"}}),
                  _slot("side", "a1")],
    }
    body.update(overrides)
    return body


def slates_actions() -> list[dict]:
    return ([{"id": f"t{i}", "slot": "top", "features": {"offer": {"n": i}}} for i in range(3)]
            + [{"id": f"b{i}", "slot": "bottom", "features": {"offer": {"n": i}}} for i in range(2)])


def slates_body(**overrides) -> dict:
    """A valid slates request: slot `top` (t0..t2) and slot `bottom` (b0, b1)."""
    body = {
        "context": {"user": {"country": "AR"}},
        "actions": slates_actions(),
        "slots": [_slot("top", "t0"), _slot("bottom", "b0")],
    }
    body.update(overrides)
    return body


def _with_action(body: dict, index: int, **changes) -> dict:
    body["actions"][index] = {**body["actions"][index], **changes}
    return body


def _without_slot(action: dict) -> dict:
    return {k: v for k, v in action.items() if k != "slot"}


CASES = [
    # -- ccb: the slots --------------------------------------------------------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[2].id", "'hero'", "repeats slots[0].id"),
                      "slots[2].id", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0"), _slot("side", "a1"),
                                           _slot("hero", "a2")])),
                 id="ccb-duplicate-slot-ids"),
    pytest.param(Case(400, "InvalidChooseRequest", ("a ccb loop fills slots", "`slots`"), "slots",
                      path=CCB, body=choose_body()),
                 id="ccb-without-slots"),
    pytest.param(Case(400, "InvalidChooseRequest", ("a ccb loop fills slots",), "slots",
                      path=CCB, body=ccb_body(slots=None)),
                 id="ccb-slots-null"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots", "at least 1"), "slots",
                      path=CCB, body=ccb_body(slots=[])),
                 id="ccb-empty-slots"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1].baseline", "required"),
                      "slots[1].baseline", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0"), {"id": "side"}])),
                 id="ccb-slot-without-baseline"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].id", "required"), "slots[0].id",
                      path=CCB, body=ccb_body(slots=[{"baseline": "a0"}])),
                 id="ccb-slot-without-id"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].position", "unknown field"),
                      "slots[0].position", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0", position=1)])),
                 id="ccb-unknown-slot-field"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1]", "valid dictionary"), "slots[1]",
                      path=CCB, body=ccb_body(slots=[_slot("hero", "a0"), "side"])),
                 id="ccb-slot-not-an-object"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].id", "256"), "slots[0].id",
                      path=CCB, body=ccb_body(slots=[_slot("h" * 257, "a0")])),
                 id="ccb-slot-id-over-256-chars"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].id", "NUL"), "slots[0].id",
                      path=CCB, body=ccb_body(slots=[_slot("he\x00ro", "a0")])),
                 id="ccb-nul-in-a-slot-id"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].excluded", "valid list"),
                      "slots[0].excluded", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0", excluded="a1")])),
                 id="ccb-slot-excluded-not-a-list"),
    # -- ccb: baselines and exclusions ----------------------------------------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1].baseline", "'zz'", "not among the actions"),
                      "slots[1].baseline", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0"), _slot("side", "zz")])),
                 id="ccb-baseline-not-in-the-pool"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1].excluded[1]", "'zz'", "not among the actions"),
                      "slots[1].excluded[1]", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0"),
                                           _slot("side", "a1", excluded=["a2", "zz"])])),
                 id="ccb-excluded-not-in-the-pool"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].baseline", "'a0'", "excluded"),
                      "slots[0].baseline", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0", excluded=["a3", "a0"]),
                                           _slot("side", "a1")])),
                 id="ccb-baseline-excluded"),
    pytest.param(Case(400, "InvalidChooseRequest",
                      ("slots[1].baseline", "'a0'", "already slots[0]'s baseline"),
                      "slots[1].baseline", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0"), _slot("side", "a0")])),
                 id="ccb-duplicate-baselines"),
    # side may take only a1, and hero (before it) may take a1: side could be left with nothing.
    pytest.param(Case(400, "InvalidChooseRequest",
                      ("slots[1] may take 1 actions", "needs at least 2"), "slots[1].excluded",
                      path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0"),
                                           _slot("side", "a1", excluded=["a0", "a2", "a3"])])),
                 id="ccb-slot-could-be-left-without-an-action"),
    # The third slot may take a0, a1: the two slots before it may take both.
    pytest.param(Case(400, "InvalidChooseRequest",
                      ("slots[2] may take 2 actions", "the 2 slots before it", "needs at least 3"),
                      "slots[2].excluded", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a2"), _slot("side", "a3"),
                                           _slot("foot", "a0", excluded=["a2", "a3"])])),
                 id="ccb-third-slot-could-be-left-without-an-action"),
    pytest.param(Case(422, "TooFewActions", ("3 slots but 2 actions",), "slots", path=CCB,
                      body=ccb_body(actions=actions(2), slots=[_slot("hero", "a0"), _slot("side", "a1"),
                                                               _slot("foot", "a0")])),
                 id="ccb-fewer-actions-than-slots"),
    pytest.param(Case(422, "TooManyActions", ("21 actions", "at most 20"), "actions", path=CCB,
                      body=ccb_body(actions=actions(21))),
                 id="ccb-more-than-max-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("'a1'", "repeats actions[1].id"), "actions[4].id",
                      path=CCB, body=ccb_body(actions=[*actions(4), {"id": "a1"}])),
                 id="ccb-duplicate-action-ids"),
    # -- ccb: what belongs to other kinds --------------------------------------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("actions[2].slot", "slates"), "actions[2].slot",
                      path=CCB, body=_with_action(ccb_body(), 2, slot="hero")),
                 id="ccb-action-with-a-slot"),
    pytest.param(Case(400, "InvalidChooseRequest", ("`excluded`", "cb loops", "each slot"), "excluded",
                      path=CCB, body=ccb_body(excluded=["a2"])),
                 id="ccb-top-level-excluded"),
    pytest.param(Case(400, "InvalidChooseRequest", ("`baseline`", "cb loops", "each slot"), "baseline",
                      path=CCB, body=ccb_body(baseline="a0")),
                 id="ccb-top-level-baseline"),
    # -- ccb: slot features ---------------------------------------------------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1].features.place.tags[1]", "object"),
                      "slots[1].features.place.tags[1]", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0"), _slot(
                          "side", "a1", features={"place": {"tags": ["narrow", {"w": 3}]}})])),
                 id="ccb-slot-feature-list-containing-an-object"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].features.place.tags[0]", "array"),
                      "slots[0].features.place.tags[0]", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0", features={"place": {"tags": [["x"]]}}),
                                           _slot("side", "a1")])),
                 id="ccb-slot-feature-nested-list"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].features", "valid dictionary"),
                      "slots[0].features", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0", features=["big"])])),
                 id="ccb-slot-features-not-an-object"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].features.place.size", "NUL"),
                      "slots[0].features.place.size", path=CCB,
                      body=ccb_body(slots=[_slot("hero", "a0", features={"place": {"size": "b\x00ig"}})])),
                 id="ccb-nul-in-a-slot-feature"),
    # -- slates ----------------------------------------------------------------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1].id", "'top'", "repeats slots[0].id"),
                      "slots[1].id", path=SLATES,
                      body=slates_body(slots=[_slot("top", "t0"), _slot("top", "t1"),
                                              _slot("bottom", "b0")])),
                 id="slates-duplicate-slot-ids"),
    pytest.param(Case(400, "InvalidChooseRequest",
                      ("slots[0].baseline", "'b1'", "belongs to slot 'bottom'", "not to 'top'"),
                      "slots[0].baseline", path=SLATES,
                      body=slates_body(slots=[_slot("top", "b1"), _slot("bottom", "b0")])),
                 id="slates-baseline-in-the-wrong-slots-set"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1].baseline", "'zz'", "not among the actions"),
                      "slots[1].baseline", path=SLATES,
                      body=slates_body(slots=[_slot("top", "t0"), _slot("bottom", "zz")])),
                 id="slates-baseline-not-among-the-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("actions[3].slot", "'middle'", "not among the slots"),
                      "actions[3].slot", path=SLATES,
                      body=_with_action(slates_body(), 3, slot="middle")),
                 id="slates-action-naming-an-unknown-slot"),
    pytest.param(Case(400, "InvalidChooseRequest", ("actions[0].slot", "required"), "actions[0].slot",
                      path=SLATES,
                      body=slates_body(actions=[_without_slot(a) if i == 0 else a
                                                for i, a in enumerate(slates_actions())])),
                 id="slates-action-without-a-slot"),
    pytest.param(Case(400, "InvalidChooseRequest",
                      ("slots[0].excluded[0]", "'b1'", "not among slot 'top'"), "slots[0].excluded[0]",
                      path=SLATES,
                      body=slates_body(slots=[_slot("top", "t0", excluded=["b1"]), _slot("bottom", "b0")])),
                 id="slates-excluded-from-another-slots-set"),
    pytest.param(Case(400, "InvalidChooseRequest",
                      ("slots[1].excluded[0]", "'zz'", "not among slot 'bottom'"), "slots[1].excluded[0]",
                      path=SLATES,
                      body=slates_body(slots=[_slot("top", "t0"), _slot("bottom", "b0", excluded=["zz"])])),
                 id="slates-excluded-not-among-the-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1].baseline", "'b1'", "excluded"),
                      "slots[1].baseline", path=SLATES,
                      body=slates_body(slots=[_slot("top", "t0"), _slot("bottom", "b1", excluded=["b1"])])),
                 id="slates-baseline-excluded"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[2]", "'footer'", "has no actions"), "slots[2]",
                      path=SLATES,
                      body=slates_body(slots=[_slot("top", "t0"), _slot("bottom", "b0"),
                                              _slot("footer", "t1")])),
                 id="slates-slot-with-no-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("`excluded`", "cb loops"), "excluded",
                      path=SLATES, body=slates_body(excluded=["t1"])),
                 id="slates-top-level-excluded"),
    pytest.param(Case(400, "InvalidChooseRequest", ("`baseline`", "cb loops"), "baseline",
                      path=SLATES, body=slates_body(baseline="t0")),
                 id="slates-top-level-baseline"),
    pytest.param(Case(400, "InvalidChooseRequest", ("a slates loop fills slots",), "slots",
                      path=SLATES, body=slates_body(slots=None)),
                 id="slates-without-slots"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[1].features.place.x[0]", "object"),
                      "slots[1].features.place.x[0]", path=SLATES,
                      body=slates_body(slots=[_slot("top", "t0"),
                                              _slot("bottom", "b0", features={"place": {"x": [{"y": 1}]}})])),
                 id="slates-slot-feature-of-the-wrong-type"),
    pytest.param(Case(400, "InvalidChooseRequest", ("actions[0].slot", "not among the slots"),
                      "actions[0].slot", path=SLATES,
                      body=_with_action(slates_body(), 0, slot="to\x00p")),
                 id="slates-nul-in-an-action-slot"),
    pytest.param(Case(400, "InvalidChooseRequest", ("slots[0].id", "NUL"), "slots[0].id", path=SLATES,
                      body={"actions": [{"id": "t0", "slot": "to\x00p"}],
                            "slots": [_slot("to\x00p", "t0")]}),
                 id="slates-nul-in-a-slot-id-its-actions-name"),
    # -- cb: slots are not for it -----------------------------------------------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("`slots`", "ccb and slates", "cb"), "slots",
                      path=CB, body=choose_body(slots=[_slot("hero", "a0")])),
                 id="slots-on-a-cb-loop"),
    pytest.param(Case(400, "InvalidChooseRequest", ("actions[1].slot", "slates"), "actions[1].slot",
                      path=CB, body=_with_action(choose_body(), 1, slot="hero")),
                 id="action-slot-on-a-cb-loop"),
    # -- rewards -----------------------------------------------------------------------------------
    pytest.param(Case(422, "UnknownSlot", ("'footer'", "hero, side"), "slot", path=CCB_REWARDS,
                      body={"rewards": {"click": 1}, "slot": "footer"}),
                 id="ccb-reward-for-an-unknown-slot"),
    pytest.param(Case(422, "SlotRequired", ("ccb", "`slot`"), "slot", path=CCB_REWARDS,
                      body={"rewards": {"click": 1}}),
                 id="ccb-reward-without-a-slot"),
    pytest.param(Case(422, "UnknownObjective", ("'bogus'", "click, revenue"), "rewards.bogus",
                      path=CCB_REWARDS, body={"rewards": {"click": 1, "bogus": 1}, "slot": "hero"}),
                 id="ccb-reward-for-an-unknown-objective"),
    pytest.param(Case(400, "InvalidRewardRequest", ("slot", "at least 1"), "slot", path=CCB_REWARDS,
                      body={"rewards": {"click": 1}, "slot": ""}),
                 id="ccb-reward-with-an-empty-slot"),
    pytest.param(Case(400, "InvalidRewardRequest", ("slot", "valid string"), "slot", path=CCB_REWARDS,
                      body={"rewards": {"click": 1}, "slot": 0}),
                 id="ccb-reward-with-a-slot-not-a-string"),
    pytest.param(Case(400, "InvalidRewardRequest", ("NUL",), "slot", path=CCB_REWARDS,
                      body={"rewards": {"click": 1}, "slot": "he\x00ro"}),
                 id="ccb-reward-with-nul-in-the-slot"),
    pytest.param(Case(404, "EventNotFound", ("'nope'",), "event_id",
                      path="/v1/loops/hero/events/nope/rewards",
                      body={"rewards": {"click": 1}, "slot": "hero"}),
                 id="ccb-reward-for-an-unknown-event"),
    pytest.param(Case(422, "NoSlots", ("slates", "whole slate", "`slot`"), "slot", path=SLATES_REWARDS,
                      body={"rewards": {"click": 1}, "slot": "top"}),
                 id="slates-reward-with-a-slot"),
    pytest.param(Case(422, "NoSlots", ("cb loop has no slots", "`slot`"), "slot", path=CB_REWARDS,
                      body={"rewards": {"click": 1}, "slot": "hero"}),
                 id="cb-reward-with-a-slot"),
]


@pytest.fixture
def keys(app, loop_key) -> dict[str, str]:
    """Loop `shop` (cb, from conftest), `hero` (ccb) and `page` (slates), with their keys."""
    service = LoopService(app.extensions["bandits"].db)
    config = {"objectives": OBJECTIVES, "max_actions": 20}
    return {
        "shop": loop_key,
        "hero": service.create("hero", {**config, "kind": "ccb"})["key"],
        "page": service.create("page", {**config, "kind": "slates"})["key"],
    }


def _headers(keys: dict[str, str], path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[path.split('/')[3]]}"}


@pytest.fixture
def known_events(client, keys) -> None:
    for path, body in ((CB, choose_body()), (CCB, ccb_body()), (SLATES, slates_body())):
        reply = client.post(path, json={**body, "event_id": KNOWN}, headers=_headers(keys, path))
        assert reply.status_code == 201, reply.json


@pytest.mark.parametrize("case", CASES)
def test_bad_slot_input_is_refused_plainly_and_writes_nothing(client, db, keys, known_events,
                                                              case: Case):
    decisions, outcomes = count_rows(db), count_outcomes(db)
    assert decisions == 3

    reply = _send(client, case, _headers(keys, case.path))

    assert_refused(reply, case)
    assert (count_rows(db), count_outcomes(db)) == (decisions, outcomes)


def test_the_valid_bodies_the_cases_start_from_are_served(client, db, keys, known_events):
    """Each case above breaks one thing in a body that is otherwise accepted."""
    for path, body in ((CCB, ccb_body()), (SLATES, slates_body())):
        reply = client.post(path, json=body, headers=_headers(keys, path))
        assert reply.status_code == 201, reply.json
    for path, body in ((CCB_REWARDS, {"rewards": {"click": 1}, "slot": "side"}),
                       (SLATES_REWARDS, {"rewards": {"click": 1}}),
                       (CB_REWARDS, {"rewards": {"click": 1}})):
        reply = client.post(path, json=body, headers=_headers(keys, path))
        assert reply.status_code == 202, reply.json
    assert (count_rows(db), count_outcomes(db)) == (5, 3)
