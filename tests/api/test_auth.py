"""API keys: who may call what, keys stored hashed, revocation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bandits.services.loops import LoopService
from bandits.store.loops import revoke_key
from bandits.store.models import ApiKey
from tests.conftest import ADMIN, ADMIN_KEY
from tests.helpers import choose_body, count_rows

CHOOSE = "/v1/loops/shop/choose"


def _error(reply, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert reply.json["error"]["code"] == code
    return reply.json["error"]


@pytest.fixture
def other_loop(app) -> str:
    LoopService(app.extensions["bandits"].db).create("other", {})
    return "other"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer bk_not-a-key-at-all"}, id="garbage-key"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
        pytest.param({"Authorization": "Bearer"}, id="scheme-without-key"),
        pytest.param({"Authorization": "Bearer "}, id="blank-key"),
        pytest.param({"Authorization": ADMIN_KEY}, id="key-without-scheme"),
    ],
)
def test_a_missing_or_unknown_key_is_401(client, loop_key, db, headers):
    reply = client.post(CHOOSE, json=choose_body(), headers=headers)
    error = _error(reply, 401, "Unauthorized")
    assert "Bearer" in error["message"] or "not valid" in error["message"]
    assert count_rows(db) == 0


def test_every_route_but_health_and_the_document_needs_a_key(client, app, loop_key):
    open_routes = {"/healthz", "/readyz", "/openapi.json"}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule in open_routes:
            continue
        path = rule.rule.replace("<loop>", "shop").replace("<path:event_id>", "e1")
        path = path.replace("<int:version>", "1").replace("<int:job_id>", "1")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            reply = client.open(path, method=method, json={})
            assert reply.status_code == 401, (method, path, reply.json)


def test_the_scheme_is_case_insensitive(client, auth, loop_key):
    reply = client.post(CHOOSE, json=choose_body(), headers={"Authorization": f"bearer {loop_key}"})
    assert reply.status_code == 201, reply.json


def test_a_loop_key_is_refused_on_another_loop(client, auth, other_loop, db):
    choose = client.post(f"/v1/loops/{other_loop}/choose", json=choose_body(), headers=auth)
    assert "other" in _error(choose, 403, "Forbidden")["message"]
    _error(client.get(f"/v1/loops/{other_loop}", headers=auth), 403, "Forbidden")
    _error(client.get(f"/v1/loops/{other_loop}/events/e1", headers=auth), 403, "Forbidden")
    _error(client.post(f"/v1/loops/{other_loop}/events/e1/rewards", json={"rewards": {"reward": 1}},
                       headers=auth), 403, "Forbidden")
    activate = client.post(f"/v1/loops/{other_loop}/events/e1/activate", headers=auth)
    _error(activate, 403, "Forbidden")
    assert count_rows(db) == 0


@pytest.mark.parametrize(
    "method, path, body",
    [
        pytest.param("post", "/v1/loops", {"name": "sneaky"}, id="create-loop"),
        pytest.param("get", "/v1/loops", None, id="list-loops"),
        pytest.param("patch", "/v1/loops/shop", {"max_actions": 5}, id="patch-own-loop"),
        pytest.param("post", "/v1/loops/shop/keys", None, id="create-key-for-own-loop"),
    ],
)
def test_a_loop_key_is_refused_on_admin_routes(client, auth, db, method, path, body):
    before = count_rows(db, ApiKey)
    reply = client.open(path, method=method.upper(), json=body, headers=auth)
    assert "admin key" in _error(reply, 403, "Forbidden")["message"]
    assert client.get("/v1/loops/shop", headers=auth).json["config_version"] == 1
    assert client.get("/v1/loops/sneaky", headers=ADMIN).status_code == 404
    assert count_rows(db, ApiKey) == before


def test_a_loop_key_reads_its_own_loop(client, auth):
    reply = client.get("/v1/loops/shop", headers=auth)
    assert reply.status_code == 200, reply.json
    assert reply.json["name"] == "shop"


def test_the_admin_key_works_on_any_loop(client, loop_key, other_loop):
    for loop in ("shop", other_loop):
        reply = client.post(f"/v1/loops/{loop}/choose", json=choose_body(event_id="by-admin"),
                            headers=ADMIN)
        assert reply.status_code == 201, reply.json
        assert client.get(f"/v1/loops/{loop}/events/by-admin", headers=ADMIN).status_code == 200


def test_a_stored_admin_key_works_like_the_configured_one(client, app, loop_key):
    key = LoopService(app.extensions["bandits"].db).create_key(None)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/loops", headers=headers).status_code == 200
    patched = client.patch("/v1/loops/shop", json={"max_actions": 5}, headers=headers)
    assert patched.status_code == 200, patched.json


def test_keys_are_stored_hashed(client, db, loop_key):
    created = client.post("/v1/loops/shop/keys", headers=ADMIN)
    assert created.status_code == 201, created.json
    keys = [loop_key, created.json["key"]]
    assert created.json["key"] != loop_key
    with db.session() as session:
        stored = [
            " ".join(str(value) for value in row)
            for row in session.execute(select(ApiKey.__table__)).all()
        ]
    assert len(stored) == 2
    for key in keys:
        assert all(key not in row for row in stored)
        # the stored prefix lets an operator name a key without revealing it
        assert any(key[:8] in row for row in stored)
    assert all(ADMIN_KEY not in row for row in stored)


def test_a_new_loop_key_works_for_its_loop(client, loop_key):
    key = client.post("/v1/loops/shop/keys", headers=ADMIN).json["key"]
    reply = client.post(CHOOSE, json=choose_body(), headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 201, reply.json


def test_a_revoked_key_stops_working(client, db, auth, loop_key):
    assert client.post(CHOOSE, json=choose_body(event_id="before"), headers=auth).status_code == 201
    with db.session() as session:
        assert revoke_key(loop_key[:8], session=session) == 1

    reply = client.post(CHOOSE, json=choose_body(event_id="after"), headers=auth)

    assert "revoked" in _error(reply, 401, "Unauthorized")["message"]
    _error(client.get("/v1/loops/shop/events/before", headers=auth), 401, "Unauthorized")
    assert count_rows(db) == 1
    # another key of the same loop is unaffected
    other = client.post("/v1/loops/shop/keys", headers=ADMIN).json["key"]
    assert client.post(CHOOSE, json=choose_body(), headers={"Authorization": f"Bearer {other}"}
                       ).status_code == 201
