"""`bandits simulate` against a real `bandits serve`: every decision served, every reward stored."""

from __future__ import annotations

import re

import pytest
import requests
from click.testing import CliRunner

from bandits.client import Client
from bandits.simulate.cli import simulate
from bandits.simulate.driver import DEFAULT_WEIGHTS, Delays, SimulationError, decision_rng, run
from bandits.simulate.world import OBJECTIVES, generate, scalarise
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.e2e

NUMBER = r"-?\d+\.\d{4}"
CURVE_LINE = re.compile(
    rf"^\s*(?P<decisions>\d+)\s+(?P<click>{NUMBER})\s+(?P<conv>{NUMBER})\s+(?P<revenue>{NUMBER})"
    rf"\s+(?P<reward>{NUMBER})\s+(?P<policy>{NUMBER})\s+(?P<uniform>{NUMBER})\s+(?P<oracle>{NUMBER})"
    r"\s+(?P<model>\d+)\s+(?P<seconds>\d+\.\d)$"
)


def _simulate(*args: str):
    return CliRunner().invoke(simulate, list(args))


def _outcome_rows(world, seed: int, index: int, served: str, event_id: str) -> tuple[dict, set]:
    """The context decision ``index`` drew, and the outcome rows its drawn rewards should make."""
    rng = decision_rng(seed, index)
    segment, context = world.draw_context(rng)
    drawn = world.draw_outcomes(segment, served, rng)
    rows = set()
    if drawn["click"]:
        rows.add(("click", 1.0, f"{event_id}/click"))
    if drawn["conversion"]:
        rows |= {("conversion", 1.0, f"{event_id}/conversion"),
                 ("revenue", round(drawn["revenue"], 9), f"{event_id}/conversion")}
    return context, rows


def test_simulate_drives_a_real_service_and_every_reward_is_stored(service_url):
    seed, decisions = 7, 200
    result = _simulate("--url", service_url, "--create-loop", "--admin-key", ADMIN_KEY, "--loop", "sim",
                       "--decisions", str(decisions), "--concurrency", "4", "--seed", str(seed),
                       "--report-every", "50", "--speed", "50")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    # The learning curve: a header, then one line per 50 decisions with the exact references.
    world = generate(seed, segments=5, offers=10)
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["decisions"])
    assert lines[header].split() == ["decisions", "click", "conv", "revenue", "reward", "policy",
                                     "uniform", "oracle", "model", "seconds"]
    curve = [CURVE_LINE.match(line) for line in lines[header + 1:header + 5]]
    assert all(curve), lines[header + 1:header + 5]
    assert [int(m["decisions"]) for m in curve] == [50, 100, 150, 200]
    uniform = scalarise(world.uniform_value(), DEFAULT_WEIGHTS)
    oracle = scalarise(world.oracle_value(DEFAULT_WEIGHTS), DEFAULT_WEIGHTS)
    assert {m["uniform"] for m in curve} == {f"{uniform:.4f}"}
    assert {m["oracle"] for m in curve} == {f"{oracle:.4f}"}
    # The policy column is the exact expectation of the served PMFs on the window's contexts:
    # never above the best offer of the best segment, whatever the model.
    best_anywhere = (world.expectations @ [DEFAULT_WEIGHTS[k] for k in OBJECTIVES]).max()
    for m in curve:
        assert 0 < float(m["policy"]) <= best_anywhere + 1e-4
    summary = next(line for line in lines if line.startswith("decisions:"))
    assert summary.startswith(f"decisions: {decisions} of {decisions} served") and "failed: 0" in summary
    # Late rewards (after the loop's reward_wait, on a very busy machine) are stored all the same.
    rewards = re.search(r"rewards: (\d+) of (\d+) sent \((\d+) outcomes stored, 0 duplicates, "
                        r"\d+ late\); failed: 0; pending: 0", result.output)
    assert rewards and rewards[1] == rewards[2], result.output
    assert any(line.startswith("oracle") for line in lines)

    # Every decision is in the service as drawn, with exactly the rewards drawn for it.
    key = re.search(r"its key \(shown once, keep it\): (\S+)", result.output)[1]
    stored = 0
    with Client(service_url, key, loop="sim") as client:
        for index in range(decisions):
            event_id = f"sim-{seed}-{index}"
            event = client.event(event_id)
            context, rows = _outcome_rows(world, seed, index, event["action"], event_id)
            assert event["context"] == context
            stored_rows = {(o["objective"], round(o["value"], 9), o["reward_id"])
                           for o in event["outcomes"]}
            assert stored_rows == rows
            stored += len(event["outcomes"])
    assert stored == int(rewards[3]) > 0


def test_the_driver_returns_counts_that_match_the_service(service_url):
    admin = Client(service_url, ADMIN_KEY)
    world = generate(seed=2, segments=4, offers=6)
    created = admin.create_loop("driven", {"objectives": [
        {"name": "click", "weight": 2.0}, {"name": "conversion", "weight": 0.0},
        {"name": "revenue", "weight": 0.1}, {"name": "unused"}]})
    admin.close()
    lines: list[str] = []
    with Client(service_url, created["key"], loop="driven") as client:
        summary = run(client, world, 120, concurrency=4, seed=2, delays=Delays(speed=100),
                      report_every=40, write=lines.append)
    assert summary.ok and summary.served == 120 and not summary.failed
    # The loop's weights (the objective the world does not report is left out).
    assert summary.weights == {"click": 2.0, "conversion": 0.0, "revenue": 0.1}
    assert summary.rewards.sent == summary.rewards.scheduled and summary.rewards.pending == 0
    assert summary.oracle == world.oracle_value(summary.weights)
    assert sum(1 for line in lines if CURVE_LINE.match(line)) == 3


def test_a_rerun_of_the_same_seed_on_the_same_loop_stops_at_the_first_duplicate(service_url):
    args = ["--url", service_url, "--admin-key", ADMIN_KEY, "--loop", "rerun", "--decisions", "30",
            "--seed", "4", "--speed", "100", "--report-every", "10"]
    assert _simulate(*args, "--create-loop").exit_code == 0
    again = _simulate(*args)
    assert again.exit_code == 1
    assert "stopped early" in again.output and "DuplicateEvent" in again.output
    # A new prefix runs the same seed again.
    assert _simulate(*args, "--event-prefix", "second").exit_code == 0


def test_clear_errors_before_any_decision(service_url):
    missing = _simulate("--url", service_url, "--loop", "sim")
    assert missing.exit_code == 2 and "--key" in missing.output
    refused = _simulate("--url", service_url, "--loop", "sim", "--key", "bk_not-a-key")
    assert refused.exit_code == 1 and "Unauthorized" in refused.output
    assert "Traceback" not in refused.output
    requests.post(f"{service_url}/v1/loops", json={"name": "clicks-only", "config": {
        "objectives": [{"name": "click"}]}}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    unfit = _simulate("--url", service_url, "--loop", "clicks-only", "--admin-key", ADMIN_KEY)
    assert unfit.exit_code == 1 and "has no objective conversion, revenue" in unfit.output
    taken = _simulate("--url", service_url, "--loop", "clicks-only", "--admin-key", ADMIN_KEY,
                      "--create-loop")
    assert taken.exit_code == 1 and "exists" in taken.output
    with Client(service_url, ADMIN_KEY, loop="nowhere") as client:
        with pytest.raises(SimulationError, match="LoopNotFound"):
            run(client, generate(0), 1, write=lambda line: None)
    unreachable = _simulate("--url", "http://127.0.0.1:9", "--key", "k")
    assert unreachable.exit_code == 1 and "cannot reach" in unreachable.output
