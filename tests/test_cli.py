"""The ``bandits`` command line against a real SQLite file: schema, loops, keys."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from bandits.api import create_app
from bandits.cli import main
from bandits.config import load_settings
from tests.helpers import choose_body

Invoke = Callable[..., Result]


@pytest.fixture
def database_file_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def bandits(database_file_url: str) -> Invoke:
    """Runs ``bandits ARGS...`` with BANDITS_DATABASE_URL pointing at a fresh SQLite file."""

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner(env={"BANDITS_DATABASE_URL": database_file_url, **(env or {})})
        return runner.invoke(main, list(args))

    return invoke


@pytest.fixture
def upgraded(bandits: Invoke) -> Invoke:
    result = bandits("db", "upgrade")
    assert result.exit_code == 0, result.output
    return bandits


@pytest.fixture
def shop(upgraded: Invoke) -> dict:
    result = upgraded("loops", "create", "shop", 'objectives=[{"name":"click"}]')
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def http(database_file_url: str) -> Iterator:
    """The api over the same file, to check that keys made by the CLI work (or stop working)."""
    app = create_app(load_settings(database_url=database_file_url, cache_seconds=0.0),
                     {"TESTING": True})
    yield app.test_client()
    app.extensions["bandits"].close()


def _fails_plainly(result: Result, *says: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for words in says:
        assert words in result.output


def test_db_upgrade_creates_the_schema_and_can_run_again(bandits, database_file_url):
    first = bandits("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert "database at head" in first.stdout
    again = bandits("db", "upgrade")
    assert again.exit_code == 0, again.output
    assert bandits("loops", "list").exit_code == 0


def test_loops_create_prints_the_loop_and_its_key_once(upgraded):
    result = upgraded("loops", "create", "shop", 'objectives=[{"name":"click"}]', "max_actions=7")

    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["name"] == "shop"
    assert created["config_version"] == 1
    assert created["config"]["objectives"] == [
        {"name": "click", "weight": 1.0, "aggregation": "sum", "default": 0.0}
    ]
    assert created["config"]["max_actions"] == 7
    assert created["config"]["exploration"]["algorithm"] == "squarecb"
    assert created["key"].startswith("bk_")
    assert "shown once" in result.stderr


def test_loops_create_takes_a_config_file(upgraded, tmp_path):
    path = tmp_path / "loop.json"
    path.write_text(json.dumps({"objectives": [{"name": "click"}], "reward_wait": "30s"}))
    result = upgraded("loops", "create", "shop", "--config", f"@{path}", "max_actions=3")
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)["config"]
    assert (config["reward_wait"], config["max_actions"]) == (30.0, 3)


def test_loops_show_prints_the_config_without_a_key(upgraded, shop):
    result = upgraded("loops", "show", "shop")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown == {k: v for k, v in shop.items() if k != "key"}
    assert shop["key"] not in result.output


def test_loops_list_prints_one_line_per_loop(upgraded, shop):
    assert upgraded("loops", "create", "email").exit_code == 0
    result = upgraded("loops", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["email\tcb\tconfig v1", "shop\tcb\tconfig v1"]


def test_loops_set_makes_a_new_version(upgraded, shop):
    result = upgraded("loops", "set", "shop", "max_actions=5")

    assert result.exit_code == 0, result.output
    changed = json.loads(result.stdout)
    assert changed["config_version"] == 2
    assert changed["config"]["max_actions"] == 5
    assert changed["model_reset"] is False
    assert "new model" not in result.stderr
    assert json.loads(upgraded("loops", "show", "shop").stdout)["config_version"] == 2


def test_loops_set_says_when_the_model_starts_over(upgraded, shop):
    result = upgraded("loops", "set", "shop", "vw_args=-q uo",
                      'exploration={"algorithm":"epsilon"}')
    assert result.exit_code == 0, result.output
    changed = json.loads(result.stdout)
    assert changed["model_reset"] is True
    assert changed["config"]["vw_args"] == "-q uo"
    assert "This change starts a new model." in result.stderr


@pytest.mark.parametrize(
    "setting, says",
    [
        pytest.param("max_actions=-1", ("InvalidLoopConfig", "config.max_actions"), id="negative"),
        pytest.param("max_actions=lots", ("InvalidLoopConfig", "config.max_actions", "integer"),
                     id="not-a-number"),
        pytest.param("colour=blue", ("InvalidLoopConfig", "config.colour", "unknown field"),
                     id="unknown-field"),
        pytest.param("reward_wait=soon", ("InvalidLoopConfig", "config.reward_wait"),
                     id="bad-duration"),
        pytest.param("vw_args=--bogus_flag", ("InvalidVwArgs", "bogus_flag"), id="vw-rejects"),
        pytest.param("vw_args=--epsilon 0.5", ("InvalidLoopConfig", "--epsilon"),
                     id="reserved-flag"),
        pytest.param('objectives=[{"name":"click"},{"name":"click"}]',
                     ("InvalidLoopConfig", "config.objectives", "repeated: click"),
                     id="duplicate-objectives"),
    ],
)
def test_loops_set_with_a_bad_value_fails_plainly_and_changes_nothing(
    upgraded, shop, setting, says
):
    _fails_plainly(upgraded("loops", "set", "shop", setting), "Error:", *says)
    assert json.loads(upgraded("loops", "show", "shop").stdout)["config_version"] == 1


def test_loops_set_without_an_equals_sign_is_a_usage_error(upgraded, shop):
    result = upgraded("loops", "set", "shop", "max_actions")
    _fails_plainly(result, "is not FIELD=VALUE", exit_code=2)


@pytest.mark.parametrize(
    "args, says",
    [
        pytest.param(("loops", "show", "nope"), ("LoopNotFound", "'nope'"), id="show-unknown"),
        pytest.param(("loops", "set", "nope", "max_actions=5"), ("LoopNotFound", "'nope'"),
                     id="set-unknown"),
        pytest.param(("loops", "create", "shop"), ("LoopExists", "'shop'"), id="create-twice"),
        pytest.param(("loops", "create", "Big Shop"), ("InvalidLoopRequest", "name"),
                     id="bad-name"),
        pytest.param(("keys", "create", "--loop", "nope"), ("LoopNotFound", "'nope'"),
                     id="key-for-unknown-loop"),
        pytest.param(("keys", "revoke", "bk_nothing"), ("no live key",), id="revoke-unknown"),
    ],
)
def test_mistakes_fail_plainly(upgraded, shop, args, says):
    _fails_plainly(upgraded(*args), "Error:", *says)


def test_keys_revoke_needs_the_whole_stored_prefix(upgraded, shop, http):
    _fails_plainly(upgraded("keys", "revoke", shop["key"][:5]), "first 8 characters", exit_code=2)
    headers = {"Authorization": f"Bearer {shop['key']}"}
    assert http.post("/v1/loops/shop/choose", json=choose_body(), headers=headers).status_code == 201


def test_keys_revoke_takes_the_whole_key_too(upgraded, shop):
    result = upgraded("keys", "revoke", shop["key"])
    assert result.exit_code == 0, result.output
    assert "revoked 1 key(s)" in result.stdout


def test_a_missing_config_file_fails_plainly(upgraded, tmp_path):
    _fails_plainly(upgraded("loops", "create", "shop", "--config", f"@{tmp_path / 'missing.json'}"),
                   "--config", "missing.json", exit_code=2)


def test_commands_on_a_database_without_the_schema_say_to_upgrade(bandits):
    _fails_plainly(bandits("loops", "list"), "bandits db upgrade")
    _fails_plainly(bandits("keys", "revoke", "bk_abcdefgh"), "bandits db upgrade")


def test_a_bad_database_url_is_named(bandits):
    result = bandits("loops", "list", env={"BANDITS_DATABASE_URL": "mysql://localhost/bandits"})
    _fails_plainly(result, "BANDITS_DATABASE_URL")


def test_keys_create_makes_a_key_that_works_for_its_loop(upgraded, shop, http):
    result = upgraded("keys", "create", "--loop", "shop")

    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("bk_") and key != shop["key"]
    reply = http.post("/v1/loops/shop/choose", json=choose_body(),
                      headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 201, reply.json
    admin_only = http.get("/v1/loops", headers={"Authorization": f"Bearer {key}"})
    assert admin_only.status_code == 403


def test_keys_create_without_a_loop_makes_an_admin_key(upgraded, shop, http):
    key = upgraded("keys", "create").stdout.strip()
    reply = http.get("/v1/loops", headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.json
    assert [loop["name"] for loop in reply.json["loops"]] == ["shop"]


def test_keys_revoke_stops_the_key(upgraded, shop, http):
    headers = {"Authorization": f"Bearer {shop['key']}"}
    before = http.post("/v1/loops/shop/choose", json=choose_body(), headers=headers)
    assert before.status_code == 201, before.json

    result = upgraded("keys", "revoke", shop["key"][:8])

    assert result.exit_code == 0, result.output
    assert "revoked 1 key(s)" in result.stdout
    reply = http.post("/v1/loops/shop/choose", json=choose_body(), headers=headers)
    assert reply.status_code == 401
    _fails_plainly(upgraded("keys", "revoke", shop["key"][:8]), "no live key")
