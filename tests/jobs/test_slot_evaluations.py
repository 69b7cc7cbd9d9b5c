"""Evaluation jobs of ``ccb`` and ``slates`` loops end to end: decisions made through the api,
per-slot (ccb) and per-slate (slates) rewards, a real worker, real VW, SQLite and Postgres."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from bandits.jobs.evaluation import run_evaluation
from bandits.loop_config import LoopConfig
from bandits.services.trainer import LoopTrainer
from bandits.store.models import Job, Loop
from tests.conftest import ADMIN
from tests.jobs.test_evaluations import EVALUATIONS, _make_loop, _run, _window

OBJECTIVES = [{"name": "click", "aggregation": "earliest"},
              {"name": "revenue", "weight": 0.1, "aggregation": "earliest"}]
UNIFORM = {"algorithm": "epsilon", "epsilon": 1.0}

POOL = [{"id": f"a{i}", "features": {"offer": {"n": i}}} for i in range(5)]
CCB_SLOTS = [
    {"id": "hero", "baseline": "a0", "features": {"place": {"position": 0}}},
    {"id": "side", "baseline": "a1", "excluded": ["a4"]},
    {"id": "foot", "baseline": "a2", "excluded": ["a0"]},
]
CCB_RATE = {"a0": 0.2, "a1": 0.4, "a2": 0.6, "a3": 0.8, "a4": 0.5}

SLATE_ACTIONS = ([{"id": f"t{i}", "slot": "top", "features": {"offer": {"n": i}}} for i in range(3)]
                 + [{"id": f"b{i}", "slot": "bottom"} for i in range(2)])
SLATES_SLOTS = [{"id": "top", "baseline": "t0", "excluded": ["t2"]},
                {"id": "bottom", "baseline": "b1"}]
# The slate's click rate is additive over slots (what PI assumes).
SLATE_PART = {"t0": 0.1, "t1": 0.4, "t2": 0.45, "b0": 0.3, "b1": 0.15}


def _log_ccb(client, loop, auth, n, seed, some_slots=False):
    """Per decision: per slot (slot id, action, click, revenue)."""
    rng = np.random.default_rng(seed)
    logged = []
    for i in range(n):
        slots = CCB_SLOTS[:2] if some_slots and i % 4 == 0 else CCB_SLOTS
        body = {"event_id": f"e{i}", "context": {"user": {"segment": f"s{i % 3}"}},
                "actions": POOL, "slots": slots}
        reply = client.post(f"/v1/loops/{loop}/choose", json=body, headers=auth)
        assert reply.status_code == 201, reply.json
        rows = []
        for slot in reply.json["slots"]:
            click = float(rng.random() < CCB_RATE[slot["action"]])
            revenue = float(rng.integers(1, 5)) if click else 0.0
            rewards = {"click": click, "revenue": revenue} if i % 5 else {"click": click}
            if i % 6 != 1:  # sometimes no reward at all: the objectives' defaults (0)
                reply = client.post(f"/v1/loops/{loop}/events/e{i}/rewards",
                                    json={"rewards": rewards, "slot": slot["id"]}, headers=auth)
                assert reply.status_code == 202, reply.json
            else:
                click = revenue = 0.0
            rows.append((slot["id"], slot["action"], click, revenue if i % 5 else 0.0))
        logged.append(rows)
    return logged


def _log_slates(client, loop, auth, n, seed):
    """Per decision: (the slate's actions, click, revenue)."""
    rng = np.random.default_rng(seed)
    logged = []
    for i in range(n):
        body = {"event_id": f"e{i}", "context": {"user": {"segment": f"s{i % 3}"}},
                "actions": SLATE_ACTIONS, "slots": SLATES_SLOTS}
        reply = client.post(f"/v1/loops/{loop}/choose", json=body, headers=auth)
        assert reply.status_code == 201, reply.json
        actions = [slot["action"] for slot in reply.json["slots"]]
        click = float(rng.random() < sum(SLATE_PART[a] for a in actions))
        revenue = float(rng.integers(1, 5)) if click else 0.0
        reply = client.post(f"/v1/loops/{loop}/events/e{i}/rewards",
                            json={"rewards": {"click": click, "revenue": revenue}}, headers=auth)
        assert reply.status_code == 202, reply.json
        logged.append((actions, click, revenue))
    return logged


def _train(app, db, loop: str) -> None:
    with db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == loop))
    trainer = LoopTrainer(db, loop_id, loop)
    try:
        assert trainer.step() > 0
    finally:
        trainer.close()


