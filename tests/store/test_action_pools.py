"""Action pools in the decision log: each list of actions is stored once per loop, decisions name
it, and every reader gets the actions back as they were offered (SQLite and Postgres)."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from sqlalchemy import func, select

from bandits.store import decisions as store
from bandits.store.db import utcnow
from bandits.store.decisions import DecisionRow, DecisionWriter, logged_actions_of
from bandits.store.jobs import window_pages, window_text_pages
from bandits.store.models import ActionPool, Decision, Loop
from bandits.store.training import learn_rows
from tests.helpers import actions

POOL = actions(3)
POOL_JSON = orjson.dumps(POOL)
DIGEST = "0" * 31 + "1"


def _loop(db, name: str) -> int:
    with db.session() as session:
        loop = Loop(name=name, kind="cb", config={}, config_version=1, created_at=utcnow(),
                    updated_at=utcnow())
        session.add(loop)
        session.flush()
        return loop.id


def _row(loop_id: int, event_id: str, pooled: bool = True, ts=None) -> DecisionRow:
    return DecisionRow(
        loop_id=loop_id, event_id=event_id, ts=ts or utcnow(), context={"user": {"x": 1}},
        actions=orjson.Fragment(POOL_JSON) if pooled else POOL, excluded=[], baseline="a0", chosen="a1",
        probability=0.5, pmf=[0.25, 0.5, 0.25], model_version=0, config_version=1,
        learning_mode="online", seed=7, deferred=False,
        actions_pool=DIGEST if pooled else None,
    )


def _pools(db) -> list[tuple[int, str]]:
    with db.session() as session:
        return [tuple(row) for row in session.execute(
            select(ActionPool.loop_id, ActionPool.digest).order_by(ActionPool.loop_id))]


def test_a_pool_is_written_once_per_loop_and_every_reader_gets_its_actions(db):
    first, second = _loop(db, "first"), _loop(db, "second")
    writer = DecisionWriter(db.engine)
    start = utcnow()
    assert writer.write([_row(first, "e1"), _row(first, "e2"), _row(second, "e1")]) == [True] * 3
    assert writer.write([_row(first, "e3"), _row(first, "inline", pooled=False)]) == [True] * 2
    writer.close()
    assert _pools(db) == [(first, DIGEST), (second, DIGEST)]
    with db.session() as session:
        rows = {row.event_id: row for row in session.scalars(
            select(Decision).where(Decision.loop_id == first))}
        assert rows["e1"].actions is None and rows["e1"].actions_pool == DIGEST
        assert rows["inline"].actions == POOL and rows["inline"].actions_pool is None
        assert all(logged_actions_of(row, session=session) == POOL for row in rows.values())
    until = utcnow() + timedelta(seconds=1)
    events = [event for page in window_pages(db, first, start, until) for event in page]
    assert sorted(event.event_id for event in events) == ["e1", "e2", "e3", "inline"]
    assert all(event.actions == POOL for event in events)
    texts = [event for page in window_text_pages(db, first, start, until) for event in page]
    assert all(orjson.loads(event.actions) == POOL for event in texts) and len(texts) == 4
    with db.engine.connect() as connection:
        learned = learn_rows(connection, first, ["e1", "inline", "e3"])
    assert [orjson.loads(row.actions) for row in learned] == [POOL] * 3


def test_a_failed_batch_writes_its_pool_again_with_the_next(db):
    loop_id = _loop(db, "l")
    writer = DecisionWriter(db.engine)
    bad = _row(loop_id + 999, "bad", pooled=False)  # no such loop: the batch fails
    lost = _row(loop_id, "lost")
    with pytest.raises(Exception):
        writer.write([lost, bad])
    assert _pools(db) == [] and lost.actions is None  # taken: the writer holds them
    assert writer.write([lost]) == [True]  # as GroupCommitter writes a failed batch's rows again
    assert _pools(db) == [(loop_id, DIGEST)]
    assert writer.write([_row(loop_id, "kept")]) == [True]
    writer.close()


def test_a_row_naming_a_pool_without_its_actions_is_refused(db):
    loop_id = _loop(db, "l")
    writer = DecisionWriter(db.engine)
    row = _row(loop_id, "e1")
    row.actions = None
    with pytest.raises(RuntimeError, match="came without its actions"):
        writer.write([row])
    writer.close()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 0


def test_pools_known_written_are_forgotten_after_a_while(db, monkeypatch):
    """A log truncated under a running writer gets the pool back within WRITTEN_POOLS_SECONDS."""
    loop_id = _loop(db, "l")
    writer = DecisionWriter(db.engine)
    writer.write([_row(loop_id, "e1")])
    with db.session() as session:
        session.execute(ActionPool.__table__.delete())
    monkeypatch.setattr(store, "WRITTEN_POOLS_SECONDS", 0.0)
    writer.write([_row(loop_id, "e2")])
    writer.close()
    assert _pools(db) == [(loop_id, DIGEST)]


def test_a_new_connection_writes_the_pools_again_with_its_first_batch(db, database_url):
    """After a failover the writer's new connection may reach a server without the pool."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite is written through SQLAlchemy: the writer holds no connection")
    loop_id = _loop(db, "l")
    writer = DecisionWriter(db.engine)
    writer.write([_row(loop_id, "e1")])
    with db.session() as session:
        session.execute(ActionPool.__table__.delete())
    writer._connection.close()  # the old server's connection ends
    writer.write([_row(loop_id, "e2")])
    writer.close()
    assert _pools(db) == [(loop_id, DIGEST)]
