"""Multi-slot loops over HTTP (`ccb` and `slates`): the per-slot reply, the seeded draws, what is
logged per slot, apprentice mode, per-slot rewards, the fixed kind and the OpenAPI document.
Every test runs on SQLite and on Postgres, with real VW."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from bandits.services.loops import LoopService
from bandits.store.decisions import logged_actions_of
from bandits.store.models import Decision, Loop, LoopConfigVersion
from tests.conftest import ADMIN, ADMIN_KEY
from tests.helpers import actions, count_rows

ROOT = Path(__file__).resolve().parents[2]
OBJECTIVES = [{"name": "click"}, {"name": "revenue", "weight": 0.1}]

POOL = [{"id": f"a{i}", "features": {"offer": {"vertical": f"v{i % 3}", "payout": i + 0.5}}}
        for i in range(6)]
CCB_SLOTS = [
    {"id": "hero", "baseline": "a0", "features": {"place": {"position": 0, "size": "big"}}},
    {"id": "side", "baseline": "a1", "excluded": ["a5"], "features": {"place": {"position": 1}}},
    {"id": "foot", "baseline": "a2", "excluded": ["a0", "a3"]},
]
SLATE_ACTIONS = (
    [{"id": f"t{i}", "slot": "top", "features": {"offer": {"n": i}}} for i in range(4)]
    + [{"id": f"b{i}", "slot": "bottom", "features": {"offer": {"n": i}}} for i in range(3)]
)
SLATES_SLOTS = [
    {"id": "top", "baseline": "t0", "excluded": ["t3"], "features": {"place": {"row": 1}}},
    {"id": "bottom", "baseline": "b2"},
]


def _create(app, name: str, kind: str, **config) -> str:
    created = LoopService(app.extensions["bandits"].db).create(
        name, {"kind": kind, "objectives": OBJECTIVES, **config})
    return created["key"]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def ccb(app) -> dict[str, str]:
    return _bearer(_create(app, "hero", "ccb"))


@pytest.fixture
def slates(app) -> dict[str, str]:
    return _bearer(_create(app, "page", "slates"))


def ccb_body(event_id: str, **overrides) -> dict:
    body = {"event_id": event_id, "context": {"user": {"country": "AR", "age": 31}},
            "actions": POOL, "slots": CCB_SLOTS}
    body.update(overrides)
    return body


def slates_body(event_id: str, **overrides) -> dict:
    body = {"event_id": event_id, "context": {"user": {"country": "UY"}},
            "actions": SLATE_ACTIONS, "slots": SLATES_SLOTS}
    body.update(overrides)
    return body


def _choose(client, loop: str, headers, body: dict) -> dict:
    reply = client.post(f"/v1/loops/{loop}/choose", json=body, headers=headers)
    assert reply.status_code == 201, reply.json
    return reply.json


def _check_ranking(slot: dict) -> dict[str, float]:
    """What every slot of every reply satisfies; returns the slot's ranking as a dict."""
    probabilities = [r["probability"] for r in slot["ranking"]]
    assert probabilities == sorted(probabilities, reverse=True), slot
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-6), slot
    assert all(p >= 0.0 for p in probabilities), slot
    ranking = {r["id"]: r["probability"] for r in slot["ranking"]}
    assert len(ranking) == len(slot["ranking"]), slot  # no id twice
    assert 0.0 < slot["probability"] <= 1.0, slot
    assert ranking[slot["action"]] == slot["probability"], slot
    return ranking


# -- the reply -------------------------------------------------------------------------------


