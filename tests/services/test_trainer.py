"""The trainer on real VW, SQLite and Postgres: what it learns, when, and exactly once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import delete, func, select, update

from bandits.services.loops import LoopService
from bandits.services import trainer as trainer_module
from bandits.services.trainer import LoopTrainer, TrainerRunner
from bandits.store.locks import LoopLock
from bandits.store.models import Decision, Loop, Model
from tests.conftest import ADMIN
from tests.helpers import BAD, GOOD, TWO_ACTIONS as ACTIONS, play



def _loop(app, name="learn", **config) -> tuple[str, int]:
    config = {"objectives": [{"name": "click", "aggregation": "earliest"}],
              "exploration": {"algorithm": "epsilon", "epsilon": 0.2}, **config}
    key = LoopService(app.extensions["bandits"].db).create(name, config)["key"]
    with app.extensions["bandits"].db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == name))
    return key, loop_id


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _learned(db, loop_id) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Decision).where(
            Decision.loop_id == loop_id, Decision.learned_at.is_not(None)))


def test_the_trainer_learns_and_the_api_serves_the_new_model(app, client, db):
    key, loop_id = _loop(app)
    play(client, _bearer(key), 150)
    trainer = LoopTrainer(db, loop_id, "learn")
    assert trainer.step() == 150
    assert trainer.step() == 0  # nothing is learned twice
    assert _learned(db, loop_id) == 150

    served = play(client, _bearer(key), 40, start=1000, reward=False)
    assert {reply["model_version"] for reply in served} == {1}
    good = [next(r["probability"] for r in reply["ranking"] if r["id"] == GOOD) for reply in served]
    assert min(good) == pytest.approx(0.9)  # epsilon 0.2 over two actions: the greedy one gets 0.9
    trainer.close()


class _Recording(LoopTrainer):
    """A trainer that notes the events it learns, in order, and can fail at the n-th one."""

    fail_at: int | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []

    def _learn(self, row) -> None:
        if self.fail_at is not None and len(self.seen) == self.fail_at:
            raise RuntimeError("the trainer fell over")
        self.seen.append(row.event_id)
        super()._learn(row)


@pytest.fixture
def chunked(app, client, db, monkeypatch) -> tuple[_Recording, int]:
    """150 rewarded decisions and a recording trainer that takes them in chunks of 7, 20, 20..."""
    monkeypatch.setattr(trainer_module, "FIRST_CHUNK", 7)
    monkeypatch.setattr(trainer_module, "CHUNK", 20)
    key, loop_id = _loop(app)
    play(client, _bearer(key), 150)
    trainer = _Recording(db, loop_id, "learn")
    yield trainer, loop_id
    trainer.close()


def test_a_step_in_many_chunks_learns_every_event_once_oldest_first(db, chunked):
    trainer, loop_id = chunked
    assert trainer.step() == 150
    with db.session() as session:
        order = list(session.scalars(
            select(Decision.event_id).where(Decision.loop_id == loop_id)
            .order_by(Decision.ts, Decision.event_id)))
        versions = set(session.scalars(select(Decision.learned_version).where(Decision.loop_id == loop_id)))
    assert trainer.seen == order
    assert versions == {1}


def test_a_step_that_fails_midway_marks_nothing_and_the_next_learns_everything(db, chunked):
    trainer, loop_id = chunked
    trainer.fail_at = 100  # after several chunks were read and marked (Postgres marks as it goes)
    with pytest.raises(RuntimeError, match="fell over"):
        trainer.step()
    assert _learned(db, loop_id) == 0
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Model).where(Model.loop_id == loop_id)) == 0
    trainer.fail_at = None
    trainer.seen.clear()
    assert trainer.step() == 150  # from the empty model again: the failed step's learning is gone
    assert trainer.version == 1 and trainer.total_learned == 150
    assert len(trainer.seen) == len(set(trainer.seen)) == 150
    # The same model as a trainer that never failed learns from the same events.
    with db.session() as session:
        after_failure = session.scalar(select(Model.blob).where(Model.loop_id == loop_id))
        session.execute(update(Decision).where(Decision.loop_id == loop_id)
                        .values(learned_at=None, learned_version=None))
        session.execute(delete(Model).where(Model.loop_id == loop_id))
    fresh = LoopTrainer(db, loop_id, "learn")
    assert fresh.step() == 150
    with db.session() as session:
        assert session.scalar(select(Model.blob).where(Model.loop_id == loop_id)) == after_failure
    fresh.close()


def test_each_snapshot_records_what_it_learned(app, client, db):
    key, loop_id = _loop(app)
    trainer = LoopTrainer(db, loop_id, "learn")
    for round_ in range(3):
        play(client, _bearer(key), 10, start=100 * round_)
        assert trainer.step() == 10
    with db.session() as session:
        models = session.scalars(select(Model).where(Model.loop_id == loop_id).order_by(Model.version)).all()
        by_version = dict(session.execute(
            select(Decision.learned_version, func.count()).where(Decision.loop_id == loop_id)
            .group_by(Decision.learned_version)).all())
    assert [m.version for m in models] == [1, 2, 3]
    assert [m.total_learned for m in models] == [10, 20, 30]
    assert by_version == {1: 10, 2: 10, 3: 10}
    trainer.close()


def test_a_restarted_trainer_resumes_from_the_last_snapshot(app, client, db):
    key, loop_id = _loop(app)
    play(client, _bearer(key), 20)
    first = LoopTrainer(db, loop_id, "learn")
    assert first.step() == 20
    first.close()
    play(client, _bearer(key), 5, start=500)
    second = LoopTrainer(db, loop_id, "learn")
    assert second.step() == 5
    assert second.version == 2 and second.total_learned == 25
    second.close()


def test_the_reward_window_decides_what_is_learned(app, client, db):
    key, loop_id = _loop(app, objectives=[{"name": "click"}], reward_wait=1)
    auth = {"Authorization": f"Bearer {key}"}
    play(client, _bearer(key), 3, reward=False)
    on_time = client.post("/v1/loops/learn/events/e0/rewards", json={"rewards": {"click": 1}}, headers=auth)
    assert on_time.json["late"] is False
    trainer = LoopTrainer(db, loop_id, "learn")
    assert trainer.step() == 0  # the window (sum aggregation) is still open
    time.sleep(1.1)
    late = client.post("/v1/loops/learn/events/e1/rewards", json={"rewards": {"click": 1}}, headers=auth)
    assert late.status_code == 202 and late.json["late"] is True
    assert trainer.step() == 3
    event = client.get("/v1/loops/learn/events/e1", headers=auth).json
    assert [o["late"] for o in event["outcomes"]] == [True]
    trainer.close()


def test_deferred_decisions_are_learned_only_once_activated(app, client, db):
    key, loop_id = _loop(app, objectives=[{"name": "click"}], reward_wait=0.2)
    auth = {"Authorization": f"Bearer {key}"}
    for event_id in ("never", "later"):
        assert client.post("/v1/loops/learn/choose", json={
            "event_id": event_id, "actions": ACTIONS, "defer": True}, headers=auth).status_code == 201
    time.sleep(0.3)
    trainer = LoopTrainer(db, loop_id, "learn")
    assert trainer.step() == 0
    assert client.post("/v1/loops/learn/events/later/activate", headers=auth).status_code == 202
    assert trainer.step() == 0  # its window starts at activation
    time.sleep(0.3)
    assert trainer.step() == 1  # learned with the default reward
    with db.session() as session:
        never = session.get(Decision, (loop_id, "never"))
        assert never.learned_at is None
    trainer.close()


def test_logging_only_never_learns(app, client, db):
    key, loop_id = _loop(app, learning_mode="logging_only")
    play(client, _bearer(key), 10)
    trainer = LoopTrainer(db, loop_id, "learn")
    assert trainer.step() == 0
    assert _learned(db, loop_id) == 0
    trainer.close()


def test_a_model_reset_starts_a_new_lineage(app, client, db):
    key, loop_id = _loop(app)
    play(client, _bearer(key), 30)
    trainer = LoopTrainer(db, loop_id, "learn")
    assert trainer.step() == 30
    reply = client.patch("/v1/loops/learn", json={"exploration": {"algorithm": "epsilon", "epsilon": 0.5}},
                         headers=ADMIN)
    assert reply.json["model_reset"] is True
    # The api no longer serves the old lineage's snapshot.
    served = play(client, _bearer(key), 3, start=700, reward=False)
    assert {r["model_version"] for r in served} == {0}
    play(client, _bearer(key), 5, start=800)
    assert trainer.step() == 5  # the three without rewards wait for their window
    assert trainer.version == 2 and trainer.total_learned == 5  # a fresh model, numbering goes on
    served = play(client, _bearer(key), 1, start=900, reward=False)
    assert served[0]["model_version"] == 2
    trainer.close()


def test_one_trainer_per_loop(app, db):
    _, loop_id = _loop(app)
    first, second = LoopLock(db, loop_id), LoopLock(db, loop_id)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_the_runner_trains_every_loop_it_holds(app, client, db):
    key_a, loop_a = _loop(app, "loop-a")
    key_b, loop_b = _loop(app, "loop-b")
    play(client, _bearer(key_a), 5, loop="loop-a")
    play(client, _bearer(key_b), 7, loop="loop-b")
    blocked = LoopLock(db, loop_b)
    assert blocked.acquire()  # as if another host trained loop-b
    runner = TrainerRunner(db)
    assert runner.cycle() == 5
    blocked.release()
    assert runner.cycle() == 7
    runner.close()


def test_apprentice_serves_the_baseline_learns_and_graduates_by_itself(app, client, db):
    key, loop_id = _loop(app, learning_mode="apprentice", apprentice_agreement=0.9,
                         apprentice_events=50)
    auth = {"Authorization": f"Bearer {key}"}
    trainer = LoopTrainer(db, loop_id, "learn")
    for i in range(120):
        mode = client.get("/v1/loops/learn", headers=ADMIN).json["config"]["learning_mode"]
        reply = client.post("/v1/loops/learn/choose", json={
            "event_id": f"a{i}", "actions": ACTIONS, "baseline": GOOD}, headers=auth)
        if mode == "apprentice":  # the baseline, with certainty
            assert reply.json["action"] == GOOD and reply.json["probability"] == 1.0
        client.post(f"/v1/loops/learn/events/a{i}/rewards", json={"rewards": {"click": 1}}, headers=auth)
        if i % 20 == 19:
            trainer.step()
    loop = client.get("/v1/loops/learn", headers=ADMIN).json
    assert loop["config"]["learning_mode"] == "online"  # switched by the trainer
    with db.session() as session:
        agreements = session.scalars(select(Model.apprentice_agreement).where(Model.loop_id == loop_id)
                                     .order_by(Model.version)).all()
    reported = [a for a in agreements if a is not None]
    assert reported and max(reported) >= 0.9  # the snapshot that triggered the switch
    # Online now: the model, warm from the baseline's rewards, prefers the baseline's action.
    reply = client.post("/v1/loops/learn/choose", json={"event_id": "after", "actions": ACTIONS}, headers=auth)
    assert next(r["probability"] for r in reply.json["ranking"] if r["id"] == GOOD) > 0.5
    trainer.close()


def test_apprentice_does_not_graduate_while_the_model_disagrees(app, client, db):
    key, loop_id = _loop(app, learning_mode="apprentice", apprentice_events=20)
    auth = {"Authorization": f"Bearer {key}"}
    trainer = LoopTrainer(db, loop_id, "learn")
    for i in range(60):
        # The baseline alternates, so no model can agree with it 90 % of the time.
        baseline = GOOD if i % 2 else BAD
        client.post("/v1/loops/learn/choose", json={
            "event_id": f"d{i}", "actions": ACTIONS, "baseline": baseline}, headers=auth)
        client.post(f"/v1/loops/learn/events/d{i}/rewards", json={"rewards": {"click": 0}}, headers=auth)
    trainer.step()
    assert client.get("/v1/loops/learn", headers=ADMIN).json["config"]["learning_mode"] == "apprentice"
    assert trainer.agreement() < 0.9
    trainer.close()


def test_a_step_during_which_a_new_lineage_starts_is_dropped(app, client, db, monkeypatch):
    """A reset (or a rebuild by an applied tuning) while a step learns: the step belongs to the old
    lineage, so it publishes nothing and marks nothing; the next step learns everything anew."""
    from bandits.services.models import ModelService

    monkeypatch.setattr(trainer_module, "FIRST_CHUNK", 7)
    monkeypatch.setattr(trainer_module, "CHUNK", 20)
    key, loop_id = _loop(app)
    play(client, _bearer(key), 60)

    class Resetting(_Recording):
        def _learn(self, row) -> None:
            if len(self.seen) == 30:
                ModelService(db).reset("learn")
            super()._learn(row)

    trainer = Resetting(db, loop_id, "learn")
    assert trainer.step() == 0
    assert _learned(db, loop_id) == 0
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Model).where(Model.loop_id == loop_id)) == 0
    trainer.close()
    fresh = LoopTrainer(db, loop_id, "learn")
    assert fresh.step() == 60
    with db.session() as session:
        assert session.scalar(select(Model.lineage).where(Model.loop_id == loop_id)) == 2
    fresh.close()
