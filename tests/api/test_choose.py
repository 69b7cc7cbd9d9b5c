"""choose: the reply, the logged row, excluded/baseline, determinism."""

from __future__ import annotations

import pytest

from bandits.learning.sampling import sample, seed_for
from tests.helpers import choose_body, count_rows


def test_choose_logs_the_decision_it_returns(client, auth):
    reply = client.post("/v1/loops/shop/choose", json=choose_body(event_id="evt-1"), headers=auth)
    assert reply.status_code == 201, reply.json
    body = reply.json
    assert body["event_id"] == "evt-1"
    assert body["model_version"] == 0
    assert {r["id"] for r in body["ranking"]} == {"a0", "a1", "a2"}
    assert sum(r["probability"] for r in body["ranking"]) == pytest.approx(1.0)
    probabilities = [r["probability"] for r in body["ranking"]]
    assert probabilities == sorted(probabilities, reverse=True)

    logged = client.get("/v1/loops/shop/events/evt-1", headers=auth).json
    assert logged["action"] == body["action"]
    assert logged["probability"] == pytest.approx(body["probability"])
    assert len(logged["pmf"]) == 3
    assert logged["context"] == {"user": {"country": "AR", "age": 31}}
    assert logged["baseline"] == "a0"
    assert logged["outcomes"] == []


def test_excluded_actions_get_zero_probability_and_stay_listed(client, auth, db):
    for i in range(20):
        reply = client.post(
            "/v1/loops/shop/choose", json=choose_body(excluded=["a0", "a2"], event_id=f"e{i}"),
            headers=auth,
        )
        assert reply.status_code == 201
        assert reply.json["action"] == "a1"
        assert reply.json["probability"] == pytest.approx(1.0)
        ranking = {r["id"]: r["probability"] for r in reply.json["ranking"]}
        assert ranking == {"a1": pytest.approx(1.0), "a0": 0.0, "a2": 0.0}
    assert count_rows(db) == 20


def test_generated_event_ids_are_unique(client, auth):
    ids = {client.post("/v1/loops/shop/choose", json=choose_body(), headers=auth).json["event_id"]
           for _ in range(5)}
    assert len(ids) == 5


def test_the_draw_is_the_seeded_sample_of_the_logged_pmf(client, auth):
    chosen = {}
    for i in range(40):
        event_id = f"draw-{i}"
        client.post("/v1/loops/shop/choose", json=choose_body(event_id=event_id), headers=auth)
        logged = client.get(f"/v1/loops/shop/events/{event_id}", headers=auth).json
        ids = [a["id"] for a in logged["actions"]]
        loop_id = 1
        assert logged["action"] == ids[sample(logged["pmf"], seed_for(loop_id, event_id))]
        chosen[logged["action"]] = chosen.get(logged["action"], 0) + 1
    assert len(chosen) > 1  # an untrained model explores: several actions get picked


def test_apprentice_serves_the_baseline_with_certainty(client, auth):
    patched = client.patch("/v1/loops/shop", json={"learning_mode": "apprentice"},
                           headers={"Authorization": "Bearer test-admin-key-0123456789abcdef"})
    assert patched.status_code == 200, patched.json
    reply = client.post("/v1/loops/shop/choose", json=choose_body(baseline="a2"), headers=auth)
    assert reply.json["action"] == "a2"
    assert reply.json["probability"] == 1.0


def test_unicode_and_vw_syntax_in_features_are_served(client, auth):
    body = choose_body(context={"user": {"name": "ñandú | x:y  z", "tags": ["a b", "c|d"]},
                                "page": "https://ex.com/a?b=c d"})
    assert client.post("/v1/loops/shop/choose", json=body, headers=auth).status_code == 201
