"""Action pools remembered (bandits.services.pools): a request whose actions are a pool already
seen gets exactly what the full path gives it, errors included, and logs exactly the same row."""

from __future__ import annotations

import copy
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from bandits.api import create_app
from bandits.config import load_settings
from bandits.services import pools as pools_module
from bandits.services.loops import LoopService
from bandits.services.pools import ActionPools
from bandits.store import migrate
from bandits.store.db import Database
from tests.conftest import ADMIN_KEY
from tests.test_schemas import _BODIES

ACTIONS = [
    {"id": "a", "features": {"offer": {"kind": "loan", "payout": 2.5, "tags": ["new", "x y"]}}},
    {"id": "b|c", "features": {"offer": {"kind": "caf\u00e9 au lait", "payout": 0, "new": True}}},
    {"id": "d", "features": {}},
    {"features": {"offer": {"kind": "card", "nested": {"deep": {"er": 1e-3}}}}, "id": "e"},
]


def test_the_same_actions_get_the_same_pool_and_another_spelling_another():
    pools = ActionPools()
    first = pools.get(copy.deepcopy(ACTIONS))
    assert first is not None and pools.get(copy.deepcopy(ACTIONS)) is first
    assert (pools.hits, pools.misses) == (1, 1)
    assert first.ids == ["a", "b|c", "d", "e"] and first.positions["e"] == 3
    reordered = [dict(reversed(list(action.items()))) for action in ACTIONS]
    assert pools.get(reordered) is not first  # the same actions, spelt otherwise: worked out anew


@pytest.mark.parametrize("actions", [
    [],
    "a",
    [{"id": "a"}, {"id": "a"}],  # duplicate ids
    [{"id": ""}],
    [{"id": "a", "features": {"f": {"x": float("nan")}}}],
    [{"id": "a", "features": {"f": "x\x00y"}}],
    [{"id": "a", "features": {"f": {"x": {}}}, "colour": "red"}],
    [{"id": "a", "features": []}],
], ids=repr)
def test_actions_with_a_problem_have_no_pool(actions):
    pools = ActionPools()
    assert pools.get(actions) is None
    assert pools.get(actions) is None and pools.hits == 0


def test_long_pools_and_pools_with_a_null_are_not_remembered(monkeypatch):
    pools = ActionPools()
    with_null = [{"id": "a", "features": {"f": {"x": None}}}]
    assert pools.get(with_null) is not pools.get(with_null)
    monkeypatch.setattr(pools_module, "POOL_KEY_BYTES", 10)
    assert pools.get([{"id": "a"}]) is not pools.get([{"id": "a"}])


def test_the_cache_starts_again_when_full():
    pools = ActionPools(budget=100)
    first = pools.get([{"id": "a" * 60}])
    assert pools.get([{"id": "a" * 60}]) is first
    pools.get([{"id": "b" * 60}])  # over the budget: the cache is emptied first
    assert pools.get([{"id": "a" * 60}]) is not first


# -- the same replies and rows as the full path ---------------------------------------------------

KINDS = ("cb", "ccb", "slates")


def _app(directory):
    url = f"sqlite:///{directory / 'bandits.db'}"
    database = Database(load_settings(database_url=url))
    migrate.upgrade(database.engine)
    keys = {kind: LoopService(database).create(
        kind, {"kind": kind, "objectives": [{"name": "click"}], "max_actions": 6})["key"]
        for kind in KINDS}
    database.dispose()
    app = create_app(load_settings(database_url=url, admin_key=ADMIN_KEY, cache_seconds=0.0),
                     {"TESTING": True})
    return app, keys


@pytest.fixture(scope="module")
def two_apps(tmp_path_factory):
    """Two services on databases of their own with the same loops: the first remembers pools,
    the second never does (every request takes the full path)."""
    remembering = _app(tmp_path_factory.mktemp("remembering"))
    full = _app(tmp_path_factory.mktemp("full"))
    full[0].extensions["bandits"].decisions.pools.get = lambda actions: None
    full[0].extensions["bandits"].decisions.pools.get_raw = lambda raw: None
    yield remembering, full
    for app, _ in (remembering, full):
        app.extensions["bandits"].close()


_events = iter(range(10**9))


SLOTS = [{"id": "hero", "baseline": "a", "features": {"slot": {"position": 0}}},
         {"id": "side", "baseline": "d", "excluded": ["b|c"]}]
SLATES_ACTIONS = [{**action, "slot": "hero" if i < 2 else "side"}
                  for i, action in enumerate(ACTIONS)]
