"""Loop administration over HTTP: create, configure (versioned), keys, and the OpenAPI document."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from bandits.store.models import ApiKey, Loop, LoopConfigVersion
from tests.conftest import ADMIN
from tests.helpers import actions, choose_body, count_rows

DEFAULT_CONFIG = {
    "kind": "cb",
    "objectives": [{"name": "reward", "weight": 1.0, "aggregation": "sum", "default": 0.0}],
    "reward_wait": 600.0,
    "learning_mode": "online",
    "exploration": {"algorithm": "squarecb", "gamma_scale": 10.0, "gamma_exponent": 0.5},
    "vw_args": "",
    "max_actions": 256,
    "model_publish_interval": 1.0,
    "apprentice_agreement": 0.9,
    "apprentice_events": 1000,
}


def _create(client, name: str, config: dict | None = None):
    body = {"name": name} if config is None else {"name": name, "config": config}
    return client.post("/v1/loops", json=body, headers=ADMIN)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rows(db) -> tuple[int, int, int]:
    return count_rows(db, Loop), count_rows(db, ApiKey), count_rows(db, LoopConfigVersion)


# -- create ------------------------------------------------------------------------------------


def test_a_loop_created_over_http_has_the_defaults_and_a_working_key(client):
    reply = _create(client, "home-hero")

    assert reply.status_code == 201, reply.json
    created = reply.json
    assert created["name"] == "home-hero"
    assert created["kind"] == "cb"
    assert created["config"] == DEFAULT_CONFIG
    assert created["config_version"] == 1
    assert created["key"].startswith("bk_")
    shown = client.get("/v1/loops/home-hero", headers=ADMIN).json
    assert shown == {k: v for k, v in created.items() if k != "key"}
    choose = client.post("/v1/loops/home-hero/choose", json=choose_body(),
                         headers=_bearer(created["key"]))
    assert choose.status_code == 201, choose.json
    assert client.get("/v1/loops", headers=ADMIN).json["loops"] == [shown]


def test_a_partial_config_is_completed_with_defaults(client):
    config = {
        "objectives": [{"name": "click", "aggregation": "max"}, {"name": "revenue", "weight": 0.1}],
        "reward_wait": "10m",
        "vw_args": "-q uo",
    }
    reply = _create(client, "partial", config)
    assert reply.status_code == 201, reply.json
    assert reply.json["config"] == {
        **DEFAULT_CONFIG,
        "objectives": [
            {"name": "click", "weight": 1.0, "aggregation": "max", "default": 0.0},
            {"name": "revenue", "weight": 0.1, "aggregation": "sum", "default": 0.0},
        ],
        "vw_args": "-q uo",
    }


@pytest.mark.parametrize(
    "reward_wait, seconds",
    [("10m", 600.0), ("30s", 30.0), ("2h", 7200.0), ("1.5d", 129600.0), ("250ms", 0.25),
     (90, 90.0)],
)
def test_reward_wait_takes_a_duration(client, reward_wait, seconds):
    reply = _create(client, "waits", {"reward_wait": reward_wait})
    assert reply.status_code == 201, reply.json
    assert reply.json["config"]["reward_wait"] == seconds


def test_a_duplicate_name_is_a_conflict_and_writes_nothing(client, db):
    assert _create(client, "twice").status_code == 201
    rows = _rows(db)
    reply = _create(client, "twice", {"max_actions": 3})
    assert reply.status_code == 409
    assert reply.json["error"]["code"] == "LoopExists"
    assert "'twice'" in reply.json["error"]["message"]
    assert reply.json["error"]["target"] == "name"
    assert _rows(db) == rows
    assert client.get("/v1/loops/twice", headers=ADMIN).json["config"]["max_actions"] == 256


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "Home Hero"}, id="space-and-capitals"),
        pytest.param({"name": "HOME"}, id="capitals"),
        pytest.param({"name": ""}, id="empty"),
        pytest.param({"name": "-lead"}, id="leading-dash"),
        pytest.param({"name": "a/b"}, id="slash"),
        pytest.param({"name": "x" * 65}, id="65-chars"),
        pytest.param({"name": 7}, id="a-number"),
        pytest.param({"config": {}}, id="missing"),
        pytest.param({"name": "ok", "owner": "me"}, id="unknown-field"),
        pytest.param({"name": "ok", "config": ["kind"]}, id="config-not-an-object"),
    ],
)
def test_an_invalid_create_request_is_400(client, db, body):
    rows = _rows(db)
    reply = client.post("/v1/loops", json=body, headers=ADMIN)
    assert reply.status_code == 400, reply.json
    error = reply.json["error"]
    assert error["code"] == "InvalidLoopRequest"
    assert error["target"] in {"name", "owner", "config"}
    assert error["target"] in error["message"]
    assert _rows(db) == rows


INVALID_CONFIGS = [
    pytest.param({"bogus": 1}, "config.bogus", "unknown field", id="unknown-field"),
    pytest.param({"objectives": [{"name": "click", "aggregation": "mean"}]},
                 "config.objectives[0].aggregation", "'sum'", id="bad-aggregation"),
    pytest.param({"objectives": [{"name": "click"}, {"name": "revenue"}, {"name": "click"}]},
                 "config.objectives", "repeated: click", id="duplicate-objective-names"),
    pytest.param({"objectives": []}, "config.objectives", "at least 1", id="no-objectives"),
    pytest.param({"objectives": [{"name": "1st"}]}, "config.objectives[0].name", "pattern",
                 id="bad-objective-name"),
    pytest.param({"objectives": [{"name": "click", "weight": "heavy"}]},
                 "config.objectives[0].weight", "number", id="weight-not-a-number"),
    pytest.param({"max_actions": -1}, "config.max_actions", "greater than or equal to 1",
                 id="negative-max-actions"),
    pytest.param({"max_actions": 2.5}, "config.max_actions", "integer",
                 id="fractional-max-actions"),
    pytest.param({"reward_wait": "ten minutes"}, "config.reward_wait", "duration",
                 id="reward-wait-not-a-duration"),
    pytest.param({"reward_wait": "31d"}, "config.reward_wait", "30 days",
                 id="reward-wait-too-long"),
    pytest.param({"reward_wait": -5}, "config.reward_wait", "between", id="reward-wait-negative"),
    pytest.param({"kind": "ranking"}, "config.kind", "'slates'", id="unknown-kind"),
    pytest.param({"learning_mode": "offline"}, "config.learning_mode", "'online'",
                 id="bad-learning-mode"),
    pytest.param({"exploration": {"algorithm": "greedy"}}, "config.exploration", "'greedy'",
                 id="unknown-algorithm"),
    pytest.param({"exploration": {"epsilon": 0.1}}, "config.exploration", "algorithm",
                 id="algorithm-missing"),
    pytest.param({"exploration": {"algorithm": "epsilon", "epsilon": 1.5}},
                 "config.exploration.epsilon", "less than or equal to 1", id="epsilon-over-1"),
    pytest.param({"exploration": {"algorithm": "bag", "size": 1}}, "config.exploration.size",
                 "greater than or equal to 2", id="bag-of-one"),
    pytest.param({"exploration": {"algorithm": "softmax", "temperature": 2}},
                 "config.exploration.temperature", "unknown field",
                 id="unknown-algorithm-parameter"),
    pytest.param({"vw_args": "--epsilon 0.1"}, "config.vw_args", "--epsilon",
                 id="reserved-epsilon"),
    pytest.param({"vw_args": "-q ua --epsilon=0.1"}, "config.vw_args", "--epsilon",
                 id="reserved-epsilon-with-equals"),
    pytest.param({"vw_args": "--cb_explore_adf"}, "config.vw_args", "--cb_explore_adf",
                 id="reserved-reduction"),
    pytest.param({"vw_args": "-f model.vw"}, "config.vw_args", "-f", id="reserved-output-file"),
]


@pytest.mark.parametrize("config, target, says", INVALID_CONFIGS)
def test_an_invalid_config_is_422_naming_the_field(client, db, config, target, says):
    rows = _rows(db)
    reply = _create(client, "bad", config)
    assert reply.status_code == 422, reply.json
    error = reply.json["error"]
    assert error["code"] == "InvalidLoopConfig"
    assert error["target"] == target
    assert says in error["message"]
    assert _rows(db) == rows


@pytest.mark.parametrize(
    "vw_args, complaint",
    [
        pytest.param("--bogus_flag", "bogus_flag", id="unknown-flag"),
        pytest.param("-q", "quadratic", id="interaction-without-namespaces"),
        pytest.param("--l2 lots", "lots", id="value-not-a-number"),
    ],
)
def test_vw_args_vw_rejects_are_422_quoting_vw(client, db, vw_args, complaint):
    rows = _rows(db)
    reply = _create(client, "bad", {"vw_args": vw_args})
    assert reply.status_code == 422, reply.json
    error = reply.json["error"]
    assert error["code"] == "InvalidVwArgs"
    assert error["target"] == "config.vw_args"
    assert error["message"].startswith("VW rejected")
    assert complaint in error["message"]
    assert _rows(db) == rows


@pytest.mark.parametrize(
    "exploration",
    [
        {"algorithm": "squarecb"},
        {"algorithm": "squarecb", "gamma_scale": 100, "gamma_exponent": 0.3},
        {"algorithm": "epsilon"},
        {"algorithm": "epsilon", "epsilon": 0.3},
        {"algorithm": "softmax"},
        {"algorithm": "softmax", "lambda": 2.5},
        {"algorithm": "bag"},
        {"algorithm": "bag", "size": 3, "epsilon": 0.1},
        {"algorithm": "cover"},
        {"algorithm": "cover", "size": 2, "epsilon": 0.1},
        {"algorithm": "rnd"},
        {"algorithm": "rnd", "size": 2, "epsilon": 0.1},
    ],
    ids=lambda exploration: "-".join(f"{k}={v}" for k, v in exploration.items()),
)
def test_every_exploration_algorithm_serves(client, exploration):
    created = _create(client, "explore", {"exploration": exploration, "vw_args": "-q uo"})
    assert created.status_code == 201, created.json
    stored = created.json["config"]["exploration"]
    assert {k: stored[k] for k in exploration} == pytest.approx(exploration)
    for i in range(3):
        reply = client.post("/v1/loops/explore/choose", json=choose_body(event_id=f"e{i}"),
                            headers=_bearer(created.json["key"]))
        assert reply.status_code == 201, reply.json
        assert sum(r["probability"] for r in reply.json["ranking"]) == pytest.approx(1.0, abs=1e-5)
        assert reply.json["probability"] > 0


# -- PATCH -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, model_reset",
    [
        pytest.param({"exploration": {"algorithm": "epsilon", "epsilon": 0.2}}, True,
                     id="exploration"),
        pytest.param({"exploration": {"algorithm": "squarecb", "gamma_scale": 50}}, True,
                     id="exploration-parameter"),
        pytest.param({"vw_args": "-q uo"}, True, id="vw_args"),
        pytest.param({"max_actions": 5}, False, id="max_actions"),
        pytest.param({"objectives": [{"name": "click", "weight": 3.0},
                                     {"name": "revenue", "weight": 0.1}]},
                     False, id="objective-weight"),
        pytest.param({"objectives": [{"name": "click"}, {"name": "revenue", "weight": 0.1},
                                     {"name": "signup"}]}, False, id="new-objective"),
        pytest.param({"reward_wait": "1h"}, False, id="reward_wait"),
        pytest.param({"learning_mode": "apprentice"}, False, id="learning_mode"),
    ],
)
def test_patch_makes_a_new_version_and_says_if_the_model_starts_over(
    client, auth, db, change, model_reset
):
    before = client.get("/v1/loops/shop", headers=ADMIN).json
    versions = count_rows(db, LoopConfigVersion)

    reply = client.patch("/v1/loops/shop", json=change, headers=ADMIN)

    assert reply.status_code == 200, reply.json
    assert reply.json["model_reset"] is model_reset
    assert reply.json["config_version"] == before["config_version"] + 1
    assert count_rows(db, LoopConfigVersion) == versions + 1
    after = client.get("/v1/loops/shop", headers=ADMIN).json
    assert after["config_version"] == before["config_version"] + 1
    assert after["config"] == reply.json["config"]
    untouched = {k: v for k, v in before["config"].items() if k not in change}
    assert {k: after["config"][k] for k in untouched} == untouched
    assert client.post("/v1/loops/shop/choose", json=choose_body(), headers=auth).status_code == 201


def test_a_patch_takes_effect_on_the_next_choose(client, auth):
    assert client.post("/v1/loops/shop/choose", json=choose_body(actions=actions(4)),
                       headers=auth).status_code == 201
    assert client.patch("/v1/loops/shop", json={"max_actions": 3}, headers=ADMIN).status_code == 200
    reply = client.post("/v1/loops/shop/choose", json=choose_body(actions=actions(4)), headers=auth)
    assert reply.status_code == 422
    assert reply.json["error"]["code"] == "TooManyActions"


def test_a_patch_that_changes_nothing_makes_no_version(client, db, loop_key):
    versions = count_rows(db, LoopConfigVersion)
    reply = client.patch("/v1/loops/shop", json={"max_actions": 20}, headers=ADMIN)
    assert reply.status_code == 200, reply.json
    assert reply.json["config_version"] == 1
    assert reply.json["model_reset"] is False
    assert count_rows(db, LoopConfigVersion) == versions


@pytest.mark.parametrize(
    "body, status, code",
    [
        pytest.param({"max_actions": -5}, 422, "InvalidLoopConfig", id="bad-value"),
        pytest.param({"bogus": True}, 422, "InvalidLoopConfig", id="unknown-field"),
        pytest.param({"name": "renamed"}, 422, "InvalidLoopConfig", id="name-is-not-config"),
        pytest.param({"vw_args": "--epsilon 0.3"}, 422, "InvalidLoopConfig", id="reserved-flag"),
        pytest.param({"vw_args": "--bogus_flag"}, 422, "InvalidVwArgs", id="vw-rejects"),
        pytest.param({"max_actions": 5, "objectives": [{"name": "click"}, {"name": "click"}]}, 422,
                     "InvalidLoopConfig", id="one-good-one-bad"),
        pytest.param([{"max_actions": 5}], 400, "InvalidLoopConfig", id="not-an-object"),
    ],
)
def test_a_failed_patch_writes_nothing(client, db, loop_key, body, status, code):
    before = client.get("/v1/loops/shop", headers=ADMIN).json
    versions = count_rows(db, LoopConfigVersion)

    reply = client.patch("/v1/loops/shop", json=body, headers=ADMIN)

    assert reply.status_code == status, reply.json
    assert reply.json["error"]["code"] == code
    assert client.get("/v1/loops/shop", headers=ADMIN).json == before
    assert count_rows(db, LoopConfigVersion) == versions


def test_a_nul_character_in_vw_args_is_refused(client, db, loop_key):
    # VW itself ignores a lone NUL token; Postgres would refuse to store it.
    rows = _rows(db)
    created = _create(client, "nul", {"vw_args": "--noconstant \x00"})
    assert created.status_code == 400, created.json
    assert created.json["error"]["code"] == "InvalidLoopRequest"
    assert created.json["error"]["target"] == "config.vw_args"
    patched = client.patch("/v1/loops/shop", json={"vw_args": "--noconstant \x00"}, headers=ADMIN)
    assert patched.status_code == 422, patched.json
    assert patched.json["error"]["code"] == "InvalidLoopConfig"
    assert patched.json["error"]["target"] == "config.vw_args"
    assert "NUL" in patched.json["error"]["message"]
    assert _rows(db) == rows


def test_patching_an_unknown_loop_is_404(client):
    reply = client.patch("/v1/loops/nope", json={"max_actions": 5}, headers=ADMIN)
    assert reply.status_code == 404
    assert reply.json["error"]["code"] == "LoopNotFound"


# -- keys --------------------------------------------------------------------------------------


def test_an_admin_creates_more_keys_for_a_loop(client, loop_key):
    reply = client.post("/v1/loops/shop/keys", headers=ADMIN)
    assert reply.status_code == 201, reply.json
    assert reply.json["loop"] == "shop"
    assert reply.json["key"] != loop_key
    choose = client.post("/v1/loops/shop/choose", json=choose_body(),
                         headers=_bearer(reply.json["key"]))
    assert choose.status_code == 201


def test_a_key_for_an_unknown_loop_is_404(client, db):
    reply = client.post("/v1/loops/nope/keys", headers=ADMIN)
    assert reply.status_code == 404
    assert reply.json["error"]["code"] == "LoopNotFound"
    assert count_rows(db, ApiKey) == 0


# -- the OpenAPI document ----------------------------------------------------------------------


def _flask_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes.update((method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"})
    return routes


def test_the_openapi_document_is_valid_and_lists_every_route(client, app):
    reply = client.get("/openapi.json")
    assert reply.status_code == 200
    document = reply.json
    assert document["openapi"].startswith("3.1")
    validate(document, cls=OpenAPIV31SpecValidator)
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == _flask_routes(app)


def test_the_openapi_document_describes_the_error_reply(client):
    document = client.get("/openapi.json").json
    choose = document["paths"]["/v1/loops/{loop}/choose"]["post"]
    assert {"400", "401", "403", "404", "409", "413", "415", "422"} <= set(choose["responses"])
    error = document["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message", "target"} <= set(error["properties"])