def test_ccb_logging_reproduces_the_logged_means_per_slot_and_in_total(app, client, db):
    auth = _make_loop(app, "hero", {"kind": "ccb", "objectives": OBJECTIVES})
    logged = _log_ccb(client, "hero", auth, 48, seed=1, some_slots=True)
    _train(app, db, "hero")
    result = _run(client, db, "hero", {
        "window": _window(), "bootstrap": 30, "seed": 4,
        "candidates": [{"kind": "uniform"}, {"kind": "baseline"}, {"kind": "model", "version": 0},
                       {"kind": "model", "version": 1}, {"kind": "constant", "action": "a3"}]})

    assert result["n"] == 48 and result["kind"] == "ccb" and result["slots"] == 3
    assert result["slot_events"] == {"0": 48, "1": 48, "2": 36}
    for objective in ("click", "revenue", "reward"):
        def value(row):
            click, revenue = row[2], row[3]
            return {"click": click, "revenue": revenue, "reward": click + 0.1 * revenue}[objective]
        per_slot = [[value(rows[k]) for rows in logged if len(rows) > k] for k in range(3)]
        total = np.mean([sum(value(row) for row in rows) for rows in logged])
        mean = result["logged_mean"][objective]
        assert mean["total"] == pytest.approx(total, abs=1e-9)
        cells = result["candidates"]["logging"][objective]
        for k in range(3):
            assert mean["slots"][str(k)] == pytest.approx(np.mean(per_slot[k]), abs=1e-9)
            for estimator in ("ips", "snips"):
                cell = cells["slots"][str(k)][estimator]
                assert cell["estimate"] == pytest.approx(np.mean(per_slot[k]), abs=1e-9)
                assert cell["lift"]["value"] == pytest.approx(0.0, abs=1e-9)
                assert cell["diagnostics"]["weight_max"] == 1.0
        rips = cells["total"]["rips"]
        assert rips["estimate"] == pytest.approx(total, abs=1e-9)
        assert "bootstrap" in rips["intervals"]
    for name in ("uniform", "baseline", "model:0", "model:1", "constant:a3"):
        cells = result["candidates"][name]["click"]
        assert set(cells["slots"]) == {"0", "1", "2"} and set(cells["total"]) == {"rips"}
        for k in range(3):
            assert 0.0 <= cells["slots"][str(k)]["snips"]["estimate"] <= 1.0
        assert np.isfinite(cells["total"]["rips"]["estimate"])


def test_slates_logging_reproduces_the_logged_mean(app, client, db):
    auth = _make_loop(app, "page", {"kind": "slates", "objectives": OBJECTIVES})
    logged = _log_slates(client, "page", auth, 40, seed=2)
    _train(app, db, "page")
    result = _run(client, db, "page", {
        "window": _window(),
        "candidates": [{"kind": "uniform"}, {"kind": "baseline"}, {"kind": "model", "version": 1}]})

    assert result["n"] == 40 and result["kind"] == "slates"
    truth = {"click": np.mean([c for _, c, _ in logged]), "revenue": np.mean([r for *_, r in logged])}
    truth["reward"] = truth["click"] + 0.1 * truth["revenue"]
    for objective, mean in truth.items():
        assert result["logged_mean"][objective] == pytest.approx(mean, abs=1e-9)
        for estimator in ("pi", "snpi"):
            cell = result["candidates"]["logging"][objective][estimator]
            assert cell["estimate"] == pytest.approx(mean, abs=1e-9)
            assert cell["lift"]["value"] == pytest.approx(0.0, abs=1e-9)
    model = result["candidates"]["model:1"]["click"]["snpi"]
    assert np.isfinite(model["estimate"]) and model["diagnostics"]["n"] == 40


def test_a_uniform_ccb_logger_evaluates_the_baseline(app, client, db):
    auth = _make_loop(app, "hero", {"kind": "ccb", "objectives": OBJECTIVES, "exploration": UNIFORM})
    logged = _log_ccb(client, "hero", auth, 300, seed=3)
    result = _run(client, db, "hero", {"window": _window(), "objectives": ["click"],
                                       "candidates": [{"kind": "baseline"}]})
    cells = result["candidates"]["baseline"]["click"]
    # Slot k's value with the earlier slots as logged: the baseline, or the slot's first remaining
    # action where a logged earlier slot took it.
    pool = [a["id"] for a in POOL]
    totals = np.zeros(len(logged))
    for k, slot in enumerate(CCB_SLOTS):
        rates = []
        for i, rows in enumerate(logged):
            taken = {row[1] for row in rows[:k]}
            own = [a for a in pool if a not in taken and a not in slot.get("excluded", [])]
            action = slot["baseline"] if slot["baseline"] in own else own[0]
            rates.append(CCB_RATE[action] if i % 6 != 1 else 0.0)  # _log_ccb's unrewarded events
        totals += rates
        for estimator in ("ips", "snips"):
            interval = cells["slots"][str(k)][estimator]["intervals"]["gaussian"]
            assert interval["lower"] < np.mean(rates) < interval["upper"], (k, estimator)
    interval = cells["total"]["rips"]["intervals"]["gaussian"]
    assert interval["lower"] < totals.mean() < interval["upper"]


