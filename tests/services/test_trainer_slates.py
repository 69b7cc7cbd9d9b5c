"""The trainer on multi-slot loops (`ccb`, `slates`), real VW, SQLite and Postgres: per-slot
outcomes joined to their slot, defaults for slots without one, early completion per slot, one
reward per slate, and every decision learned exactly once."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from bandits.learning.vw import Learner
from bandits.services import trainer as trainer_module
from bandits.services.loops import LoopService
from bandits.services.trainer import LoopTrainer
from bandits.store.models import Decision, Loop, Model
from tests.conftest import ADMIN_KEY

EPSILON = 0.2
POOL = [{"id": name, "features": {"offer": {"name": name}}} for name in "ABCD"]
CCB_SLOTS = [{"id": "hero", "baseline": "C"}, {"id": "side", "baseline": "D"}]
# ccb: clicks in `hero` come only for A, in `side` only for B.
PAYS = {"hero": "A", "side": "B"}
# Interleaved, so that a slot's own actions are not a run of the pool: t0 b0 t1 b1 t2 b2.
SLATE_ACTIONS = [{"id": f"{slot[0]}{i}", "slot": slot, "features": {"offer": {"name": f"{slot[0]}{i}"}}}
                 for i in range(3) for slot in ("top", "bottom")]
SLATES_SLOTS = [{"id": "top", "baseline": "t0"}, {"id": "bottom", "baseline": "b2"}]


def _loop(app, name: str, kind: str, **config) -> tuple[dict[str, str], int]:
    config = {"kind": kind, "objectives": [{"name": "click", "aggregation": "earliest"}],
              "exploration": {"algorithm": "epsilon", "epsilon": EPSILON}, **config}
    key = LoopService(app.extensions["bandits"].db).create(name, config)["key"]
    with app.extensions["bandits"].db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == name))
    return {"Authorization": f"Bearer {key}"}, loop_id


def _choose(client, loop: str, headers, event_id: str, body: dict) -> dict:
    reply = client.post(f"/v1/loops/{loop}/choose", json={"event_id": event_id, **body}, headers=headers)
    assert reply.status_code == 201, reply.json
    return reply.json


def _reward(client, loop: str, headers, event_id: str, rewards: dict, slot: str | None = None) -> None:
    body = {"rewards": rewards, **({"slot": slot} if slot is not None else {})}
    reply = client.post(f"/v1/loops/{loop}/events/{event_id}/rewards", json=body, headers=headers)
    assert reply.status_code == 202, reply.json
    assert reply.json["late"] is False


def _ccb_body(**overrides) -> dict:
    return {"context": {"user": {"u": "x"}}, "actions": POOL, "slots": CCB_SLOTS, **overrides}


def _slates_body() -> dict:
    return {"context": {"user": {"u": "x"}}, "actions": SLATE_ACTIONS, "slots": SLATES_SLOTS}


def _close_windows(client, loop: str) -> None:
    """Every decision's reward window closes now: reward_wait 0 (not a model change)."""
    reply = client.patch(f"/v1/loops/{loop}", json={"reward_wait": 0},
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert reply.status_code == 200 and reply.json["model_reset"] is False, reply.json


def _learned(db, loop_id: int) -> dict[str, int | None]:
    """event id → the model version that learned it (None: not learned)."""
    with db.session() as session:
        return dict(session.execute(
            select(Decision.event_id, Decision.learned_version).where(Decision.loop_id == loop_id)).all())


def _ranking(slot: dict) -> list[tuple[str, float]]:
    return [(r["id"], r["probability"]) for r in slot["ranking"]]


@pytest.fixture
def trainers(db):
    made: list[LoopTrainer] = []

    def make(loop_id: int, name: str) -> LoopTrainer:
        made.append(LoopTrainer(db, loop_id, name))
        return made[-1]

    yield make
    for trainer in made:
        trainer.close()


# -- ccb: what is learned per slot ---------------------------------------------------------


def test_ccb_learns_which_action_pays_in_which_slot(app, client, db, trainers):
    headers, loop_id = _loop(app, "hero", "ccb")
    for i in range(300):
        reply = _choose(client, "hero", headers, f"e{i}", _ccb_body())
        for slot in reply["slots"]:
            _reward(client, "hero", headers, f"e{i}", {"click": int(slot["action"] == PAYS[slot["id"]])},
                    slot["id"])
    trainer = trainers(loop_id, "hero")
    assert trainer.step() == 300  # every slot has its (earliest) objective: complete early
    assert trainer.step() == 0  # exactly once
    assert set(_learned(db, loop_id).values()) == {1}

    greedy_hero = 1 - EPSILON + EPSILON / 4
    greedy_side = 1 - EPSILON + EPSILON / 3  # three actions left once hero took one
    hero_took_a = 0
    for i in range(30):
        reply = _choose(client, "hero", headers, f"probe-{i}", _ccb_body())
        assert reply["model_version"] == 1
        hero, side = reply["slots"]
        assert _ranking(hero)[0] == ("A", pytest.approx(greedy_hero, abs=1e-4)), hero
        if hero["action"] == "A":
            hero_took_a += 1
            assert _ranking(side)[0] == ("B", pytest.approx(greedy_side, abs=1e-4)), side
    assert hero_took_a >= 15

    # Exclusions still hold under the trained model: hero without A.
    reply = _choose(client, "hero", headers, "probe-excluded", _ccb_body(slots=[
        {"id": "hero", "baseline": "C", "excluded": ["A"]}, {"id": "side", "baseline": "D"}]))
    hero = dict(_ranking(reply["slots"][0]))
    assert hero["A"] == 0.0
    assert reply["slots"][0]["action"] != "A"


def test_a_slot_without_an_outcome_is_learned_with_the_objectives_default(app, client, db, trainers):
    # Clicks default to 1: a slot is reported (click 0) only when it did NOT show its paying
    # action, so the paying action is learned from the default alone.
    headers, loop_id = _loop(app, "hero", "ccb", reward_wait="1h",
                             objectives=[{"name": "click", "aggregation": "earliest", "default": 1.0}])
    trainer = trainers(loop_id, "hero")
    for i in range(300):
        reply = _choose(client, "hero", headers, f"e{i}", _ccb_body())
        for slot in reply["slots"]:
            if slot["action"] != PAYS[slot["id"]]:
                _reward(client, "hero", headers, f"e{i}", {"click": 0}, slot["id"])
    early = trainer.step()  # only the decisions whose both slots were reported
    assert 0 < early < 300
    _close_windows(client, "hero")
    assert trainer.step() == 300 - early  # the others once their window closed
    assert trainer.step() == 0

    for i in range(20):
        hero, side = _choose(client, "hero", headers, f"probe-{i}", _ccb_body())["slots"]
        assert _ranking(hero)[0][0] == "A", hero
        if hero["action"] == "A":
            assert _ranking(side)[0][0] == "B", side


class _SpyLearner(Learner):
    """The real learner, noting every multi-slot example it learns."""

    texts: list[str] = []

    def learn_text(self, text: str) -> None:
        type(self).texts.append(text)
        super().learn_text(text)


@pytest.fixture
def spy(monkeypatch) -> list[str]:
    texts: list[str] = []
    monkeypatch.setattr(_SpyLearner, "texts", texts)
    monkeypatch.setattr(trainer_module, "Learner", _SpyLearner)
    return texts


_CCB_SLOT = re.compile(r"^ccb slot (\d+):(\S+):(\S+)(?: [\d,]+)? \|_slot id=(\S+)")


def test_each_ccb_slot_is_labelled_with_its_own_outcomes_weights_and_defaults(
    app, client, db, trainers, spy
):
    objectives = [{"name": "click", "aggregation": "earliest", "default": 0.25},
                  {"name": "revenue", "weight": 0.5, "default": 2.0}]
    headers, loop_id = _loop(app, "hero", "ccb", objectives=objectives, reward_wait="1h")
    slots = [{"id": "hero", "baseline": "A"}, {"id": "side", "baseline": "B", "excluded": ["D"]},
             {"id": "foot", "baseline": "C"}]
    rewards = {  # event → slot → the reward calls for it
        "e0": {"hero": [{"click": 1}], "side": [{"revenue": 4}]},
        "e1": {},
        "e2": {"hero": [{"revenue": 1}, {"revenue": 1}, {"click": 0}, {"click": 1}],
               "foot": [{"click": 1, "revenue": 0}]},
    }
    expected = {  # click (earliest, default 0.25) + 0.5 × revenue (sum, default 2)
        "e0": {"hero": 1 + 1.0, "side": 0.25 + 2.0, "foot": 0.25 + 1.0},
        "e1": {"hero": 1.25, "side": 1.25, "foot": 1.25},
        "e2": {"hero": 0 + 1.0, "side": 1.25, "foot": 1 + 0.0},
    }
    replies = {}
    for event_id, by_slot in rewards.items():
        replies[event_id] = _choose(client, "hero", headers, event_id, _ccb_body(slots=slots))
        for slot_id, calls in by_slot.items():
            for call in calls:
                _reward(client, "hero", headers, event_id, call, slot_id)
    trainer = trainers(loop_id, "hero")
    assert trainer.step() == 0  # revenue sums: nothing completes early
    _close_windows(client, "hero")
    assert trainer.step() == 3

    assert len(spy) == 3  # in decision order
    pool = [a["id"] for a in POOL]
    for event_id, text in zip(rewards, spy):
        lines = text.splitlines()
        assert lines[0].startswith("ccb shared |user")
        assert sum(line.startswith("ccb action ") for line in lines) == len(POOL)
        labels = {}
        for line in lines:
            if line.startswith("ccb slot"):
                match = _CCB_SLOT.match(line)
                assert match, line
                chosen, cost, probability, slot_id = match.groups()
                labels[slot_id] = (pool[int(chosen)], float(cost), float(probability))
        assert " 0,1,2 |_slot id=side" in text  # side's exclusion (D) is learned as well
        for slot in replies[event_id]["slots"]:
            action, cost, probability = labels[slot["id"]]
            assert action == slot["action"]
            assert probability == pytest.approx(slot["probability"])
            assert cost == pytest.approx(-expected[event_id][slot["id"]]), (event_id, slot["id"])


# -- ccb: early completion -----------------------------------------------------------------


def test_ccb_completes_early_once_every_slot_has_every_objective(app, client, db, trainers):
    objectives = [{"name": "click", "aggregation": "earliest"},
                  {"name": "revenue", "aggregation": "earliest"}]
    headers, loop_id = _loop(app, "hero", "ccb", objectives=objectives, reward_wait="1h")
    for event_id in ("full", "partial", "repeated", "none", "other-slot"):
        _choose(client, "hero", headers, event_id, _ccb_body())
    _reward(client, "hero", headers, "full", {"click": 1, "revenue": 2}, "hero")
    _reward(client, "hero", headers, "full", {"click": 0}, "side")
    _reward(client, "hero", headers, "full", {"revenue": 0}, "side")
    _reward(client, "hero", headers, "partial", {"click": 1, "revenue": 2}, "hero")
    _reward(client, "hero", headers, "partial", {"click": 1}, "side")
    for _ in range(2):  # four outcomes, all in one slot: still not every slot
        _reward(client, "hero", headers, "repeated", {"click": 1, "revenue": 2}, "hero")
    _reward(client, "hero", headers, "other-slot", {"click": 1}, "hero")
    _reward(client, "hero", headers, "other-slot", {"revenue": 1}, "side")

    trainer = trainers(loop_id, "hero")
    assert trainer.step() == 1
    assert _learned(db, loop_id) == {"full": 1, "partial": None, "repeated": None, "none": None,
                                      "other-slot": None}
    assert trainer.step() == 0

    _reward(client, "hero", headers, "partial", {"revenue": 0}, "side")
    assert trainer.step() == 1
    assert _learned(db, loop_id)["partial"] == 2
    assert trainer.step() == 0
    assert [v for v in _learned(db, loop_id).values() if v is None] == [None] * 3


def test_ccb_decisions_without_every_outcome_wait_for_the_reward_window(app, client, db, trainers):
    headers, loop_id = _loop(app, "hero", "ccb", reward_wait=2)
    for event_id in ("full", "hero-only", "none"):
        _choose(client, "hero", headers, event_id, _ccb_body())
    for slot in ("hero", "side"):
        _reward(client, "hero", headers, "full", {"click": 1}, slot)
    _reward(client, "hero", headers, "hero-only", {"click": 1}, "hero")
    trainer = trainers(loop_id, "hero")
    assert trainer.step() == 1
    assert _learned(db, loop_id) == {"full": 1, "hero-only": None, "none": None}
    time.sleep(2.1)
    assert trainer.step() == 2
    assert _learned(db, loop_id) == {"full": 1, "hero-only": 2, "none": 2}
    assert trainer.step() == 0


def test_ccb_with_an_objective_that_is_not_earliest_never_completes_early(app, client, db, trainers):
    headers, loop_id = _loop(app, "hero", "ccb", reward_wait=2, objectives=[{"name": "click"}])
    _choose(client, "hero", headers, "full", _ccb_body())
    for slot in ("hero", "side"):
        _reward(client, "hero", headers, "full", {"click": 1}, slot)
    trainer = trainers(loop_id, "hero")
    assert trainer.step() == 0  # a later click could still add to the sum
    time.sleep(2.1)
    assert trainer.step() == 1


def test_a_deferred_ccb_decision_is_learned_only_once_activated(app, client, db, trainers):
    headers, loop_id = _loop(app, "hero", "ccb", reward_wait=0.3)
    for event_id in ("never", "later"):
        _choose(client, "hero", headers, event_id, _ccb_body(defer=True))
        for slot in ("hero", "side"):
            _reward(client, "hero", headers, event_id, {"click": 1}, slot)
    trainer = trainers(loop_id, "hero")
    assert trainer.step() == 0  # complete, but not activated
    assert client.post("/v1/loops/hero/events/later/activate", headers=headers).status_code == 202
    assert trainer.step() == 1  # activated and complete
    time.sleep(0.4)
    assert trainer.step() == 0
    assert _learned(db, loop_id) == {"never": None, "later": 1}


# -- slates --------------------------------------------------------------------------------


def test_slates_learns_from_the_one_reward_for_the_whole_slate(app, client, db, trainers):
    # One reward per slate: click when top shows t1, revenue when bottom shows b0 (weights 1).
    objectives = [{"name": "click", "aggregation": "earliest"},
                  {"name": "revenue", "aggregation": "earliest"}]
    headers, loop_id = _loop(app, "page", "slates", objectives=objectives)
    for i in range(300):
        top, bottom = _choose(client, "page", headers, f"e{i}", _slates_body())["slots"]
        _reward(client, "page", headers, f"e{i}",
                {"click": int(top["action"] == "t1"), "revenue": int(bottom["action"] == "b0")})
    trainer = trainers(loop_id, "page")
    assert trainer.step() == 300  # each slate has every (earliest) objective: complete early
    assert trainer.step() == 0
    assert set(_learned(db, loop_id).values()) == {1}

    greedy = 1 - EPSILON + EPSILON / 3
    for i in range(10):
        reply = _choose(client, "page", headers, f"probe-{i}", _slates_body())
        assert reply["model_version"] == 1
        top, bottom = reply["slots"]
        assert _ranking(top)[0] == ("t1", pytest.approx(greedy, abs=1e-4)), top
        assert _ranking(bottom)[0] == ("b0", pytest.approx(greedy, abs=1e-4)), bottom
        assert {r["id"] for r in top["ranking"]} == {"t0", "t1", "t2"}


def test_a_slate_completes_early_only_with_every_objective(app, client, db, trainers):
    objectives = [{"name": "click", "aggregation": "earliest"},
                  {"name": "revenue", "aggregation": "earliest"}]
    headers, loop_id = _loop(app, "page", "slates", objectives=objectives, reward_wait="1h")
    for event_id in ("full", "click-only"):
        _choose(client, "page", headers, event_id, _slates_body())
    _reward(client, "page", headers, "full", {"click": 1})
    _reward(client, "page", headers, "full", {"revenue": 3})
    _reward(client, "page", headers, "click-only", {"click": 1})
    trainer = trainers(loop_id, "page")
    assert trainer.step() == 1
    assert _learned(db, loop_id) == {"full": 1, "click-only": None}


_SLATES_SHARED = re.compile(r"^slates shared (\S+) ")
_SLATES_SLOT = re.compile(r"^slates slot (\d+):(\S+) .*\|_slot id=(\S+)")


def test_each_slate_is_labelled_with_its_scalar_reward_and_each_slots_pick(
    app, client, db, trainers, spy
):
    objectives = [{"name": "click", "default": 0.5}, {"name": "revenue", "weight": 0.1}]
    headers, loop_id = _loop(app, "page", "slates", objectives=objectives, reward_wait="1h")
    slots = [{"id": "top", "baseline": "t0", "excluded": ["t2"]}, {"id": "bottom", "baseline": "b2"}]
    body = {**_slates_body(), "slots": slots}
    replies = {event_id: _choose(client, "page", headers, event_id, body) for event_id in ("e0", "e1")}
    _reward(client, "page", headers, "e0", {"click": 1, "revenue": 20})
    _reward(client, "page", headers, "e0", {"click": 1})
    trainer = trainers(loop_id, "page")
    assert trainer.step() == 0  # click sums: nothing completes early
    _close_windows(client, "page")
    assert trainer.step() == 2

    expected = {"e0": 2 + 0.1 * 20, "e1": 0.5}  # click sums (default 0.5); revenue default 0
    own = {"top": ["t0", "t1"], "bottom": ["b0", "b1", "b2"]}  # as learned: t2 was excluded
    assert len(spy) == 2
    for event_id, text in zip(replies, spy):
        lines = text.splitlines()
        assert float(_SLATES_SHARED.match(lines[0]).group(1)) == pytest.approx(-expected[event_id])
        assert [line.split()[2] for line in lines if line.startswith("slates action")] == [
            "0", "0", "1", "1", "1"]
        picks = {}
        for line in lines:
            if line.startswith("slates slot"):
                index, probability, slot_id = _SLATES_SLOT.match(line).groups()
                picks[slot_id] = (own[slot_id][int(index)], float(probability))
        for slot in replies[event_id]["slots"]:
            assert picks[slot["id"]] == (slot["action"], pytest.approx(slot["probability"]))


# -- exactly once --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_every_decision_is_learned_exactly_once_across_steps_and_restarts(
    app, client, db, trainers, kind
):
    name = "hero" if kind == "ccb" else "page"
    headers, loop_id = _loop(app, name, kind)
    body = _ccb_body() if kind == "ccb" else _slates_body()

    def play(start: int, n: int) -> None:
        for i in range(start, start + n):
            reply = _choose(client, name, headers, f"e{i}", body)
            if kind == "ccb":
                for slot in reply["slots"]:
                    _reward(client, name, headers, f"e{i}", {"click": 1}, slot["id"])
            else:
                _reward(client, name, headers, f"e{i}", {"click": 1})

    play(0, 20)
    first = trainers(loop_id, name)
    assert first.step() == 20
    assert first.step() == 0
    first.close()
    play(20, 7)
    second = trainers(loop_id, name)  # a restarted trainer resumes from the snapshot
    assert second.step() == 7
    assert second.step() == 0
    assert second.version == 2 and second.total_learned == 27
    learned = _learned(db, loop_id)
    assert sorted(learned.values()) == [1] * 20 + [2] * 7
    with db.session() as session:
        models = session.execute(select(Model.version, Model.events_learned, Model.total_learned)
                                 .where(Model.loop_id == loop_id).order_by(Model.version)).all()
    assert [tuple(m) for m in models] == [(1, 20, 20), (2, 7, 27)]


def test_ccb_early_completion_counts_only_the_loops_current_objectives(app, client, db, trainers):
    objectives = [{"name": "click", "aggregation": "earliest"},
                  {"name": "revenue", "aggregation": "earliest"}]
    headers, loop_id = _loop(app, "hero", "ccb", objectives=objectives, reward_wait="1h")
    _choose(client, "hero", headers, "e", _ccb_body())
    _reward(client, "hero", headers, "e", {"click": 1, "revenue": 5}, "hero")
    trainer = trainers(loop_id, "hero")
    assert trainer.step() == 0  # side has nothing yet
    patched = client.patch("/v1/loops/hero", json={"objectives": [objectives[0]]},
                           headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert patched.status_code == 200 and patched.json["model_reset"] is False

    assert trainer.step() == 0  # still: side has no click
    assert _learned(db, loop_id) == {"e": None}
    # ... so that side's click, when it comes, is on time and learned.
    _reward(client, "hero", headers, "e", {"click": 1}, "side")
    assert trainer.step() == 1