SLATES_SLOTS = [{"id": "hero", "baseline": "a"}, {"id": "side", "baseline": "d"}]
GOOD = [
    ("cb", {"context": {"user": {"country": "AR", "age": 31}}, "actions": ACTIONS}),
    ("cb", {"actions": ACTIONS, "excluded": ["a"], "baseline": "d", "defer": True}),
    ("ccb", {"context": {"user": {"x": "y z"}}, "actions": ACTIONS, "slots": SLOTS}),
    ("slates", {"context": {"user": {"x": 1}}, "actions": SLATES_ACTIONS, "slots": SLATES_SLOTS}),
]
BAD = [
    ("cb", {"actions": ACTIONS, "slots": SLOTS}),
    ("cb", {"actions": SLATES_ACTIONS}),
    ("cb", {"actions": ACTIONS, "excluded": ["zz"]}),
    ("cb", {"actions": ACTIONS, "context": {"user": {"bad": float("inf")}}}),
    ("cb", {"actions": ACTIONS * 2}),
    ("cb", {"actions": ACTIONS + [{"id": f"x{i}"} for i in range(3)]}),  # 7 > max_actions
    ("ccb", {"actions": ACTIONS, "slots": SLOTS + [{"id": "hero", "baseline": "e"}]}),
    ("ccb", {"actions": ACTIONS, "slots": SLOTS, "event_id": "x\x00"}),
    ("ccb", {"actions": ACTIONS}),
    ("ccb", {"actions": SLATES_ACTIONS, "slots": SLOTS}),
    ("slates", {"actions": ACTIONS, "slots": SLATES_SLOTS}),
    ("slates", {"actions": SLATES_ACTIONS, "slots": [{"id": "hero", "baseline": "d"}]}),
]


def _same(two_apps, kind: str, body: dict | bytes) -> None:
    """``body`` (a dict, or the bytes to send, with ``EVENT`` where its event id goes) sent
    twice to each app, under event ids of its own."""
    remembering, full = two_apps
    event = f"e{next(_events)}"
    results = []
    for (app, keys), event_id in ((remembering, event), (remembering, event + "-again"),
                                  (full, event), (full, event + "-again")):
        headers = {"Authorization": f"Bearer {keys[kind]}"}
        if isinstance(body, bytes):
            sent = {"event_id": event_id}
            data = body.replace(b"EVENT", event_id.encode())
            reply = app.test_client().post(f"/v1/loops/{kind}/choose", data=data, headers=headers,
                                           content_type="application/json")
        else:
            sent = copy.deepcopy(body)
            sent.setdefault("event_id", event_id)
            reply = app.test_client().post(f"/v1/loops/{kind}/choose", json=sent, headers=headers)
        logged = None
        if reply.status_code == 201:
            path = f"/v1/loops/{kind}/events/{quote(sent.get('event_id', event_id), safe='')}"
            logged = app.test_client().get(path, headers=headers).json
            logged.pop("ts")
        results.append((reply.status_code, reply.json, logged))
    assert results[0] == results[2]  # first sight of the pool, against the full path
    assert results[1] == results[3]  # from the pool, against the full path


@pytest.mark.parametrize(("kind", "body"), GOOD + BAD,
                         ids=lambda x: x if isinstance(x, str) else "")
def test_the_same_replies_and_rows_as_the_full_path(two_apps, kind, body):
    _same(two_apps, kind, body)


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), body=_BODIES)
def test_generated_bodies_get_what_the_full_path_gives(two_apps, kind, body):
    _same(two_apps, kind, body)