def test_a_uniform_slates_logger_evaluates_the_baseline(app, client, db):
    auth = _make_loop(app, "page", {"kind": "slates", "objectives": OBJECTIVES, "exploration": UNIFORM})
    logged = _log_slates(client, "page", auth, 300, seed=5)
    result = _run(client, db, "page", {"window": _window(), "objectives": ["click"],
                                       "candidates": [{"kind": "baseline"}]})
    truth = SLATE_PART["t0"] + SLATE_PART["b1"]
    matched = [c for actions, c, _ in logged if actions == ["t0", "b1"]]
    for estimator in ("pi", "snpi"):
        cell = result["candidates"]["baseline"]["click"][estimator]
        interval = cell["intervals"]["gaussian"]
        assert interval["lower"] < truth < interval["upper"], estimator
        assert interval["lower"] < np.mean(matched) < interval["upper"], estimator


@pytest.mark.parametrize("kind, body, fragment", [
    ("cb", {"estimators": ["pi"]}, "slate"),
    ("ccb", {"estimators": ["dr"]}, "dr needs a reward model"),
    ("ccb", {"estimators": ["pi"]}, "pi needs slots drawn independently"),
    ("ccb", {"estimators": ["iips"]}, "iips needs marginal"),
    ("slates", {"estimators": ["ips"]}, "ips is a single-slot estimator"),
    ("slates", {"estimators": ["rips"]}, "rips needs per-slot rewards"),
    ("slates", {"estimators": ["snpi", "dr"]}, "estimators[1]: dr"),
    ("ccb", {"candidates": [{"kind": "model", "version": 3}]}, "version 3"),
])
def test_bad_slot_requests_are_refused_and_write_nothing(app, client, db, kind, body, fragment):
    _make_loop(app, "loop", {"kind": kind, "objectives": OBJECTIVES})
    reply = client.post(EVALUATIONS.format("loop"), headers=ADMIN,
                        json={"window": _window(), "candidates": [{"kind": "uniform"}], **body})
    assert reply.status_code == 422, reply.json
    assert fragment in reply.json["error"]["message"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


# Three configurations in one job: the loop's own, one with interactions, one greedier.
REPLAYS = [{"kind": "vw", "vw_args": ""},
           {"kind": "vw", "vw_args": "-q us", "name": "interactions"},
           {"kind": "vw", "vw_args": "", "name": "greedy",
            "exploration": {"algorithm": "epsilon", "epsilon": 0.1}}]


def _cells(by_objective: dict) -> dict[tuple[str, ...], dict]:
    """A candidate's cells by (objective, [slots|total, position,] estimator), for either kind."""
    out = {}
    for objective, cells in by_objective.items():
        if set(cells) == {"slots", "total"}:  # ccb
            for k, estimators in cells["slots"].items():
                out.update({(objective, "slot", k, e): cell for e, cell in estimators.items()})
            out.update({(objective, "total", e): cell for e, cell in cells["total"].items()})
        else:
            out.update({(objective, e): cell for e, cell in cells.items()})
    return out


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_vw_replays_run_on_slot_loops(app, client, db, kind):
    auth = _make_loop(app, "loop", {"kind": kind, "objectives": OBJECTIVES})
    (_log_ccb if kind == "ccb" else _log_slates)(client, "loop", auth, 60, seed=7)
    result = _run(client, db, "loop", {"window": _window(), "candidates": REPLAYS,
                                       "bootstrap": 30, "seed": 2})

    assert result["n"] == 60
    for name in ("vw:", "interactions", "greedy"):
        cells = _cells(result["candidates"][name])
        estimators = {"ccb": {"ips", "snips", "rips"}, "slates": {"pi", "snpi"}}[kind]
        assert {key[-1] for key in cells} == estimators
        for key, cell in cells.items():
            assert np.isfinite(cell["estimate"]), (name, key)
            for interval in (cell["intervals"]["gaussian"], cell["intervals"]["bootstrap"]):
                assert np.isfinite([interval["lower"], interval["upper"]]).all(), (name, key)
                assert interval["lower"] <= interval["upper"], (name, key)
            assert cell["diagnostics"]["n"] > 0


def _log_learned(client, app, db, kind: str, n: int, seed: int) -> None:
    """``n`` decisions on loop ``own``, each rewarded in full (so it is learnable at once) and
    learned by the trainer before the next decision: decision i is served by the model of the
    decisions before it, the state a replay of the loop's config has when it predicts i."""
    auth = _make_loop(app, "own", {"kind": kind, "objectives": OBJECTIVES})
    with db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == "own"))
    trainer = LoopTrainer(db, loop_id, "own")
    rng = np.random.default_rng(seed)
    try:
        for i in range(n):
            body = {"event_id": f"e{i}", "context": {"user": {"segment": f"s{i % 3}"}},
                    "actions": POOL if kind == "ccb" else SLATE_ACTIONS,
                    "slots": CCB_SLOTS if kind == "ccb" else SLATES_SLOTS}
            reply = client.post("/v1/loops/own/choose", json=body, headers=auth)
            assert reply.status_code == 201, reply.json
            chosen = [slot["action"] for slot in reply.json["slots"]]
            if kind == "ccb":
                rewards = [({"click": float(rng.random() < CCB_RATE[a]),
                             "revenue": float(rng.integers(1, 5))}, slot["id"])
                           for a, slot in zip(chosen, CCB_SLOTS)]
            else:
                rewards = [({"click": float(rng.random() < sum(SLATE_PART[a] for a in chosen)),
                             "revenue": float(rng.integers(1, 5))}, None)]
            for values, slot in rewards:
                reply = client.post(f"/v1/loops/own/events/e{i}/rewards", headers=auth,
                                    json={"rewards": values, **({"slot": slot} if slot else {})})
                assert reply.status_code == 202, reply.json
            assert trainer.step() == 1
    finally:
        trainer.close()


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_a_replay_of_the_loops_own_config_on_its_log_matches_the_logger(app, client, db, kind):
    _log_learned(client, app, db, kind, 40, seed=8)
    result = _run(client, db, "own", {"window": _window(), "candidates": [
        {"kind": "vw", "vw_args": "", "name": "own"},
        {"kind": "vw", "vw_args": "", "name": "greedy",
         "exploration": {"algorithm": "epsilon", "epsilon": 0.1}}]})

    # The replay learns what the trainer learned, in the same order, with the same labels, so
    # at every decision it holds the model that served it and predicts the logged PMFs: every
    # weight is 1 and the estimates are the logger's. In fact bit for bit (a snapshot saved and
    # loaded keeps VW's state; the same float32 PMF reaches the log and the replay): 0.0 apart
    # on both kinds and backends. The 1e-9 tolerance only allows for rounding should the two
    # ever sum in another order; a different model is far off (the greedier replay below:
    # weights up to ~1.5 and ~2.9).
    logging, own = _cells(result["candidates"]["logging"]), _cells(result["candidates"]["own"])
    assert own.keys() == logging.keys()
    for key, cell in own.items():
        assert cell["estimate"] == pytest.approx(logging[key]["estimate"], abs=1e-9), key
        assert cell["diagnostics"]["weight_max"] == pytest.approx(1.0, abs=1e-9), key
    greedy = _cells(result["candidates"]["greedy"])
    assert max(abs(cell["diagnostics"]["weight_max"] - 1.0) for cell in greedy.values()) > 0.1


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_replay_results_do_not_depend_on_the_page_size(app, client, db, kind):
    auth = _make_loop(app, "loop", {"kind": kind, "objectives": OBJECTIVES})
    (_log_ccb if kind == "ccb" else _log_slates)(client, "loop", auth, 30, seed=9)
    reply = client.post(EVALUATIONS.format("loop"), headers=ADMIN, json={
        "window": _window(), "candidates": [{"kind": "uniform"}, *REPLAYS],
        "bootstrap": 20, "seed": 1})
    assert reply.status_code == 202, reply.json
    with db.session() as session:
        loop = session.get(Loop, session.get(Job, reply.json["id"]).loop_id)
        config = LoopConfig.model_validate(loop.config)
    paged = run_evaluation(db, loop.id, config, reply.json["spec"], page_size=7)
    whole = run_evaluation(db, loop.id, config, reply.json["spec"], page_size=1000)
    assert paged["candidates"].keys() == whole["candidates"].keys()
    for name, by_objective in whole["candidates"].items():
        cells, paged_cells = _cells(by_objective), _cells(paged["candidates"][name])
        assert cells.keys() == paged_cells.keys()
        for key, cell in cells.items():
            assert paged_cells[key]["estimate"] == pytest.approx(
                cell["estimate"], abs=1e-12), (name, key)
            # Bootstrap quantiles come from streamed per-resample sums, which agree across
            # chunkings to rounding only (1e-8 here, for the logging candidate too).
            for method, interval in cell["intervals"].items():
                assert paged_cells[key]["intervals"][method] == pytest.approx(interval, abs=1e-6), (
                    name, key, method)


