"""The service learns: `bandits serve` under gunicorn with a real trainer process beside it, on
Postgres and on SQLite, driven by the simulator over HTTP. After a few thousand decisions the
policy it serves is worth far more than uniform random, by the world's exact values."""

from __future__ import annotations

import time

import pytest

from bandits.client import Client
from bandits.simulate.driver import Delays, loop_config, run
from bandits.simulate.world import generate, scalarise
from tests.conftest import ADMIN_KEY
from tests.servers import BACKENDS, database, running_service

pytestmark = pytest.mark.e2e

SPEED = 20.0  # outcome delays of 0-100 ms: a reward window of 3 s


@pytest.fixture(params=BACKENDS)
def service(request, tmp_path):
    with database(request.param, tmp_path) as database_url:
        with running_service(database_url, tmp_path, "--trainer") as base:
            yield base


def test_the_served_policy_beats_uniform_by_far(service):
    world = generate(seed=7, segments=5, offers=10)
    delays = Delays(speed=SPEED)
    with Client(service, ADMIN_KEY) as admin:
        created = admin.create_loop("sim", loop_config(delays))
    lines: list[str] = []
    with Client(service, created["key"], loop="sim") as client:
        learning = run(client, world, decisions=4000, concurrency=8, seed=1, delays=delays,
                       report_every=500, write=lines.append)
        assert learning.ok, lines
        # Let the last rewards' window close and the trainer publish, then measure what is served.
        time.sleep(created["config"]["reward_wait"] + 2)
        served = run(client, world, decisions=600, concurrency=8, seed=2, delays=delays,
                     report_every=600, write=lines.append)
    assert served.ok, lines
    weights = served.weights
    uniform = scalarise(served.uniform, weights)
    oracle = scalarise(served.oracle, weights)
    policy = scalarise(served.policy, weights)  # exact value of the PMFs the service served
    # Stated margin: at least 30 % of the way from uniform to the oracle, i.e. about 1.5 x uniform
    # here. The values are exact (only the mix of users in 600 decisions varies, by a few %); what
    # varies between runs is the learning path (typically 80-90 % of the way, 50 % seen once).
    assert policy >= uniform + 0.3 * (oracle - uniform), "\n".join(lines)
