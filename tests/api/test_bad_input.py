"""Client mistakes: each gets its status, its error code, a message naming the problem, and no row.

One table of cases; every case runs on SQLite and on Postgres (NUL characters, for one, only fail
on Postgres when they reach the store).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import actions, choose_body, count_outcomes, count_rows

CHOOSE = "/v1/loops/shop/choose"
KNOWN = "known"  # an event the `known_event` fixture logs before each case
REWARDS = f"/v1/loops/shop/events/{KNOWN}/rewards"


@dataclass(frozen=True)
class Case:
    status: int
    code: str
    says: tuple[str, ...]  # what the message must contain
    target: str | None = None
    body: Any = None  # sent as JSON (json.dumps, so NUL characters travel as \u0000)
    raw: str | None = None  # sent as it is, for what json.dumps would refuse or fix
    content_type: str = "application/json"
    path: str = CHOOSE
    method: str = "post"


def _nested(depth: int) -> dict:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _raw_choose(feature: str) -> str:
    return '{"actions": [{"id": "a0", "features": {"offer": {"x": %s}}}]}' % feature


# About 2 MiB, twice the default limit (settings.max_body_bytes).
TOO_LARGE = json.dumps(choose_body(context={"user": {"bio": "x" * (2 * 1024 * 1024)}}))

CASES = [
    # -- the body as a whole -----------------------------------------------------------------
    pytest.param(Case(400, "MalformedJson", ("not valid JSON",), raw='{"actions": ['),
                 id="malformed-json"),
    pytest.param(Case(415, "UnsupportedMediaType", ("application/json",),
                      raw=json.dumps(choose_body()), content_type="text/plain"),
                 id="wrong-content-type"),
    pytest.param(Case(415, "UnsupportedMediaType", ("application/json",),
                      raw="actions=a0", content_type="application/x-www-form-urlencoded"),
                 id="form-encoded"),
    pytest.param(Case(400, "InvalidChooseRequest", ("JSON object",), body=[choose_body()]),
                 id="body-is-a-list"),
    pytest.param(Case(400, "InvalidChooseRequest", ("JSON object",), body="a0"),
                 id="body-is-a-string"),
    pytest.param(Case(413, "PayloadTooLarge", ("larger than the limit", "1048576"), raw=TOO_LARGE),
                 id="body-over-the-size-limit"),
    pytest.param(Case(400, "InvalidChooseRequest", ("bogus", "unknown field"), "bogus",
                      body=choose_body(bogus=1)),
                 id="unknown-top-level-field"),
    # -- actions, excluded, baseline ---------------------------------------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("actions", "required"), "actions",
                      body={"context": {"user": {"age": 3}}}),
                 id="missing-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("actions", "at least 1"), "actions",
                      body=choose_body(actions=[])),
                 id="empty-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("'a1'", "repeats actions[1].id"),
                      "actions[3].id", body=choose_body(actions=[*actions(3), {"id": "a1"}])),
                 id="duplicate-action-ids"),
    pytest.param(Case(422, "TooManyActions", ("21 actions", "at most 20"), "actions",
                      body=choose_body(actions=actions(21))),
                 id="more-than-max-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("actions[0].id", "256"), "actions[0].id",
                      body=choose_body(actions=[{"id": "a" * 257}])),
                 id="action-id-over-256-chars"),
    pytest.param(Case(400, "InvalidChooseRequest", ("actions[1]", "valid dictionary"), "actions[1]",
                      body=choose_body(actions=[{"id": "a0"}, "a1"])),
                 id="action-not-an-object"),
    pytest.param(Case(400, "InvalidChooseRequest", ("'zz'", "not among the actions"), "excluded[1]",
                      body=choose_body(excluded=["a0", "zz"])),
                 id="excluded-not-among-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("'zz'", "not among the actions"), "baseline",
                      body=choose_body(baseline="zz")),
                 id="baseline-not-among-actions"),
    pytest.param(Case(400, "InvalidChooseRequest", ("'a1'", "excluded"), "baseline",
                      body=choose_body(baseline="a1", excluded=["a1"])),
                 id="baseline-excluded"),
    pytest.param(Case(400, "InvalidChooseRequest", ("every action is excluded",), "excluded",
                      body=choose_body(excluded=["a0", "a1", "a2"])),
                 id="every-action-excluded"),
    pytest.param(Case(400, "InvalidChooseRequest", ("event_id", "256"), "event_id",
                      body=choose_body(event_id="e" * 257)),
                 id="event-id-over-256-chars"),
    # -- numbers JSON cannot hold (Python's json would refuse to send them) ----------------------
    pytest.param(Case(400, "MalformedJson", ("not valid JSON",), raw=_raw_choose("NaN")), id="nan"),
    pytest.param(Case(400, "MalformedJson", ("not valid JSON",), raw=_raw_choose("Infinity")),
                 id="infinity"),
    pytest.param(Case(400, "MalformedJson", ("not valid JSON",), raw=_raw_choose("-Infinity")),
                 id="minus-infinity"),
    pytest.param(Case(400, "MalformedJson", ("not valid JSON",), raw=_raw_choose("1e400")),
                 id="1e400"),
    pytest.param(Case(400, "MalformedJson", ("not valid JSON",),
                      raw='{"rewards": {"click": NaN}}', path=REWARDS),
                 id="nan-reward"),
    # -- feature values --------------------------------------------------------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("context.user.tags[1]", "object"),
                      "context.user.tags[1]",
                      body=choose_body(context={"user": {"tags": ["new", {"b": 1}]}})),
                 id="list-containing-an-object"),
    pytest.param(Case(400, "InvalidChooseRequest", ("context.user.tags[0]", "array"),
                      "context.user.tags[0]",
                      body=choose_body(context={"user": {"tags": [["new"]]}})),
                 id="nested-list"),
    pytest.param(Case(400, "InvalidChooseRequest", ("context.user[0]", "object"), "context.user[0]",
                      body=choose_body(context={"user": [{"country": "AR"}]})),
                 id="top-level-context-value-a-list-of-objects"),
    pytest.param(Case(400, "InvalidChooseRequest", ("actions[1].features.offer.x[0]", "object"),
                      "actions[1].features.offer.x[0]",
                      body=choose_body(actions=[{"id": "a0"}, {"id": "a1", "features": {
                          "offer": {"x": [{"y": 1}]}}}])),
                 id="action-feature-list-containing-an-object"),
    pytest.param(Case(400, "InvalidChooseRequest", ("context", "valid dictionary"), "context",
                      body=choose_body(context=["AR"])),
                 id="context-not-an-object"),
    pytest.param(Case(400, "InvalidChooseRequest", ("nested deeper than 32",),
                      body=choose_body(context={"user": _nested(40)})),
                 id="nesting-too-deep"),
    pytest.param(Case(400, "InvalidChooseRequest", ("nested deeper than 32",),
                      raw='{"actions": [{"id": "a0"}], "context": {"user": %s1%s}}'
                      % ('{"a": ' * 1000, "}" * 1000)),
                 id="nesting-near-the-json-parser-limit"),
    # -- NUL characters (Postgres cannot store them, VW cannot read them) ------------------------
    pytest.param(Case(400, "InvalidChooseRequest", ("NUL",), "context.user.country",
                      body=choose_body(context={"user": {"country": "A\x00R"}})),
                 id="nul-in-a-context-value"),
    pytest.param(Case(400, "InvalidChooseRequest", ("NUL",), "context.user",
                      body=choose_body(context={"user": {"coun\x00try": "AR"}})),
                 id="nul-in-a-context-key"),
    pytest.param(Case(400, "InvalidChooseRequest", ("NUL",), "context.user.tags[0]",
                      body=choose_body(context={"user": {"tags": ["a\x00"]}})),
                 id="nul-in-a-list-item"),
    pytest.param(Case(400, "InvalidChooseRequest", ("NUL",), "actions[0].features.offer.vertical",
                      body=choose_body(actions=[{"id": "a0", "features": {
                          "offer": {"vertical": "lo\x00ans"}}}])),
                 id="nul-in-an-action-feature"),
    pytest.param(Case(400, "InvalidChooseRequest", ("NUL",), "actions[1].id",
                      body=choose_body(actions=[{"id": "a0"}, {"id": "a\x001"}])),
                 id="nul-in-an-action-id"),
    pytest.param(Case(400, "InvalidChooseRequest", ("NUL",), "event_id",
                      body=choose_body(event_id="e\x001")),
                 id="nul-in-event-id"),
    pytest.param(Case(400, "InvalidRewardRequest", ("NUL",), "reward_id",
                      body={"rewards": {"click": 1}, "reward_id": "r\x001"}, path=REWARDS),
                 id="nul-in-reward-id"),
    pytest.param(Case(400, "InvalidRewardRequest", ("NUL",), "rewards",
                      body={"rewards": {"cli\x00ck": 1}}, path=REWARDS),
                 id="nul-in-an-objective-name"),
    pytest.param(Case(404, "EventNotFound", ("event_id",), "event_id",
                      path="/v1/loops/shop/events/kn%00own", method="get"),
                 id="nul-in-the-event-id-of-the-path"),
    pytest.param(Case(404, "EventNotFound", ("event_id",), "event_id",
                      body={"rewards": {"click": 1}},
                      path="/v1/loops/shop/events/kn%00own/rewards"),
                 id="nul-in-the-event-id-of-a-reward-path"),
    pytest.param(Case(404, "LoopNotFound", ("sh\\x00op",), "loop", body=choose_body(),
                      path="/v1/loops/sh%00op/choose"),
                 id="nul-in-the-loop-of-the-path"),
    # -- what does not exist ---------------------------------------------------------------------
    pytest.param(Case(404, "LoopNotFound", ("'nope'",), "loop", body=choose_body(),
                      path="/v1/loops/nope/choose"),
                 id="unknown-loop"),
    pytest.param(Case(404, "EventNotFound", ("'nope'",), "event_id", body={"rewards": {"click": 1}},
                      path="/v1/loops/shop/events/nope/rewards"),
                 id="reward-for-an-unknown-event"),
    pytest.param(Case(404, "EventNotFound", ("'nope'",), "event_id",
                      path="/v1/loops/shop/events/nope/activate"),
                 id="activate-an-unknown-event"),
    pytest.param(Case(404, "EventNotFound", ("'nope'",), "event_id",
                      path="/v1/loops/shop/events/nope", method="get"),
                 id="look-up-an-unknown-event"),
    pytest.param(Case(404, "NotFound", ("not found",), path="/v1/nothing-here", method="get"),
                 id="unknown-route"),
    pytest.param(Case(405, "MethodNotAllowed", ("not allowed",), path=CHOOSE, method="get"),
                 id="wrong-method"),
    # -- rewards ---------------------------------------------------------------------------------
    pytest.param(Case(422, "UnknownObjective", ("'bogus'", "click, revenue"), "rewards.bogus",
                      body={"rewards": {"click": 1, "bogus": 1}}, path=REWARDS),
                 id="unknown-objective"),
    pytest.param(Case(400, "InvalidRewardRequest", ("rewards.click", "number"), "rewards.click",
                      body={"rewards": {"click": "yes"}}, path=REWARDS),
                 id="reward-value-a-string"),
    pytest.param(Case(400, "InvalidRewardRequest", ("rewards.click", "number"), "rewards.click",
                      body={"rewards": {"click": "1"}}, path=REWARDS),
                 id="reward-value-a-numeric-string"),
    pytest.param(Case(400, "InvalidRewardRequest", ("rewards.revenue", "number"), "rewards.revenue",
                      body={"rewards": {"revenue": None}}, path=REWARDS),
                 id="reward-value-null"),
    pytest.param(Case(400, "InvalidRewardRequest", ("rewards", "at least 1"), "rewards",
                      body={"rewards": {}}, path=REWARDS),
                 id="empty-rewards"),
    pytest.param(Case(400, "InvalidRewardRequest", ("rewards", "required"), "rewards",
                      body={"reward_id": "r1"}, path=REWARDS),
                 id="missing-rewards"),
    pytest.param(Case(400, "InvalidRewardRequest", ("value", "unknown field"), "value",
                      body={"rewards": {"click": 1}, "value": 1}, path=REWARDS),
                 id="unknown-reward-field"),
    pytest.param(Case(422, "NoSlots", ("slot",), "slot",
                      body={"rewards": {"click": 1}, "slot": "hero"}, path=REWARDS),
                 id="slot-on-a-cb-loop"),
    pytest.param(Case(415, "UnsupportedMediaType", ("application/json",),
                      raw='{"rewards": {"click": 1}}', content_type="text/plain", path=REWARDS),
                 id="reward-wrong-content-type"),
]


@pytest.fixture
def known_event(client, auth) -> str:
    reply = client.post(CHOOSE, json=choose_body(event_id=KNOWN), headers=auth)
    assert reply.status_code == 201, reply.json
    return KNOWN


def _send(client, case: Case, headers: dict[str, str]):
    send = getattr(client, case.method)
    if case.body is not None:
        return send(case.path, data=json.dumps(case.body), content_type=case.content_type,
                    headers=headers)
    if case.raw is not None:
        return send(case.path, data=case.raw, content_type=case.content_type, headers=headers)
    return send(case.path, headers=headers)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_plainly_and_writes_nothing(client, auth, db, known_event, case: Case):
    decisions, outcomes = count_rows(db), count_outcomes(db)

    reply = _send(client, case, auth)

    assert_refused(reply, case)
    assert (count_rows(db), count_outcomes(db)) == (decisions, outcomes)


def assert_refused(reply, case: Case) -> None:
    """The reply is the case's plain JSON error: status, code, the words that name the problem,
    the target; never a 500 or a stack trace."""
    text = reply.get_data(as_text=True)
    assert reply.status_code != 500, text
    assert "Traceback" not in text
    assert reply.status_code == case.status, text
    assert reply.mimetype == "application/json"
    error = reply.json["error"]
    assert error["code"] == case.code
    for words in case.says:
        assert words in error["message"], error
    if case.target is not None:
        assert error["target"] == case.target


def test_the_same_event_id_twice_keeps_the_first_decision(client, auth, db):
    first = client.post(CHOOSE, json=choose_body(event_id="twice"), headers=auth)
    assert first.status_code == 201, first.json
    logged = client.get("/v1/loops/shop/events/twice", headers=auth).json

    again = client.post(
        CHOOSE,
        json=choose_body(event_id="twice", context={"user": {"country": "UY"}},
                         actions=actions(5), baseline="a4", defer=True),
        headers=auth,
    )

    assert again.status_code == 409
    assert again.json["error"]["code"] == "DuplicateEvent"
    assert "'twice'" in again.json["error"]["message"]
    assert again.json["error"]["target"] == "event_id"
    assert client.get("/v1/loops/shop/events/twice", headers=auth).json == logged
    assert count_rows(db) == 1


def test_the_same_event_id_racing_with_itself_is_logged_once(app, auth, db):
    countries = ["AR", "UY", "CL", "PE", "BO", "PY", "EC", "CO"]
    start = threading.Barrier(len(countries))
    replies = {}

    def send(country: str) -> None:
        client = app.test_client()
        body = choose_body(event_id="race", context={"user": {"country": country}})
        start.wait()
        replies[country] = client.post(CHOOSE, json=body, headers=auth)

    threads = [threading.Thread(target=send, args=(country,)) for country in countries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(reply.status_code for reply in replies.values())
    assert statuses == [201] + [409] * (len(countries) - 1), [r.json for r in replies.values()]
    (winner,) = [country for country, reply in replies.items() if reply.status_code == 201]
    logged = app.test_client().get("/v1/loops/shop/events/race", headers=auth).json
    assert logged["context"] == {"user": {"country": winner}}
    assert logged["action"] == replies[winner].json["action"]
    assert count_rows(db) == 1


def test_a_body_just_under_the_limit_is_served(client, auth, settings):
    body = choose_body(context={"user": {"bio": ""}})
    padding = settings.max_body_bytes - len(json.dumps(body)) - 1024
    body["context"]["user"]["bio"] = "x" * padding
    reply = client.post(CHOOSE, data=json.dumps(body), content_type="application/json",
                        headers=auth)
    assert reply.status_code == 201, reply.json
