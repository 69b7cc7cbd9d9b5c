"""`bandits simulate --world slates` against a real `bandits serve`: ccb and slates loops, every
slate decision served with its slots, every reward stored as drawn (per slot, or once per page)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from bandits.client import Client
from bandits.simulate.cli import simulate
from bandits.simulate.driver import DEFAULT_WEIGHTS, Delays, SimulationError, decision_rng, run
from bandits.simulate.slates import generate_slates
from bandits.simulate.world import OBJECTIVES, generate, scalarise
from tests.conftest import ADMIN_KEY
from tests.simulate.test_driver import CURVE_LINE

pytestmark = pytest.mark.e2e


def _simulate(*args: str):
    return CliRunner().invoke(simulate, list(args))


def _drawn(world, seed: int, index: int, served: list[str]):
    """The context decision ``index`` drew and its slots' outcomes for the ``served`` slate."""
    rng = decision_rng(seed, index)
    segment, context = world.draw_context(rng)
    return context, world.draw_outcomes(segment, served, rng)


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_simulate_drives_a_slate_loop_and_every_reward_is_stored_as_drawn(service_url, kind):
    seed, decisions, loop = 5, 120, f"page-{kind}"
    result = _simulate("--url", service_url, "--create-loop", "--admin-key", ADMIN_KEY,
                       "--loop", loop, "--world", "slates", "--kind", kind,
                       "--decisions", str(decisions), "--concurrency", "4", "--seed", str(seed),
                       "--report-every", "40", "--speed", "50")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"created {kind} loop {loop!r}" in result.output
    assert lines[1].startswith(f"world: a {kind} page, slots top (examined")

    world = generate_slates(seed, kind)
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["decisions"])
    curve = [CURVE_LINE.match(line) for line in lines[header + 1:header + 4]]
    assert all(curve), lines[header + 1:header + 4]
    assert [int(m["decisions"]) for m in curve] == [40, 80, 120]
    uniform = scalarise(world.uniform_value(), DEFAULT_WEIGHTS)
    oracle = scalarise(world.oracle_value(DEFAULT_WEIGHTS), DEFAULT_WEIGHTS)
    assert {m["uniform"] for m in curve} == {f"{uniform:.4f}"}
    assert {m["oracle"] for m in curve} == {f"{oracle:.4f}"}
    # The policy column: what the served slot PMFs are worth; never above the best slate anywhere.
    w = [DEFAULT_WEIGHTS[k] for k in OBJECTIVES]
    best_anywhere = max(sum((world.expectations[s, k] @ w).max() for k in range(3))
                        for s in range(5))
    assert all(0 < float(m["policy"]) <= best_anywhere + 1e-4 for m in curve)
    rewards = re.search(r"rewards: (\d+) of (\d+) sent \((\d+) outcomes stored, 0 duplicates, "
                        r"\d+ late\); failed: 0; pending: 0", result.output)
    assert rewards and rewards[1] == rewards[2], result.output

    key = re.search(r"its key \(shown once, keep it\): (\S+)", result.output)[1]
    stored = 0
    with Client(service_url, key, loop=loop) as client:
        config = client.loop_config()
        assert config["kind"] == kind and config["config"]["vw_args"] == "-q uo -q u_"
        aggregation = {o["name"]: o["aggregation"] for o in config["config"]["objectives"]}
        assert aggregation == ({name: "sum" for name in OBJECTIVES} if kind == "slates" else
                               {"click": "max", "conversion": "max", "revenue": "sum"})
        for index in range(decisions):
            event_id = f"sim-{seed}-{index}"
            event = client.event(event_id)
            assert event["actions"] == world.actions()
            assert [(s["id"], s["features"], s["baseline"]) for s in event["slots"]] == [
                (s["id"], s["features"], s["baseline"]) for s in world.slot_requests()]
            served = [slot["chosen"] for slot in event["slots"]]
            context, drawn = _drawn(world, seed, index, served)
            assert event["context"] == context
            rows = {(o["objective"], round(o["value"], 9), o["slot"], o["reward_id"])
                    for o in event["outcomes"]}
            expected = set()
            if kind == "ccb":
                for slot, outcomes in zip(("top", "middle", "bottom"), drawn):
                    if outcomes["click"]:
                        expected.add(("click", 1.0, slot, f"{event_id}/{slot}/click"))
                    if outcomes["conversion"]:
                        expected |= {("conversion", 1.0, slot, f"{event_id}/{slot}/conversion"),
                                     ("revenue", round(outcomes["revenue"], 9), slot,
                                      f"{event_id}/{slot}/conversion")}
            elif any(o["click"] for o in drawn):  # one reward per page with a click: its totals
                expected = {(name, round(float(sum(o[name] for o in drawn)), 9), None,
                             f"{event_id}/page") for name in OBJECTIVES}
            assert rows == expected, (index, rows, expected)
            stored += len(rows)
    assert stored == int(rewards[3]) > 0


def test_the_driver_refuses_a_loop_of_another_kind(service_url):
    with Client(service_url, ADMIN_KEY) as admin:
        for kind in ("ccb", "slates"):
            admin.create_loop(f"kind-{kind}", {"kind": kind, "objectives": [
                {"name": name} for name in OBJECTIVES]})
    with Client(service_url, ADMIN_KEY, loop="kind-ccb") as client:
        with pytest.raises(SimulationError, match="of kind 'ccb'; the simulation needs 'slates'"):
            run(client, generate_slates(0, "slates"), 1, write=lambda line: None)
        with pytest.raises(SimulationError, match="of kind 'ccb'; the simulation needs 'cb'"):
            run(client, generate(0), 1, write=lambda line: None)
    unfit = _simulate("--url", service_url, "--loop", "kind-slates", "--admin-key", ADMIN_KEY,
                      "--kind", "ccb", "--decisions", "1")
    assert unfit.exit_code == 1 and "needs 'ccb'" in unfit.output
    # A slates loop of one's own, driven from Python: the loop's weights, page totals.
    lines: list[str] = []
    world = generate_slates(2, "slates", segments=4, offers=4, slots=2)
    with Client(service_url, ADMIN_KEY, loop="kind-slates") as client:
        summary = run(client, world, 60, concurrency=3, seed=2, delays=Delays(speed=100),
                      report_every=30, write=lines.append)
    assert summary.ok and summary.served == 60 and 0 < summary.rewards.sent < 60
    assert summary.weights == {"click": 1.0, "conversion": 1.0, "revenue": 1.0}
    assert summary.oracle == world.oracle_value(summary.weights)
    assert sum(1 for line in lines if CURVE_LINE.match(line)) == 2


def test_slate_options_are_checked_before_any_decision(service_url):
    for args, message in ((["--kind", "ccb", "--world", "cb"], "--kind is for --world slates"),
                          (["--slots", "2"], "--slots is for --world slates"),
                          (["--kind", "ccb", "--offers", "2"], "at least as many offers as slots"),
                          (["--world", "slates", "--segments", "20"],
                           "20 (the segments) to 200 offers"),
                          (["--world", "slates", "--kind", "ccb", "--segments", "20"],
                           "offers must be between")):
        result = _simulate("--url", service_url, "--admin-key", ADMIN_KEY, *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
