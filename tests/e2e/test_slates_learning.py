"""The service learns slates: `bandits serve` under gunicorn with a real `bandits train` process
beside it, on Postgres and on SQLite, driven over HTTP by the simulator's slate world (three slots
with position effects, clicks per slot). For a `ccb` loop (one shared pool, rewards per slot) and a
`slates` loop (each slot its own offers, one reward per page), after a few thousand decisions the
policy the service serves is worth far more than uniform random, by the world's exact values."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bandits.client import Client
from bandits.simulate.driver import Delays, loop_config, run
from bandits.simulate.slates import generate_slates
from bandits.simulate.world import scalarise
from tests.conftest import ADMIN_KEY
from tests.servers import BACKENDS, database, running_service

pytestmark = pytest.mark.e2e

SPEED = 20.0  # outcome delays of 0-100 ms: a reward window of 3 s
LEARN, MEASURE = 6000, 2000  # decisions to learn from, then decisions whose policy is measured
# Stated margin: the served policy is at least this share of the way from uniform to the oracle.
MARGIN = {"ccb": 0.30, "slates": 0.10}
# SquareCB with gamma_scale 3 instead of the default 10: explores a little longer before it
# commits. With the default, a slates loop (one reward for the whole page, so a slot's action is
# credited with the other slots' clicks) sometimes locked onto a poor action in a slot, once the
# same one for every user: 2 of 5 runs on this world ended 0 % and 13 % of the way from uniform to
# the oracle (and one ccb run of 16 at 20 %).
EXPLORATION = {"algorithm": "squarecb", "gamma_scale": 3}
# Slates: VW's learning rate 0.1 instead of its default 0.5. One reward for the whole page is
# credited to every slot, so each slot's regressor learns from the other slots' clicks too, and
# with the default rate the served policy swung between good and near-uniform from one model to
# the next (windows of 500 decisions from 0 % to 75 % of the way in one run). Measured on
# Postgres, MEASURE 2000: 10 runs with the default rate, 19-75 % of the way (mean 46 %, sd 16);
# 8 runs with 0.1, 38-75 % (mean 59 %, sd 11).
VW_ARGS = {"ccb": "", "slates": " -l 0.1"}


@pytest.fixture(params=BACKENDS)
def service(request, tmp_path):
    with database(request.param, tmp_path) as database_url:
        with running_service(database_url, tmp_path, "--trainer") as base:
            yield base


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_the_served_slate_policy_beats_uniform_by_far(service, kind):
    world = generate_slates(seed=7, kind=kind)  # 5 segments; ccb 10 offers, slates 3 x 5 offers
    delays = Delays(speed=SPEED)
    with Client(service, ADMIN_KEY) as admin:
        config = loop_config(delays, kind=kind)
        created = admin.create_loop("page", {
            **config, "exploration": EXPLORATION, "vw_args": config["vw_args"] + VW_ARGS[kind],
        })
    assert created["kind"] == kind
    lines: list[str] = []
    with Client(service, created["key"], loop="page") as client:
        learning = run(client, world, decisions=LEARN, concurrency=8, seed=1, delays=delays,
                       report_every=500, write=lines.append)
        assert learning.ok, lines
        # Let the last rewards' window close and the trainer publish, then measure what is served
        # over the last part of the stream (it goes on learning meanwhile).
        time.sleep(created["config"]["reward_wait"] + 2)
        served = run(client, world, decisions=MEASURE, concurrency=8, seed=2, delays=delays,
                     report_every=MEASURE, write=lines.append)
        if kind == "slates":
            _lower_slots_do_not_depend_on_the_top_slots_draw(client, world)
    assert served.ok, lines
    weights = served.weights
    uniform = scalarise(served.uniform, weights)
    oracle = scalarise(served.oracle, weights)
    policy = scalarise(served.policy, weights)  # exact value of the slot PMFs the service served
    share = (policy - uniform) / (oracle - uniform)
    result = (f"{kind}: served {policy:.4f}, uniform {uniform:.4f}, oracle {oracle:.4f}: "
              f"{share:.0%} of the way; {learning.rewards.late} late rewards")
    print(result)  # shown with pytest -s
    # Stated margin: ccb at least 30 % of the way from uniform (0.2807) to the oracle (0.6890),
    # i.e. >= 0.4032; slates at least 10 % of the way from 0.3527 to 0.6578, i.e. >= 0.3832.
    # Uniform and the oracle are exact; the policy's value is exact given the 2,000 users (and,
    # ccb, the upper slots) served, whose mix moves it by one standard error of 0.0014 (uniform) to
    # 0.005 (oracle) for ccb, 0.004 to 0.009 for slates: a policy no better than uniform misses the
    # margin by more than 80 standard errors (ccb) or 7 (slates). What varies between runs is the
    # learning path, more for slates (one reward per page: each slot is credited with the others'
    # clicks). On the shared 2-core development machine, on Postgres: ccb 63-83 % of the way over
    # 10 runs (mean 72 %, sd 7), slates with VW_ARGS 38-75 % over 8 runs (mean 59 %, sd 11): the
    # margins are 6 (ccb) and 4.4 (slates) standard deviations below the means. Before (1,000
    # decisions measured, slates at VW's default rate): ccb 43-84 % over 18 runs (sd 11), slates
    # 21-78 % over 27 (mean 48 %, sd 14), and one CI run on 2026-11-27 at 3 %.
    assert share >= MARGIN[kind], "\n".join([*lines, result])


def _lower_slots_do_not_depend_on_the_top_slots_draw(client, world) -> None:
    """What makes the measured value of a slates policy exact: a slot's PMF does not depend on
    what the slots above drew. The same context twice with one model, the second time with the
    top slot's pick excluded from it: the top slot draws something else, the other slots' PMFs
    (of the trained, far from uniform, model) stay the same."""
    _, context = world.draw_context(np.random.default_rng(0))
    actions = world.actions()
    for _ in range(5):  # the trainer may publish a model between the two calls
        first = client.choose(context, actions, slots=world.slot_requests())
        top = first["slots"][0]["action"]
        slots = world.slot_requests()
        slots[0]["excluded"] = [top]
        slots[0]["baseline"] = next(a["id"] for a in actions
                                    if a["slot"] == "top" and a["id"] != top)
        second = client.choose(context, actions, slots=slots)
        if first["model_version"] == second["model_version"]:
            break
    assert first["model_version"] == second["model_version"] > 0
    assert second["slots"][0]["action"] != top
    for before, after in zip(first["slots"][1:], second["slots"][1:]):
        pmf = {ranked["id"]: ranked["probability"] for ranked in before["ranking"]}
        assert max(pmf.values()) > 1 / len(pmf) + 0.05, before  # the model has learned something
        assert {r["id"]: r["probability"] for r in after["ranking"]} == pytest.approx(pmf)