@pytest.mark.parametrize("kind, vw_args, complaint", [
    ("ccb", "--oaa 3", "does not match output prediction type"),
    ("slates", "--no_such_flag", "unrecognised option '--no_such_flag'"),
    ("ccb", "--cb_type dr", "'dr' is not a valid choice for option --cb_type"),
])
def test_vw_args_vw_refuses_are_a_422_naming_its_complaint(app, client, db, kind, vw_args,
                                                           complaint):
    _make_loop(app, "loop", {"kind": kind, "objectives": OBJECTIVES})
    reply = client.post(EVALUATIONS.format("loop"), headers=ADMIN, json={
        "window": _window(), "candidates": [{"kind": "uniform"}, {"kind": "vw", "vw_args": ""},
                                            {"kind": "vw", "vw_args": vw_args, "name": "bad"}]})
    assert reply.status_code == 422, reply.json
    error = reply.json["error"]
    assert error["code"] == "InvalidVwArgs" and error["target"] == "candidates[3].vw_args"
    assert complaint in error["message"] and "VW refused" in error["message"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_bandits_evaluate_prints_a_ccb_table(app, client, db, settings):
    from click.testing import CliRunner

    from bandits.cli import main

    auth = _make_loop(app, "hero", {"kind": "ccb", "objectives": OBJECTIVES})
    _log_ccb(client, "hero", auth, 12, seed=6)
    window = _window()
    result = CliRunner(env={"BANDITS_DATABASE_URL": settings.database_url}).invoke(main, [
        "evaluate", "hero", "--since", window["since"], "--until", window["until"],
        "--candidate", "uniform", "--objective", "click"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("12 decisions; logged mean: click")
    rows = {tuple(line.split()[:4]) for line in lines[2:]}  # "click[slot 2]" is two words
    assert ("uniform", "click[slot", "2]", "snips") in rows
    assert ("logging", "click[total]", "rips") in {row[:3] for row in rows}


def test_model_slot_pmfs_are_conditional_on_the_logged_earlier_slots():
    """VW's ccb PMF for slot k leaves out the actions the logged earlier slots took (and the
    slot's exclusions); the slates PMF stays within the slot's own actions."""
    from datetime import datetime, timezone

    from bandits.jobs import slots
    from bandits.loop_config import LoopConfig
    from bandits.store.jobs import LoggedEvent

    def event(kind, actions, logged):
        return LoggedEvent("e", datetime.now(timezone.utc), {"user": {"segment": "s1"}}, actions,
                           [], None, logged[0]["chosen"], 1.0, [], [], logged, {})

    ids = [a["id"] for a in POOL]
    logged = [{**slot, "chosen": chosen, "probability": 0.2, "pmf": [0.2] * 5}
              for slot, chosen in zip(CCB_SLOTS, ["a3", "a1", "a2"])]
    ccb = event("ccb", POOL, logged)
    model = slots.SlotSnapshot("ccb", LoopConfig.model_validate({"kind": "ccb"}), 0, None)
    try:
        pmfs = model.pmfs(ccb, slots.allowed_positions("ccb", ccb))
    finally:
        model.close()
    assert [sum(pmf) for pmf in pmfs] == [pytest.approx(1.0)] * 3
    assert pmfs[1][ids.index("a3")] == 0.0 and pmfs[1][ids.index("a4")] == 0.0  # taken, excluded
    assert all(pmfs[2][ids.index(a)] == 0.0 for a in ("a3", "a1", "a0"))
    assert pmfs[2][ids.index("a2")] > 0.0

    slate_ids = [a["id"] for a in SLATE_ACTIONS]
    logged = [{**slot, "chosen": chosen, "probability": 0.5, "pmf": [0.2] * 5}
              for slot, chosen in zip(SLATES_SLOTS, ["t1", "b0"])]
    page = event("slates", SLATE_ACTIONS, logged)
    model = slots.SlotSnapshot("slates", LoopConfig.model_validate({"kind": "slates"}), 0, None)
    try:
        top, bottom = model.pmfs(page, slots.allowed_positions("slates", page))
    finally:
        model.close()
    assert top[slate_ids.index("t2")] == 0.0 and sum(top[:3]) == pytest.approx(1.0)
    assert sum(bottom[3:]) == pytest.approx(1.0) and sum(bottom[:3]) == 0.0