def test_ccb_fills_every_slot_from_the_pool_without_repeating_an_action(client, ccb):
    pool = [a["id"] for a in POOL]
    seen: dict[str, Counter] = {slot["id"]: Counter() for slot in CCB_SLOTS}
    for i in range(40):
        reply = _choose(client, "hero", ccb, ccb_body(f"e{i}"))
        assert reply["event_id"] == f"e{i}"
        assert reply["model_version"] == 0
        assert set(reply) == {"event_id", "model_version", "slots"}
        assert [slot["id"] for slot in reply["slots"]] == ["hero", "side", "foot"]
        taken: list[str] = []
        for slot, asked in zip(reply["slots"], CCB_SLOTS):
            ranking = _check_ranking(slot)
            assert sorted(ranking) == sorted(pool)  # ccb: every slot ranks the whole pool
            for action_id in asked.get("excluded", []) + taken:  # excluded, or taken before
                assert ranking[action_id] == 0.0, (action_id, slot)
            allowed = [a for a in pool if a not in asked.get("excluded", []) and a not in taken]
            # The empty model spreads each slot evenly over what it may still take.
            assert all(ranking[a] == pytest.approx(1 / len(allowed), abs=1e-6) for a in allowed)
            assert slot["action"] in allowed
            taken.append(slot["action"])
            seen[slot["id"]][slot["action"]] += 1
        assert len(set(taken)) == len(taken)
    # The draws explore: each slot took several actions over 40 events.
    assert all(len(counter) >= 3 for counter in seen.values()), seen


def test_slates_fills_each_slot_from_its_own_actions(client, slates):
    own = {"top": {"t0", "t1", "t2", "t3"}, "bottom": {"b0", "b1", "b2"}}
    seen: dict[str, Counter] = {"top": Counter(), "bottom": Counter()}
    for i in range(40):
        reply = _choose(client, "page", slates, slates_body(f"e{i}"))
        assert set(reply) == {"event_id", "model_version", "slots"}
        assert [slot["id"] for slot in reply["slots"]] == ["top", "bottom"]
        for slot in reply["slots"]:
            ranking = _check_ranking(slot)
            assert set(ranking) == own[slot["id"]]  # a slate slot ranks only its own actions
            assert slot["action"] in own[slot["id"]]
            seen[slot["id"]][slot["action"]] += 1
        top = {r["id"]: r["probability"] for r in reply["slots"][0]["ranking"]}
        assert top["t3"] == 0.0  # excluded from top
        assert top["t0"] == pytest.approx(1 / 3, abs=1e-6)
        bottom = {r["id"]: r["probability"] for r in reply["slots"][1]["ranking"]}
        assert all(p == pytest.approx(1 / 3, abs=1e-6) for p in bottom.values())
    assert set(seen["top"]) == {"t0", "t1", "t2"}, seen
    assert set(seen["bottom"]) == {"b0", "b1", "b2"}, seen


def test_ccb_with_as_many_slots_as_actions_ranks_everything(client, ccb):
    pool = actions(4)
    slots = [{"id": f"s{k}", "baseline": f"a{k}"} for k in range(4)]
    orders = set()
    for i in range(20):
        reply = _choose(client, "hero", ccb, ccb_body(f"rank-{i}", actions=pool, slots=slots))
        order = [slot["action"] for slot in reply["slots"]]
        assert sorted(order) == ["a0", "a1", "a2", "a3"]  # a full ordering of the pool
        for k, slot in enumerate(reply["slots"]):
            ranking = _check_ranking(slot)
            assert sum(1 for p in ranking.values() if p > 0) == 4 - k
            assert slot["probability"] == pytest.approx(1 / (4 - k), abs=1e-6)
        assert reply["slots"][-1]["probability"] == 1.0
        orders.add(tuple(order))
    assert len(orders) > 5  # not one fixed order


def test_unusual_slot_ids_and_features_are_served_and_rewarded(client, ccb, slates):
    slot_id = "hero | 1:x  ñ"
    reply = _choose(client, "hero", ccb, ccb_body("odd", slots=[
        {"id": slot_id, "baseline": "a0", "features": {"place": {"name": "a|b:c d", "tags": ["x y"]}}},
        {"id": "side", "baseline": "a1"}]))
    assert reply["slots"][0]["id"] == slot_id
    rewarded = client.post("/v1/loops/hero/events/odd/rewards",
                           json={"rewards": {"click": 1}, "slot": slot_id}, headers=ccb)
    assert rewarded.status_code == 202, rewarded.json
    top = "top | 1:x"
    reply = _choose(client, "page", slates, slates_body(
        "odd", actions=[{"id": "t0", "slot": top}, {"id": "b0", "slot": "bottom"}],
        slots=[{"id": top, "baseline": "t0"}, {"id": "bottom", "baseline": "b0"}]))
    assert [(s["id"], s["action"], s["probability"]) for s in reply["slots"]] == [
        (top, "t0", 1.0), ("bottom", "b0", 1.0)]


