"""`bandits.client.Client` against a real `bandits serve`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bandits.client import Client, ServiceError
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.e2e

ACTIONS = [{"id": "a", "features": {"offer": {"payout": 1.5}}}, {"id": "b"}]


@pytest.fixture(scope="module")
def shop(service_url):
    with Client(service_url, ADMIN_KEY) as admin:
        created = admin.create_loop(
            "client-shop", {"objectives": [{"name": "click"}, {"name": "revenue"}]})
    with Client(service_url, created["key"], loop="client-shop") as client:
        yield client


def test_choose_reward_and_read_back(shop):
    decision = shop.choose({"user": {"country": "AR"}}, ACTIONS, event_id="c-1", baseline="b")
    assert decision["event_id"] == "c-1" and decision["action"] in {"a", "b"}
    stored = shop.reward("c-1", {"click": 1, "revenue": 2.5}, reward_id="r1")
    assert (stored["event_id"], stored["accepted"], stored["duplicate"]) == ("c-1", 2, False)
    assert shop.reward("c-1", {"click": 1}, reward_id="r1")["duplicate"] is True
    event = shop.event("c-1")
    assert event["baseline"] == "b" and len(event["outcomes"]) == 2
    assert shop.loop_config()["name"] == "client-shop"


def test_a_refusal_carries_the_services_code_message_and_target(shop):
    with pytest.raises(ServiceError) as refused:
        shop.choose({}, [{"id": "a"}, {"id": "a"}])
    assert refused.value.status == 400 and refused.value.code == "InvalidChooseRequest"
    assert refused.value.target == "actions[1].id" and "repeats" in refused.value.message
    with pytest.raises(ServiceError) as unknown:
        shop.reward("c-1", {"bounce": 1})
    assert (unknown.value.status, unknown.value.code) == (422, "UnknownObjective")
    with pytest.raises(ServiceError, match="404 EventNotFound"):
        shop.event("no-such-event")


def test_a_key_of_another_loop_is_forbidden(service_url, shop):
    with Client(service_url, ADMIN_KEY) as admin:
        other = admin.create_loop("client-other")["key"]
    with Client(service_url, other, loop="client-shop") as client:
        with pytest.raises(ServiceError) as refused:
            client.choose({}, ACTIONS)
    assert (refused.value.status, refused.value.code) == (403, "Forbidden")


def test_one_client_serves_many_threads(shop):
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda i: shop.choose({}, ACTIONS, event_id=f"t-{i}"), range(30)))
    assert sorted(reply["event_id"] for reply in replies) == sorted(f"t-{i}" for i in range(30))


def test_loop_routes_need_a_loop(service_url):
    with Client(service_url, ADMIN_KEY) as admin, pytest.raises(ValueError, match="no loop"):
        admin.choose({}, ACTIONS)
