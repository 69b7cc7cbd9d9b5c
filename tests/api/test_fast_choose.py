"""/choose served in front of Flask (bandits.api.fast) answers exactly as the Flask route does.

Two apps on one database, one with the fast path and one without (``FAST_CHOOSE``), get the same
requests: every choose case of the bad-input table, the key and loop cases, and requests the fast
path leaves to Flask. Status, headers and body must match; a served decision must match in all
but what its own event id draws.
"""

from __future__ import annotations

import json

import pytest

from bandits.api import create_app
from bandits.services.loops import LoopService
from tests.api.test_bad_input import CASES, CHOOSE, KNOWN, Case, _send
from tests.conftest import ADMIN
from tests.helpers import choose_body, count_rows

CHOOSE_CASES = [param for param in CASES if param.values[0].path == CHOOSE]


@pytest.fixture
def apps(app, settings, loop_key):
    """(fast, flask): ``app`` (the fast path is on by default) and one without it, same database."""
    flask_only = create_app(settings, {"TESTING": True, "FAST_CHOOSE": False})
    yield app, flask_only
    flask_only.extensions["bandits"].close()


def _same_reply(fast, flask) -> None:
    assert fast.status == flask.status
    json_type = "application/json"
    assert fast.headers.get("Content-Type") == flask.headers.get("Content-Type") == json_type
    assert int(fast.headers["Content-Length"]) == len(fast.data)
    assert fast.json == flask.json


def test_the_fast_path_is_what_serves_choose(apps, auth):
    fast, flask = apps
    assert type(fast.wsgi_app).__name__ == "FastChoose"
    assert type(flask.wsgi_app).__name__ != "FastChoose"


@pytest.mark.parametrize("case", CHOOSE_CASES)
def test_every_refusal_is_the_flask_route_s(apps, auth, db, case: Case):
    fast, flask = apps
    fast.test_client().post(CHOOSE, json=choose_body(event_id=KNOWN), headers=auth)  # for 409 cases
    decisions = count_rows(db)

    replies = [_send(app.test_client(), case, auth) for app in (fast, flask)]

    _same_reply(*replies)
    assert replies[0].status_code == case.status
    assert count_rows(db) == decisions


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        pytest.param({}, CHOOSE, id="no-key"),
        pytest.param({"Authorization": "Basic abc"}, CHOOSE, id="not-bearer"),
        pytest.param({"Authorization": "Bearer "}, CHOOSE, id="empty-key"),
        pytest.param({"Authorization": "Bearer bk_unknown"}, CHOOSE, id="unknown-key"),
        pytest.param("other", CHOOSE, id="another-loop-s-key"),
        pytest.param("own", "/v1/loops/nowhere/choose", id="unknown-loop"),
        pytest.param("own", "/v1/loops/sh%00op/choose", id="nul-in-the-loop-name"),
        pytest.param("own", "/v1/loops/shop/choose/", id="trailing-slash"),
    ],
)
def test_keys_and_loops_are_checked_as_by_the_flask_route(apps, auth, db, headers, path):
    fast, flask = apps
    if headers == "other":
        other = LoopService(db).create("other", {"objectives": [{"name": "click"}]})["key"]
        headers = {"Authorization": f"Bearer {other}"}
    elif headers == "own":
        headers = auth
    decisions = count_rows(db)

    replies = [
        app.test_client().post(path, json=choose_body(), headers=headers) for app in (fast, flask)
    ]

    _same_reply(*replies)
    assert replies[0].status_code in (401, 403, 404)
    assert count_rows(db) == decisions


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
@pytest.mark.parametrize("key", ["loop", "admin"])
def test_a_decision_is_served_alike(apps, auth, db, content_type, key):
    fast, flask = apps
    headers = auth if key == "loop" else ADMIN
    replies = []
    for name, app in (("fast", fast), ("flask", flask)):
        body = choose_body(
            event_id=f"{name}-{key}-{content_type}", context={"user": {"country": "AR"}}
        )
        replies.append(app.test_client().post(
            CHOOSE, data=json.dumps(body), content_type=content_type, headers=headers
        ))
    for reply in replies:
        assert reply.status_code == 201, reply.json
        assert reply.headers["Content-Type"] == "application/json"
        assert int(reply.headers["Content-Length"]) == len(reply.data)
    fast_reply, flask_reply = (reply.json for reply in replies)
    assert fast_reply.keys() == flask_reply.keys()
    assert fast_reply["model_version"] == flask_reply["model_version"]
    assert sorted(item["id"] for item in fast_reply["ranking"]) == sorted(
        item["id"] for item in flask_reply["ranking"]
    )
    logged = fast.test_client().get(f"/v1/loops/shop/events/{fast_reply['event_id']}", headers=auth)
    assert logged.status_code == 200 and logged.json["action"] == fast_reply["action"]


def test_other_methods_and_routes_go_to_flask(apps, auth):
    fast, _ = apps
    client = fast.test_client()
    assert client.get(CHOOSE, headers=auth).status_code == 405
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/loops/shop", headers=ADMIN).status_code == 200