# -- the same event id, the same draws -------------------------------------------------------

_CHOOSE_IN_A_FRESH_PROCESS = """
import json, sys
from bandits.api import create_app
from bandits.config import load_settings
url, key, loop, bodies = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.stdin.read())
app = create_app(load_settings(database_url=url, admin_key=key, cache_seconds=0.0), {"TESTING": True})
client = app.test_client()
replies = []
for body in bodies:
    reply = client.post(f"/v1/loops/{loop}/choose", json=body,
                        headers={"Authorization": f"Bearer {key}"})
    replies.append([reply.status_code, reply.get_json()])
app.extensions["bandits"].close()
print(json.dumps(replies))
"""


def _forget_decisions(db, loop: str) -> None:
    with db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == loop))
        session.execute(delete(Decision).where(Decision.loop_id == loop_id))


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_the_same_event_id_gives_the_same_draws_in_a_fresh_process(
    client, db, database_url, ccb, slates, kind
):
    loop, headers, body = (("hero", ccb, ccb_body) if kind == "ccb" else ("page", slates, slates_body))
    bodies = [body(f"same-{i}") for i in range(25)]
    first = [_choose(client, loop, headers, b) for b in bodies]
    # Within the loop an event id is used once: the repeat is refused and changes nothing.
    again = client.post(f"/v1/loops/{loop}/choose", json=bodies[0], headers=headers)
    assert again.status_code == 409 and again.json["error"]["code"] == "DuplicateEvent"
    assert count_rows(db) == 25

    # Another process, with its own VW workspace, asked in the opposite order (so nothing it
    # draws can come from a random state carried from one choose to the next).
    _forget_decisions(db, loop)
    done = subprocess.run(
        [sys.executable, "-c", _CHOOSE_IN_A_FRESH_PROCESS, database_url, ADMIN_KEY, loop],
        input=json.dumps(bodies[::-1]), capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout.strip().splitlines()[-1])[::-1]
    assert [status for status, _ in second] == [201] * 25
    assert [reply for _, reply in second] == first
    # The draws differ between events (and between the slots of one event): they are not one
    # fixed pick.
    assert len({tuple(s["action"] for s in reply["slots"]) for reply in first}) > 5


# -- the log ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_the_log_holds_every_slots_choice_probability_and_distribution(client, db, ccb, slates, kind):
    loop, headers, body = (("hero", ccb, ccb_body) if kind == "ccb" else ("page", slates, slates_body))
    asked = body("logged")
    reply = _choose(client, loop, headers, asked)

    event = client.get(f"/v1/loops/{loop}/events/logged", headers=headers)
    assert event.status_code == 200, event.json
    event = event.json
    ids = [a["id"] for a in event["actions"]]
    assert event["actions"] == asked["actions"]  # as sent (slates: with each action's slot)
    assert event["context"] == asked["context"]
    assert event["model_version"] == reply["model_version"] == 0
    assert event["excluded"] == []
    assert len(event["slots"]) == len(asked["slots"])
    for logged, sent, replied in zip(event["slots"], asked["slots"], reply["slots"]):
        assert logged["id"] == sent["id"] == replied["id"]
        assert logged["features"] == sent.get("features", {})
        assert logged["baseline"] == sent["baseline"]
        assert logged["excluded"] == sent.get("excluded", [])
        assert logged["chosen"] == replied["action"]
        assert logged["probability"] == replied["probability"]
        # The full distribution, aligned with `actions`; the reply's ranking is the same numbers.
        assert len(logged["pmf"]) == len(ids)
        assert sum(logged["pmf"]) == pytest.approx(1.0, abs=1e-6)
        assert logged["pmf"][ids.index(logged["chosen"])] == logged["probability"]
        ranked = {r["id"]: r["probability"] for r in replied["ranking"]}
        assert {i: p for i, p in zip(ids, logged["pmf"]) if i in ranked} == ranked
        assert all(p == 0.0 for i, p in zip(ids, logged["pmf"]) if i not in ranked)
        for action_id in logged["excluded"]:
            assert logged["pmf"][ids.index(action_id)] == 0.0
    # The decision's own columns repeat the first slot's.
    first = event["slots"][0]
    assert (event["action"], event["probability"], event["pmf"], event["baseline"]) == (
        first["chosen"], first["probability"], first["pmf"], first["baseline"])

    with db.session() as session:
        row = session.scalars(select(Decision).where(Decision.event_id == "logged")).one()
        assert row.slots == event["slots"]
        assert (row.chosen, row.probability, row.pmf) == (first["chosen"], first["probability"], first["pmf"])
        assert row.actions is None  # stored once, in the loop's action pools
        assert logged_actions_of(row, session=session) == asked["actions"]


