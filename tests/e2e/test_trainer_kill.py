"""Exactly-once learning: a `bandits train` process SIGKILLed at random moments, restarted each
time, while decisions and rewards keep arriving. At the end every learnable event is learned, each
exactly once, and the snapshot chain accounts for every one of them."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time

import pytest
from sqlalchemy import func, select

from bandits.api import create_app
from bandits.config import load_settings
from bandits.services.loops import LoopService
from bandits.store import migrate
from bandits.store.db import Database
from bandits.store.models import Decision, Loop, Model
from tests.conftest import _postgres_database
from tests.servers import BANDITS

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def database_url():
    databases = _postgres_database()
    url = next(databases)
    database = Database(load_settings(database_url=url))
    migrate.upgrade(database.engine)
    database.dispose()
    yield url
    databases.close()


def _produce(app, key: str, stop: threading.Event, made: list[int]) -> None:
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    actions = [{"id": f"a{i}", "features": {"offer": {"n": i}}} for i in range(5)]
    i = 0
    while not stop.is_set():
        event_id = f"e{i}"
        reply = client.post("/v1/loops/kill/choose", json={
            "event_id": event_id, "context": {"user": {"k": i % 7}}, "actions": actions}, headers=auth)
        assert reply.status_code == 201
        assert client.post(f"/v1/loops/kill/events/{event_id}/rewards",
                           json={"rewards": {"click": i % 2}}, headers=auth).status_code == 202
        i += 1
        made[0] = i


def _newest_version(db) -> int:
    with db.session() as session:
        return session.scalar(select(func.max(Model.version)).join(Loop, Loop.id == Model.loop_id)
                              .where(Loop.name == "kill")) or 0


def test_sigkilled_trainers_learn_every_event_exactly_once(database_url):
    settings = load_settings(database_url=database_url, cache_seconds=0.0)
    app = create_app(settings)
    db = app.extensions["bandits"].db
    key = LoopService(db).create("kill", {
        "objectives": [{"name": "click", "aggregation": "earliest"}], "model_publish_interval": 0.1,
    })["key"]
    env = {**os.environ, "BANDITS_DATABASE_URL": database_url}
    stop, made = threading.Event(), [0]
    producer = threading.Thread(target=_produce, args=(app, key, stop, made))
    producer.start()
    rng = random.Random(20261126)
    kills = 0
    try:
        for _ in range(6):
            before = _newest_version(db)
            trainer = subprocess.Popen([BANDITS, "train", "--loop", "kill"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Killed at a random moment once it has published: starting up takes seconds on a
            # busy machine, and a trainer killed before its first step would prove nothing.
            deadline = time.monotonic() + 60
            while _newest_version(db) == before:
                assert trainer.poll() is None, "the trainer stopped by itself"
                assert time.monotonic() < deadline, "the trainer published nothing in 60 s"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            trainer.send_signal(signal.SIGKILL)
            trainer.wait()
            kills += 1
    finally:
        stop.set()
        producer.join()
    # A last trainer, left to finish: every event has its reward, so every event is learnable.
    subprocess.run([BANDITS, "train", "--loop", "kill", "--once"], env=env, check=True, timeout=120)

    with db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == "kill"))
        decisions = session.scalar(select(func.count()).select_from(Decision).where(Decision.loop_id == loop_id))
        learned = session.scalar(select(func.count()).select_from(Decision).where(
            Decision.loop_id == loop_id, Decision.learned_at.is_not(None)))
        per_snapshot = session.scalar(select(func.sum(Model.events_learned)).where(Model.loop_id == loop_id))
        last = session.scalars(select(Model).where(Model.loop_id == loop_id)
                               .order_by(Model.version.desc()).limit(1)).one()
        by_version = dict(session.execute(
            select(Decision.learned_version, func.count()).where(Decision.loop_id == loop_id)
            .group_by(Decision.learned_version)).all())
        snapshots = dict(session.execute(
            select(Model.version, Model.events_learned).where(Model.loop_id == loop_id)).all())
    app.extensions["bandits"].close()

    assert kills == 6
    assert decisions == made[0] > 100
    assert learned == decisions  # none skipped
    assert per_snapshot == learned  # none learned twice: each mark belongs to one snapshot
    assert last.total_learned == learned  # the resumed chain of snapshots saw every event once
    assert by_version == snapshots  # every snapshot learned exactly the events marked with it
    assert last.version > 6  # the trainers really published between the kills