# Bodies as bytes: the pool's key is then the actions' JSON as sent, and only the rest of the body
# is parsed; orjson parses context, slot features and actions as the full path does.
_ACTIONS = b'[{"id": "a", "features": {"o": {"n": 1}}}, {"id": "b"}, {"id": "c"}]'
RAW = [
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b'}'),
    ("cb", b'{"event_id":"EVENT","actions":[{"id":"a","features":{"o":{"n":1}}},{"id":"b"},{"id":"c"}]}'),
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "context": {"u": {"big": 123456789012345678901234567890}}}'),
    ("cb", b'{"event_id": "EVENT", "actions": [{"id": "a", "features": {"o": {"big": -92233720368547758090}}}, {"id": "b"}]}'),
    ("cb", b'{"event_id": "EVENT", "actions": [{"id": "x"}], "actions": ' + _ACTIONS + b', "context": {"u": 1}, "context": {"v": {"w": 2}}}'),
    ("cb", b'{"event_id": "EVENT", "\\u0061ctions": ' + _ACTIONS + b'}'),
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "context": null}'),
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "context": []}'),
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "context": {"u": NaN}}'),
    ("cb", b'{"event_id": "EVENT", "actions": [{"id": "a"}, {"id": "a"}]}'),
    ("cb", b'{"event_id": "EVENT", "actions": [{"id": "a", "features": {"o": {"x": 1e999}}}]}'),
    ("cb", b'{"event_id": "EVENT", "actions": [{"id": "\\ud800"}]}'),
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b'} trailing'),
    ("cb", b'\xef\xbb\xbf{"event_id": "EVENT", "actions": ' + _ACTIONS + b'}'),
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "context": {"u": "\xff"}}'),
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "context": ' + b'[' * 600 + b']' * 600 + b'}'),
    ("cb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "extra": 1}'),
    ("cb", b'[{"event_id": "EVENT"}]'),
    ("ccb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "slots": [{"id": "s", "baseline": "a", "features": {"p": {"big": 123456789012345678901234567890}}}]}'),
    ("ccb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "slots": [{"id": "s", "baseline": "a", "features": null}]}'),
    ("ccb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "slots": [{"id": "s", "baseline": "a", "features": {"p": {"q": 1}}, "features": {"p": {"r": 2}}}]}'),
    ("ccb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "slots": [{"id": "s", "baseline": "a", "excluded": ["b"]}, {"id": "t", "baseline": "b"}]}'),
    ("ccb", b'{"event_id": "EVENT", "actions": ' + _ACTIONS + b', "slots": []}'),
    ("slates", b'{"event_id": "EVENT", "actions": [{"id": "a", "slot": "s"}, {"id": "b", "slot": "t"}], "slots": [{"id": "s", "baseline": "a"}, {"id": "t", "baseline": "b"}]}'),
]


@pytest.mark.parametrize(("kind", "body"), RAW, ids=lambda x: x if isinstance(x, str) else "")
def test_bodies_read_from_their_bytes_get_what_the_full_path_gives(two_apps, kind, body):
    _same(two_apps, kind, body)


def test_a_pool_sent_twice_with_other_spacing_is_the_same_pool_twice():
    pools = ActionPools()
    compact = b'[{"id":"a","features":{"o":{"n":1}}},{"id":"b"}]'
    spaced = b'[{"id": "a", "features": {"o": {"n": 1}}}, {"id": "b"}]'
    first, second = pools.get_raw(compact), pools.get_raw(spaced)
    assert first is not None and second is not None and first is not second
    assert (first.ids, first.lines) == (second.ids, second.lines)
    assert pools.get_raw(compact) is first and (pools.hits, pools.misses) == (1, 2)
    assert pools.get_raw(b'[{"id": "a"}, {"id": "a"}]') is None
    assert pools.get_raw(b'[{"id": "a"') is None
    assert pools.get_raw(b'{"id": "a"}') is None


def test_a_body_read_from_its_bytes_finds_its_pool_by_them(two_apps):
    (app, keys), _ = two_apps
    pools = app.extensions["bandits"].decisions.pools
    body = b'{"actions": ' + _ACTIONS + b', "slots": [{"id": "s", "baseline": "b"}]}'
    headers = {"Authorization": f"Bearer {keys['ccb']}"}
    hits = pools.hits
    for _ in range(3):
        reply = app.test_client().post("/v1/loops/ccb/choose", data=body, headers=headers,
                                       content_type="application/json")
        assert reply.status_code == 201, reply.json
    assert pools.hits >= hits + 2 and _ACTIONS in pools._raw


def test_slots_met_again_with_the_same_pool_reuse_their_checks_and_lines(two_apps):
    (app, keys), _ = two_apps
    plans = app.extensions["bandits"].decisions.slot_plans
    headers = {"Authorization": f"Bearer {keys['ccb']}"}
    body = {"actions": ACTIONS, "slots": SLOTS}
    for _ in range(2):
        assert app.test_client().post("/v1/loops/ccb/choose", json=body, headers=headers).status_code == 201
    kept = [key for key in plans._plans if key[0] == "ccb"]
    assert kept, "the slots' plan was not kept"
    # the same slots with a problem in one of them are checked again, not served from the plan
    bad = {"actions": ACTIONS, "slots": [SLOTS[0], {**SLOTS[1], "excluded": ["zz"]}]}
    reply = app.test_client().post("/v1/loops/ccb/choose", json=bad, headers=headers)
    assert reply.status_code == 400 and reply.json["error"]["target"] == "slots[1].excluded[0]"