def test_ccb_logged_distributions_leave_out_what_earlier_slots_took(client, ccb):
    _choose(client, "hero", ccb, ccb_body("taken"))
    event = client.get("/v1/loops/hero/events/taken", headers=ccb).json
    ids = [a["id"] for a in event["actions"]]
    taken: list[str] = []
    for slot in event["slots"]:
        for action_id in taken:
            assert slot["pmf"][ids.index(action_id)] == 0.0
        taken.append(slot["chosen"])
    assert len(set(taken)) == 3


# -- apprentice mode -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_apprentice_serves_each_slots_baseline_with_certainty(app, client, kind):
    headers = _bearer(_create(app, "learner", kind, learning_mode="apprentice"))
    body = ccb_body if kind == "ccb" else slates_body
    for i in range(10):
        asked = body(f"b{i}")
        reply = _choose(client, "learner", headers, asked)
        assert [(s["id"], s["action"], s["probability"]) for s in reply["slots"]] == [
            (slot["id"], slot["baseline"], 1.0) for slot in asked["slots"]]
        for slot in reply["slots"]:
            ranking = _check_ranking(slot)
            assert [p for p in ranking.values() if p > 0] == [1.0]
        event = client.get(f"/v1/loops/learner/events/b{i}", headers=headers).json
        assert event["learning_mode"] == "apprentice"
        ids = [a["id"] for a in event["actions"]]
        for logged in event["slots"]:
            assert logged["chosen"] == logged["baseline"]
            assert logged["pmf"] == [1.0 if a == logged["baseline"] else 0.0 for a in ids]


# -- rewards ---------------------------------------------------------------------------------


def test_ccb_rewards_are_stored_with_their_slot(client, ccb):
    _choose(client, "hero", ccb, ccb_body("paid"))
    for body in ({"rewards": {"click": 1}, "slot": "hero"},
                 {"rewards": {"click": True, "revenue": 12.5}, "slot": "foot", "reward_id": "order-1"},
                 {"rewards": {"revenue": 3}, "slot": "hero"}):
        reply = client.post("/v1/loops/hero/events/paid/rewards", json=body, headers=ccb)
        assert reply.status_code == 202, reply.json
        assert reply.json["duplicate"] is False and reply.json["late"] is False
    again = client.post("/v1/loops/hero/events/paid/rewards",
                        json={"rewards": {"click": 0}, "slot": "side", "reward_id": "order-1"}, headers=ccb)
    assert again.json == {"event_id": "paid", "accepted": 0, "duplicate": True, "late": False}

    outcomes = client.get("/v1/loops/hero/events/paid", headers=ccb).json["outcomes"]
    assert sorted((o["slot"], o["objective"], o["value"], o["reward_id"]) for o in outcomes) == [
        ("foot", "click", 1.0, "order-1"), ("foot", "revenue", 12.5, "order-1"),
        ("hero", "click", 1.0, None), ("hero", "revenue", 3.0, None),
    ]


def test_a_slates_reward_is_for_the_whole_slate(client, slates):
    _choose(client, "page", slates, slates_body("paid"))
    reply = client.post("/v1/loops/page/events/paid/rewards",
                        json={"rewards": {"click": 1, "revenue": 2.5}}, headers=slates)
    assert reply.status_code == 202, reply.json
    assert reply.json["accepted"] == 2
    outcomes = client.get("/v1/loops/page/events/paid", headers=slates).json["outcomes"]
    assert sorted((o["slot"], o["objective"], o["value"]) for o in outcomes) == [
        (None, "click", 1.0), (None, "revenue", 2.5)]


