"""Evaluation jobs end to end: decisions made through the api, rewards, a real worker, real VW,
on SQLite and Postgres."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from bandits.cli import main
from bandits.jobs.evaluation import run_evaluation
from bandits.jobs.worker import Worker, run_job
from bandits.loop_config import LoopConfig
from bandits.store import jobs as store
from bandits.services.loops import LoopService
from bandits.store.models import Job, Loop, Outcome
from tests.conftest import ADMIN

ACTIONS = ["a1", "a2", "a3"]
CLICK_RATE = {"a1": 0.2, "a2": 0.5, "a3": 0.8}
OBJECTIVES = [{"name": "click"}, {"name": "revenue", "weight": 0.1}]
EVALUATIONS = "/v1/loops/{}/evaluations"


def _window() -> dict[str, str]:
    now = datetime.now(timezone.utc)
    return {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}


def _make_loop(app, name: str, config: dict) -> dict[str, str]:
    created = LoopService(app.extensions["bandits"].db).create(name, config)
    return {"Authorization": f"Bearer {created['key']}"}


def _log(client, loop: str, auth, n: int, seed: int, exclude_every: int = 0) -> list[tuple[str, float, float]]:
    """``n`` decisions with clicks drawn at CLICK_RATE and revenue for some; (action, click,
    revenue) per decision."""
    rng = np.random.default_rng(seed)
    logged = []
    for i in range(n):
        body = {"event_id": f"e{i}", "context": {"user": {"segment": f"s{i % 3}"}},
                "actions": [{"id": a, "features": {"offer": {"rank": k}}} for k, a in enumerate(ACTIONS)]}
        if exclude_every and i % exclude_every == 0:
            body["excluded"] = ["a1"]
        reply = client.post(f"/v1/loops/{loop}/choose", json=body, headers=auth)
        assert reply.status_code == 201, reply.json
        action = reply.json["action"]
        click = float(rng.random() < CLICK_RATE[action])
        revenue = float(rng.integers(0, 10)) if click else 0.0
        rewards = {"click": click, "revenue": revenue} if i % 7 else {"click": click}
        reply = client.post(f"/v1/loops/{loop}/events/e{i}/rewards", json={"rewards": rewards}, headers=auth)
        assert reply.status_code == 202, reply.json
        logged.append((action, click, revenue if i % 7 else 0.0))
    return logged


def _run(client, db, loop: str, body: dict) -> dict:
    reply = client.post(EVALUATIONS.format(loop), json=body, headers=ADMIN)
    assert reply.status_code == 202, reply.json
    assert reply.json["status"] == "queued"
    assert Worker(db).run_once() == reply.json["id"]
    done = client.get(f"{EVALUATIONS.format(loop)}/{reply.json['id']}", headers=ADMIN)
    assert done.status_code == 200
    assert done.json["status"] == "succeeded", done.json["error"]
    assert done.json["progress"] == 1.0
    return done.json["result"]


def test_the_logging_candidate_reproduces_the_logged_mean(app, client, db):
    auth = _make_loop(app, "shop", {"objectives": OBJECTIVES})
    logged = _log(client, "shop", auth, 80, seed=1, exclude_every=5)
    result = _run(client, db, "shop", {"window": _window(), "candidates": [{"kind": "uniform"}],
                                      "bootstrap": 50, "seed": 3})

    assert result["n"] == 80
    truth = {"click": np.mean([c for _, c, _ in logged]), "revenue": np.mean([r for *_, r in logged])}
    truth["reward"] = truth["click"] + 0.1 * truth["revenue"]
    for objective, mean in truth.items():
        assert result["logged_mean"][objective] == pytest.approx(mean, abs=1e-9)
        # IPS and SNIPS of the logger on its own logs: every weight is 1, the logged mean exactly.
        for estimator in ("ips", "snips"):
            cell = result["candidates"]["logging"][objective][estimator]
            assert cell["estimate"] == pytest.approx(mean, abs=1e-9), (objective, estimator)
            assert cell["lift"]["value"] == pytest.approx(0.0, abs=1e-9)
            assert cell["diagnostics"]["weight_max"] == 1.0
        # DR adds the reward model's mean correction, zero only in expectation.
        dr = result["candidates"]["logging"][objective]["dr"]["intervals"]["gaussian"]
        assert dr["lower"] < mean < dr["upper"]
        assert "bootstrap" in result["candidates"]["logging"][objective]["snips"]["intervals"]
    # The uniform candidate never takes a1 where it was excluded.
    assert result["candidates"]["uniform"]["click"]["ips"]["diagnostics"]["n"] == 80

    listed = client.get(EVALUATIONS.format("shop"), headers=ADMIN)
    assert [job["status"] for job in listed.json["jobs"]] == ["succeeded"]


def test_constant_and_uniform_candidates_match_the_truth_of_a_uniform_logger(app, client, db):
    auth = _make_loop(app, "shop", {"objectives": OBJECTIVES,
                                    "exploration": {"algorithm": "epsilon", "epsilon": 1.0}})
    logged = _log(client, "shop", auth, 450, seed=2)
    result = _run(client, db, "shop", {
        "window": _window(), "objectives": ["click"],
        "candidates": [{"kind": "constant", "action": "a3"}, {"kind": "uniform"},
                       {"kind": "model", "version": 0}, {"kind": "vw", "vw_args": "-q uo"},
                       {"kind": "vw", "vw_args": "", "name": "greedy",
                        "exploration": {"algorithm": "epsilon", "epsilon": 0.1}}],
        "estimators": ["ips", "snips", "dr", {"name": "ips-clipped", "clip": 5}]})

    clicks = {a: [c for action, c, _ in logged if action == a] for a in ACTIONS}
    a3 = result["candidates"]["constant:a3"]["click"]
    # Every weight is 3 on a3 and 0 elsewhere: SNIPS is the empirical click rate of a3.
    assert a3["snips"]["estimate"] == pytest.approx(np.mean(clicks["a3"]), abs=1e-9)
    for estimator in ("ips", "snips", "dr"):
        interval = a3[estimator]["intervals"]["gaussian"]
        assert interval["lower"] < CLICK_RATE["a3"] < interval["upper"], estimator
        assert a3[estimator]["lift"]["value"] > 0
    uniform = result["candidates"]["uniform"]["click"]["snips"]
    assert uniform["estimate"] == pytest.approx(np.mean([c for _, c, _ in logged]), abs=1e-9)
    # Replayed over the log, VW learns that a3 clicks most: far above uniform, below a3's own
    # rate (it explores, and learns as it goes).
    greedy = result["candidates"]["greedy"]["click"]["snips"]["estimate"]
    assert uniform["estimate"] + 0.1 < greedy < CLICK_RATE["a3"] + 0.05
    # The empty model and the loop's own replayed configuration give distributions too.
    for name in ("model:0", "vw:-q uo"):
        cell = result["candidates"][name]["click"]["snips"]
        assert 0.0 <= cell["estimate"] <= 1.0
        assert cell["diagnostics"]["effective_sample_size"] > 10


@pytest.mark.parametrize("body, status, fragment", [
    ({"candidates": [{"kind": "bogus"}]}, 422, "bogus"),
    ({"candidates": [{"kind": "uniform"}], "estimators": ["ipz"]}, 422, "ipz"),
    ({"candidates": [{"kind": "uniform"}], "estimators": ["pi"]}, 422, "slate"),
    ({"candidates": [{"kind": "uniform"}], "estimators": [{"name": "ips-clipped", "clip": -1}]}, 422, "clip"),
    ({"candidates": [{"kind": "uniform"}], "confidence": 1.5}, 422, "confidence"),
    ({"candidates": [{"kind": "uniform"}], "objectives": ["views"]}, 422, "views"),
    ({"candidates": [{"kind": "model", "version": 7}]}, 422, "version 7"),
    ({"candidates": [{"kind": "vw", "vw_args": "--no_such_flag"}]}, 422, "VW"),
    ({"candidates": []}, 422, "candidates"),
])
def test_bad_requests_are_refused_and_write_nothing(app, client, db, body, status, fragment):
    _make_loop(app, "shop", {"objectives": OBJECTIVES})
    reply = client.post(EVALUATIONS.format("shop"), json={"window": _window(), **body}, headers=ADMIN)
    assert reply.status_code == status, reply.json
    assert fragment in reply.json["error"]["message"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_windows_loops_and_keys_are_checked(app, client, db, loop_key):
    now = datetime.now(timezone.utc).isoformat()
    inverted = {"since": now, "until": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()}
    for window, code in (({"since": now, "until": now}, "InvalidWindow"), (inverted, "InvalidWindow"),
                         ({"since": "2026-01-01T00:00:00", "until": now}, "InvalidEvaluation")):
        reply = client.post(EVALUATIONS.format("shop"), headers=ADMIN,
                            json={"window": window, "candidates": [{"kind": "uniform"}]})
        assert reply.status_code == 422 and reply.json["error"]["code"] == code, reply.json
    _make_loop(app, "page", {"kind": "ccb"})  # vw args are checked with the loop's kind
    reply = client.post(EVALUATIONS.format("page"), headers=ADMIN, json={
        "window": _window(), "candidates": [{"kind": "vw", "vw_args": "--oaa 3"}]})
    assert reply.status_code == 422 and reply.json["error"]["code"] == "InvalidVwArgs", reply.json
    reply = client.post(EVALUATIONS.format("shop"), json={"window": _window(), "candidates": [{"kind": "uniform"}]},
                        headers={"Authorization": f"Bearer {loop_key}"})
    assert reply.status_code == 403
    assert client.get(f"{EVALUATIONS.format('shop')}/99", headers=ADMIN).status_code == 404
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_job_whose_worker_died_is_claimed_again_and_finishes(app, client, db):
    auth = _make_loop(app, "shop", {"objectives": OBJECTIVES})
    _log(client, "shop", auth, 20, seed=4)
    reply = client.post(EVALUATIONS.format("shop"), headers=ADMIN,
                        json={"window": _window(), "candidates": [{"kind": "baseline"}]})
    job_id = reply.json["id"]
    dead = Worker(db, name="dead-worker", stale_after=60)
    assert dead.claim() == job_id  # ... and it dies before its first heartbeat
    alive = Worker(db, name="alive-worker", stale_after=60)
    assert alive.run_once() is None  # the claim is fresh: nothing to take over yet
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            heartbeat_at=datetime.now(timezone.utc) - timedelta(minutes=5)))

    assert alive.run_once() == job_id
    job = client.get(f"{EVALUATIONS.format('shop')}/{job_id}", headers=ADMIN).json
    assert (job["status"], job["attempts"]) == ("succeeded", 2)
    assert job["result"]["n"] == 20
    with db.session() as session:
        assert session.get(Job, job_id).claimed_by == "alive-worker"


def test_bandits_evaluate_prints_a_table(app, client, db, settings):
    auth = _make_loop(app, "shop", {"objectives": OBJECTIVES})
    _log(client, "shop", auth, 30, seed=5)
    window = _window()
    result = CliRunner(env={"BANDITS_DATABASE_URL": settings.database_url}).invoke(main, [
        "evaluate", "shop", "--since", window["since"], "--until", window["until"],
        "--candidate", "uniform", "--candidate", "constant:a2", "--estimator", "snips",
    ])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("30 decisions; logged mean: click")
    assert lines[1].split()[:4] == ["candidate", "objective", "estimator", "estimate"]
    assert {line.split()[0] for line in lines[2:]} == {"logging", "uniform", "constant:a2"}
    with db.session() as session:
        assert session.scalar(select(Job.status)) == "succeeded"

    refused = CliRunner(env={"BANDITS_DATABASE_URL": settings.database_url}).invoke(main, [
        "evaluate", "shop", "--since", window["until"], "--until", window["since"], "--candidate", "uniform"])
    assert refused.exit_code == 1 and "InvalidWindow" in refused.output


def test_results_do_not_depend_on_the_page_size(app, client, db):
    auth = _make_loop(app, "shop", {"objectives": OBJECTIVES})
    _log(client, "shop", auth, 40, seed=6, exclude_every=3)
    reply = client.post(EVALUATIONS.format("shop"), headers=ADMIN, json={
        "window": _window(), "candidates": [{"kind": "uniform"}, {"kind": "vw", "vw_args": ""}],
        "bootstrap": 20, "seed": 1})
    spec = reply.json["spec"]
    with db.session() as session:
        loop = session.get(Loop, session.get(Job, reply.json["id"]).loop_id)
        config = LoopConfig.model_validate(loop.config)
    fractions: list[float] = []
    paged = run_evaluation(db, loop.id, config, spec, fractions.append, page_size=7)
    whole = run_evaluation(db, loop.id, config, spec, page_size=1000)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 12
    for name, objectives in whole["candidates"].items():
        for objective, estimators in objectives.items():
            for estimator, cell in estimators.items():
                assert paged["candidates"][name][objective][estimator]["estimate"] == pytest.approx(
                    cell["estimate"], abs=1e-12), (name, objective, estimator)


def test_a_worker_whose_job_was_taken_over_writes_nothing(app, client, db):
    auth = _make_loop(app, "shop", {"objectives": OBJECTIVES})
    _log(client, "shop", auth, 10, seed=7)
    job_id = client.post(EVALUATIONS.format("shop"), headers=ADMIN,
                         json={"window": _window(), "candidates": [{"kind": "uniform"}]}).json["id"]
    assert Worker(db, name="slow").claim() == job_id
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            heartbeat_at=datetime.now(timezone.utc) - timedelta(minutes=5)))
    assert Worker(db, name="fast", stale_after=60).run_once() == job_id

    assert run_job(db, job_id, "slow") is False  # its first heartbeat finds the claim gone
    with db.session() as session:
        job = session.get(Job, job_id)
        assert (job.status, job.claimed_by, job.attempts) == ("succeeded", "fast", 2)


def test_a_job_that_keeps_losing_its_worker_fails(app, client, db):
    _make_loop(app, "shop", {"objectives": OBJECTIVES})
    job_id = client.post(EVALUATIONS.format("shop"), headers=ADMIN,
                         json={"window": _window(), "candidates": [{"kind": "uniform"}]}).json["id"]
    for attempt in range(3):
        assert Worker(db, name=f"dies-{attempt}", stale_after=60).claim() == job_id
        with db.session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(
                heartbeat_at=datetime.now(timezone.utc) - timedelta(minutes=5)))
    assert Worker(db, name="last", stale_after=60).run_once() is None
    job = client.get(f"{EVALUATIONS.format('shop')}/{job_id}", headers=ADMIN).json
    assert job["status"] == "failed" and "3 times" in job["error"]


def test_an_empty_window_fails_the_job_with_a_reason(app, client, db):
    _make_loop(app, "shop", {"objectives": OBJECTIVES})
    reply = client.post(EVALUATIONS.format("shop"), headers=ADMIN,
                        json={"window": _window(), "candidates": [{"kind": "uniform"}]})
    assert Worker(db).run_once() == reply.json["id"]
    job = client.get(f"{EVALUATIONS.format('shop')}/{reply.json['id']}", headers=ADMIN).json
    assert job["status"] == "failed" and "no decisions" in job["error"]


def test_postgres_workers_skip_a_job_another_worker_is_claiming(app, client, settings):
    if settings.is_sqlite:
        pytest.skip("FOR UPDATE SKIP LOCKED is Postgres's; SQLite has one writer")
    db = app.extensions["bandits"].db
    _make_loop(app, "shop", {"objectives": OBJECTIVES})
    first, second = (client.post(EVALUATIONS.format("shop"), headers=ADMIN,
                                 json={"window": _window(), "candidates": [{"kind": "uniform"}]}).json["id"]
                     for _ in range(2))
    with db.session() as holding:  # a worker in the middle of claiming the first job
        assert store.claim("one", 60, 3, session=holding).id == first
        with db.session() as session:
            assert store.claim("two", 60, 3, session=session).id == second


def test_dr_with_the_contextual_reward_model_is_tighter_than_ips(app, client, db):
    """Rewards depend on the context: the hashed context x action ridge model explains them, so
    DR's interval is narrower than IPS's and still holds the truth."""
    auth = _make_loop(app, "shop", {"objectives": [{"name": "click"}],
                                    "exploration": {"algorithm": "epsilon", "epsilon": 1.0}})
    rng = np.random.default_rng(7)
    rate = {("s0", "a1"): 0.9, ("s1", "a2"): 0.9, ("s2", "a3"): 0.9}  # else 0.1
    truth = []
    for i in range(450):
        segment = f"s{i % 3}"
        body = {"event_id": f"e{i}", "context": {"user": {"segment": segment}},
                "actions": [{"id": a} for a in ACTIONS]}
        reply = client.post("/v1/loops/shop/choose", json=body, headers=auth)
        assert reply.status_code == 201, reply.json
        click = float(rng.random() < rate.get((segment, reply.json["action"]), 0.1))
        assert client.post(f"/v1/loops/shop/events/e{i}/rewards", json={"rewards": {"click": click}},
                           headers=auth).status_code == 202
        truth.append(rate.get((segment, "a1"), 0.1))
    widths = {}
    for model in ("ridge", "action-mean"):
        result = _run(client, db, "shop", {
            "window": _window(), "objectives": ["click"], "reward_model": model,
            "candidates": [{"kind": "constant", "action": "a1"}], "estimators": ["ips", "dr"]})
        cells = result["candidates"]["constant:a1"]["click"]
        for estimator in ("ips", "dr"):
            interval = cells[estimator]["intervals"]["gaussian"]
            assert interval["lower"] < np.mean(truth) < interval["upper"], (model, estimator)
            widths[model, estimator] = interval["upper"] - interval["lower"]
    assert widths["ridge", "dr"] < 0.8 * widths["ridge", "ips"]
    assert widths["ridge", "dr"] < widths["action-mean", "dr"]


def test_a_vw_replay_learns_the_scalar_reward_even_beside_an_objective_named_reward(app, client, db):
    """The replay learns what the trainer learns (Σ weight × outcome), whatever the objectives
    are called: a loop whose revenue objective is named `reward` and one where it is named
    `gain` replay identically on identical logs."""
    from bandits.simulate.logged import write_log
    from bandits.simulate.world import tradeoff

    service = LoopService(db)
    results = []
    for name, objective in (("named", "reward"), ("plain", "gain")):
        service.create(name, {"objectives": [{"name": "click"}, {"name": objective, "weight": 0.05}],
                              "exploration": {"algorithm": "epsilon", "epsilon": 0.2}})
        with db.session() as session:
            loop = session.scalar(select(Loop).where(Loop.name == name))
            loop_id, config = loop.id, LoopConfig.model_validate(loop.config)
        write_log(db, loop_id, tradeoff(), 1500, weights={"click": 1.0}, epsilon=0.2, seed=3)
        with db.session() as session:
            session.execute(update(Outcome).where(Outcome.loop_id == loop_id, Outcome.objective == "revenue")
                            .values(objective=objective))
        spec = {"window": _window(), "kind": "cb", "reward_model": "action-mean",
                "candidates": [{"kind": "logging"}, {"kind": "vw", "vw_args": "-q u_"}],
                "objectives": ["click"], "estimators": ["snips"], "confidence": 0.95,
                "bootstrap": 0, "seed": 0}
        results.append(run_evaluation(db, loop_id, config, spec)["candidates"]["vw:-q u_"])
    assert results[0] == results[1]
