"""End to end: `bandits serve` under a real gunicorn, on SQLite and on Postgres, over HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, select

from bandits.learning.sampling import sample, seed_for
from bandits.store.decisions import LOGGED_ACTIONS, WITH_ACTION_POOLS
from bandits.store.models import Decision, Loop
from tests.conftest import ADMIN_KEY
from tests.helpers import choose_body
from tests.servers import BACKENDS, database, running_service

pytestmark = pytest.mark.e2e


@pytest.fixture(params=BACKENDS)
def server(request, tmp_path):
    """A running `bandits serve` (2 workers x 4 threads); yields (base url, database url)."""
    with database(request.param, tmp_path) as database_url:
        with running_service(database_url, tmp_path) as base:
            yield base, database_url


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_concurrent_decisions_are_all_logged_and_seeded(server):
    base, database_url = server
    created = requests.post(f"{base}/v1/loops", json={"name": "e2e", "config": {
        "objectives": [{"name": "click"}, {"name": "revenue"}], "vw_args": "-q u_"}}, headers=ADMIN)
    assert created.status_code == 201, created.text
    auth = {"Authorization": f"Bearer {created.json()['key']}"}

    def choose(i: int) -> requests.Response:
        with requests.Session() as session:
            return session.post(f"{base}/v1/loops/e2e/choose", json=choose_body(event_id=f"evt-{i}"),
                                headers=auth, timeout=30)

    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(choose, range(240)))
    assert [r.status_code for r in replies] == [201] * 240
    served = {r.json()["event_id"]: r.json() for r in replies}

    engine = create_engine(database_url)
    with engine.connect() as connection:
        loop_id = connection.execute(select(Loop.id).where(Loop.name == "e2e")).scalar_one()
        rows = connection.execute(
            select(Decision, LOGGED_ACTIONS.label("logged_actions")).select_from(WITH_ACTION_POOLS)
            .where(Decision.loop_id == loop_id)
        ).all()
    engine.dispose()
    # Every acknowledged decision is in the database, as served.
    assert {row.event_id for row in rows} == set(served)
    for row in rows:
        ids = [action["id"] for action in row.logged_actions]
        assert row.chosen == served[row.event_id]["action"]
        assert row.probability == pytest.approx(served[row.event_id]["probability"])
        # The draw is the seeded sample of the logged PMF, whichever worker process served it.
        assert row.seed == seed_for(loop_id, row.event_id)
        assert ids[sample(row.pmf, row.seed)] == row.chosen

    reward = requests.post(f"{base}/v1/loops/e2e/events/evt-7/rewards",
                           json={"rewards": {"click": 1, "revenue": 3.5}, "reward_id": "r"}, headers=auth)
    assert reward.status_code == 202, reward.text
    event = requests.get(f"{base}/v1/loops/e2e/events/evt-7", headers=auth).json()
    assert {(o["objective"], o["value"]) for o in event["outcomes"]} == {("click", 1.0), ("revenue", 3.5)}


def test_one_event_id_chosen_concurrently_is_logged_once(server):
    base, _ = server
    key = requests.post(f"{base}/v1/loops", json={"name": "dup"}, headers=ADMIN).json()["key"]
    auth = {"Authorization": f"Bearer {key}"}

    def choose(_: int) -> int:
        return requests.post(f"{base}/v1/loops/dup/choose", json=choose_body(event_id="same"),
                             headers=auth, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(choose, range(8)))
    assert statuses == [201] + [409] * 7


def test_bad_input_over_real_http_is_a_clear_4xx(server):
    base, _ = server
    key = requests.post(f"{base}/v1/loops", json={"name": "bad"}, headers=ADMIN).json()["key"]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for body, status, code in [
        (b'{"actions": [', 400, "MalformedJson"),
        (b'{"actions": [{"id": "a", "features": {"x": {"y": NaN}}}]}', 400, "MalformedJson"),
        (b'{"actions": []}', 400, "InvalidChooseRequest"),
        (b"x" * 2_000_000, 413, "PayloadTooLarge"),
    ]:
        reply = requests.post(f"{base}/v1/loops/bad/choose", data=body, headers=headers)
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["code"] == code
        assert "Traceback" not in reply.text