# -- the kind is fixed -----------------------------------------------------------------------


@pytest.mark.parametrize("name, kind, other", [
    ("shop", "cb", "ccb"), ("shop", "cb", "slates"), ("hero", "ccb", "slates"), ("hero", "ccb", "cb"),
    ("page", "slates", "cb"), ("page", "slates", "ccb"),
])
def test_a_patch_changing_the_kind_is_refused_and_changes_nothing(
    client, db, loop_key, ccb, slates, name, kind, other
):
    before = client.get(f"/v1/loops/{name}", headers=ADMIN).json
    versions = count_rows(db, LoopConfigVersion)

    reply = client.patch(f"/v1/loops/{name}", json={"kind": other, "reward_wait": "5m"}, headers=ADMIN)

    assert reply.status_code == 422, reply.json
    error = reply.json["error"]
    assert error["code"] == "KindFixed"
    assert error["target"] == "kind"
    assert f"'{kind}'" in error["message"] and f"'{other}'" in error["message"]
    assert client.get(f"/v1/loops/{name}", headers=ADMIN).json == before
    assert count_rows(db, LoopConfigVersion) == versions


def test_a_patch_that_keeps_the_kind_is_applied(client, ccb):
    reply = client.patch("/v1/loops/hero", json={"kind": "ccb", "exploration": {"algorithm": "epsilon"}},
                         headers=ADMIN)
    assert reply.status_code == 200, reply.json
    assert reply.json["kind"] == "ccb" and reply.json["model_reset"] is True
    assert _choose(client, "hero", ccb, ccb_body("after-patch"))["slots"]


def test_a_loop_is_created_with_its_kind(client):
    for kind in ("ccb", "slates"):
        reply = client.post("/v1/loops", json={"name": f"new-{kind}", "config": {"kind": kind}},
                            headers=ADMIN)
        assert reply.status_code == 201, reply.json
        assert reply.json["kind"] == reply.json["config"]["kind"] == kind
        assert client.get(f"/v1/loops/new-{kind}", headers=ADMIN).json["kind"] == kind


# -- the OpenAPI document --------------------------------------------------------------------


def _resolve(doc: dict, schema: dict) -> dict:
    """The object schema behind ``schema`` ($ref, or the non-null member of an anyOf)."""
    if "$ref" in schema:
        return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        (member,) = [m for m in schema["anyOf"] if m.get("type") != "null"]
        return _resolve(doc, member)
    if schema.get("type") == "array":
        return _resolve(doc, schema["items"])
    return schema


def test_openapi_documents_slots_in_the_choose_request_and_reply(client):
    doc = client.get("/openapi.json").json
    post = doc["paths"]["/v1/loops/{loop}/choose"]["post"]
    request = _resolve(doc, post["requestBody"]["content"]["application/json"]["schema"])
    reply = _resolve(doc, post["responses"]["201"]["content"]["application/json"]["schema"])

    slot_in = _resolve(doc, request["properties"]["slots"])
    assert {"id", "features", "baseline", "excluded"} <= set(slot_in["properties"])
    assert {"id", "baseline"} <= set(slot_in["required"])
    action_in = _resolve(doc, request["properties"]["actions"])
    assert "slot" in action_in["properties"]

    slot_out = _resolve(doc, reply["properties"]["slots"])
    assert {"id", "action", "probability", "ranking"} <= set(slot_out["properties"])
    ranked = _resolve(doc, slot_out["properties"]["ranking"])
    assert {"id", "probability"} <= set(ranked["properties"])

    rewards = doc["paths"]["/v1/loops/{loop}/events/{event_id}/rewards"]["post"]
    reward_in = _resolve(doc, rewards["requestBody"]["content"]["application/json"]["schema"])
    assert "slot" in reward_in["properties"]
    event = doc["paths"]["/v1/loops/{loop}/events/{event_id}"]["get"]
    event_out = _resolve(doc, event["responses"]["200"]["content"]["application/json"]["schema"])
    assert "slots" in event_out["properties"]
