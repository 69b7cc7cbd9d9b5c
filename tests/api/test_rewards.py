"""Rewards and activation: what is stored, what is accepted once, what the event look-up shows."""

from __future__ import annotations

import threading

import pytest

from tests.helpers import choose_body, count_outcomes

CHOOSE = "/v1/loops/shop/choose"


def _choose(client, headers, event_id: str, **overrides) -> None:
    reply = client.post(CHOOSE, json=choose_body(event_id=event_id, **overrides), headers=headers)
    assert reply.status_code == 201, reply.json


def _reward(client, headers, event_id: str, body: dict):
    return client.post(f"/v1/loops/shop/events/{event_id}/rewards", json=body, headers=headers)


def _outcomes(client, headers, event_id: str) -> list[dict]:
    reply = client.get(f"/v1/loops/shop/events/{event_id}", headers=headers)
    assert reply.status_code == 200, reply.json
    return reply.json["outcomes"]


@pytest.fixture
def event(client, auth) -> str:
    _choose(client, auth, "evt")
    return "evt"


def test_several_objectives_in_one_call_store_one_outcome_each(client, auth, db, event):
    reply = _reward(client, auth, event, {"rewards": {"click": 1, "revenue": 12.5}})

    assert reply.status_code == 202, reply.json
    assert reply.json == {"event_id": event, "accepted": 2, "duplicate": False, "late": False}
    assert count_outcomes(db) == 2
    outcomes = _outcomes(client, auth, event)
    assert {(o["objective"], o["value"]) for o in outcomes} == {("click", 1.0), ("revenue", 12.5)}
    assert all(o["slot"] is None and o["reward_id"] is None and o["ts"] for o in outcomes)


def test_a_repeated_reward_id_is_accepted_once(client, auth, db, event):
    body = {"rewards": {"click": 1, "revenue": 3.0}, "reward_id": "order-9"}
    first = _reward(client, auth, event, body)
    assert first.status_code == 202, first.json
    assert first.json == {"event_id": event, "accepted": 2, "duplicate": False, "late": False}

    for repeat in (body, {"rewards": {"revenue": 50.0}, "reward_id": "order-9"}):
        again = _reward(client, auth, event, repeat)
        assert again.status_code == 202, again.json
        assert again.json == {"event_id": event, "accepted": 0, "duplicate": True, "late": False}

    assert count_outcomes(db) == 2
    stored = {(o["objective"], o["value"], o["reward_id"]) for o in _outcomes(client, auth, event)}
    assert stored == {("click", 1.0, "order-9"), ("revenue", 3.0, "order-9")}


def test_a_reward_id_is_scoped_to_its_event(client, auth, db, event):
    _choose(client, auth, "evt-2")
    for event_id in (event, "evt-2"):
        reply = _reward(client, auth, event_id, {"rewards": {"click": 1}, "reward_id": "r-1"})
        assert reply.json["duplicate"] is False
    assert count_outcomes(db) == 2


def test_a_reward_id_racing_with_itself_is_stored_once(app, auth, db, event):
    replies = []

    def send() -> None:
        client = app.test_client()
        replies.append(_reward(client, auth, event, {"rewards": {"click": 1}, "reward_id": "race"}))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [reply.status_code for reply in replies] == [202] * 8, [r.json for r in replies]
    assert sorted(reply.json["duplicate"] for reply in replies) == [False] + [True] * 7
    assert count_outcomes(db) == 1


def test_rewards_without_reward_id_accumulate(client, auth, db, event):
    for value in (1.0, 2.5, 4.0):
        reply = _reward(client, auth, event, {"rewards": {"revenue": value}})
        assert reply.status_code == 202, reply.json
        assert reply.json["duplicate"] is False
    assert count_outcomes(db) == 3
    assert [o["value"] for o in _outcomes(client, auth, event)] == [1.0, 2.5, 4.0]


def test_booleans_count_as_one_and_zero(client, auth, event):
    _reward(client, auth, event, {"rewards": {"click": True}})
    _reward(client, auth, event, {"rewards": {"click": False}})
    values = [o["value"] for o in _outcomes(client, auth, event)]
    assert values == [1.0, 0.0]
    assert all(type(value) is float for value in values)


def test_integers_and_negative_values_are_outcomes(client, auth, event):
    reply = _reward(client, auth, event, {"rewards": {"revenue": -3, "click": 0}})
    assert reply.status_code == 202, reply.json
    assert sorted(o["value"] for o in _outcomes(client, auth, event)) == [-3.0, 0.0]


def test_a_slot_on_a_cb_loop_is_refused(client, auth, db, event):
    reply = _reward(client, auth, event, {"rewards": {"click": 1}, "slot": "hero"})
    assert reply.status_code == 422
    assert reply.json["error"] == {
        "code": "NoSlots", "message": "a cb loop has no slots; leave `slot` out", "target": "slot"
    }
    assert count_outcomes(db) == 0


def test_the_event_shows_its_outcomes_in_arrival_order(client, auth, event):
    _reward(client, auth, event, {"rewards": {"click": 1}, "reward_id": "view"})
    _reward(client, auth, event, {"rewards": {"revenue": 9.99}})
    outcomes = _outcomes(client, auth, event)
    assert [(o["objective"], o["value"], o["reward_id"]) for o in outcomes] == [
        ("click", 1.0, "view"), ("revenue", 9.99, None)
    ]
    assert outcomes[0]["ts"] <= outcomes[1]["ts"]


# -- activation -------------------------------------------------------------------------------


def test_a_deferred_decision_is_activated_once(client, auth):
    _choose(client, auth, "later", defer=True)
    logged = client.get("/v1/loops/shop/events/later", headers=auth).json
    assert logged["deferred"] is True
    assert logged["activated_at"] is None

    first = client.post("/v1/loops/shop/events/later/activate", headers=auth)
    assert first.status_code == 202, first.json
    assert first.json == {"event_id": "later", "activated": True}
    activated_at = client.get("/v1/loops/shop/events/later", headers=auth).json["activated_at"]
    assert activated_at is not None

    again = client.post("/v1/loops/shop/events/later/activate", headers=auth)
    assert again.status_code == 202, again.json
    assert again.json == {"event_id": "later", "activated": False}
    logged = client.get("/v1/loops/shop/events/later", headers=auth).json
    assert logged["activated_at"] == activated_at


def test_activating_a_decision_that_was_not_deferred_is_a_conflict(client, auth, event):
    reply = client.post(f"/v1/loops/shop/events/{event}/activate", headers=auth)
    assert reply.status_code == 409
    assert reply.json["error"]["code"] == "NotDeferred"
    assert repr(event) in reply.json["error"]["message"]
    assert client.get(f"/v1/loops/shop/events/{event}", headers=auth).json["activated_at"] is None


def test_activating_an_unknown_event_is_404(client, auth):
    reply = client.post("/v1/loops/shop/events/never/activate", headers=auth)
    assert reply.status_code == 404
    assert reply.json["error"]["code"] == "EventNotFound"
    assert "'never'" in reply.json["error"]["message"]


def test_a_deferred_decision_takes_rewards_before_activation(client, auth, db):
    _choose(client, auth, "later", defer=True)
    assert _reward(client, auth, "later", {"rewards": {"click": 1}}).status_code == 202
    assert count_outcomes(db) == 1
