"""Group commit with the real decision writer on SQLite and Postgres."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from sqlalchemy import text

from bandits.services.group_commit import GroupCommitter
from bandits.store.db import utcnow
from bandits.store.decisions import DecisionRow, DecisionWriter, get_decision
from bandits.store.models import Loop
from tests.helpers import actions, count_rows


def _row(loop_id: int, event_id: str) -> DecisionRow:
    return DecisionRow(
        loop_id=loop_id, event_id=event_id, ts=utcnow(), context={"user": {"x": 1}},
        actions=actions(2), excluded=[], baseline="a0", chosen="a1", probability=0.5,
        pmf=[0.5, 0.5], model_version=0, config_version=1, learning_mode="online", seed=7,
        deferred=False,
    )


@pytest.fixture
def loop_id(db) -> int:
    with db.session() as session:
        loop = Loop(name="gc", kind="cb", config={}, config_version=1, created_at=utcnow(),
                    updated_at=utcnow())
        session.add(loop)
        session.flush()
        return loop.id


def _submit_concurrently(committer, rows, threads=16):
    results: dict[str, object] = {}
    barrier = threading.Barrier(threads)

    def work(chunk):
        barrier.wait()
        for row in chunk:
            try:
                results[row.event_id] = committer.submit(row)
            except Exception as exc:
                results[row.event_id] = exc

    chunks = [rows[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_concurrent_rows_share_transactions_and_are_all_written(db, loop_id):
    writer = DecisionWriter(db.engine)
    committer = GroupCommitter(writer.write)
    rows = [_row(loop_id, f"e{i}") for i in range(400)]
    results = _submit_concurrently(committer, rows)
    writer.close()
    assert all(results[row.event_id] is True for row in rows)
    assert count_rows(db) == 400
    assert committer.items == 400
    assert committer.batches < 400  # rows did share commits


def test_a_repeated_event_id_is_written_once_first_wins(db, loop_id):
    writer = DecisionWriter(db.engine)
    first, second = _row(loop_id, "same"), _row(loop_id, "same")
    assert writer.write([first, second]) == [True, False]
    assert writer.write([_row(loop_id, "same")]) == [False]
    writer.close()
    assert count_rows(db) == 1


def test_a_bad_row_fails_alone(db, loop_id):
    writer = DecisionWriter(db.engine)
    committer = GroupCommitter(writer.write)
    rows = [_row(loop_id, f"ok{i}") for i in range(120)]
    bad = [_row(loop_id + 999, f"bad{i}") for i in range(3)]  # no such loop: a foreign key violation
    results = _submit_concurrently(committer, rows + bad, threads=12)
    writer.close()
    assert all(results[row.event_id] is True for row in rows)
    assert all(isinstance(results[row.event_id], Exception) for row in bad)
    if db.engine.dialect.name == "postgresql":  # libpq's error, raised as psycopg's class for it
        violation = psycopg.errors.ForeignKeyViolation
        assert all(isinstance(results[row.event_id], violation) for row in bad)
    assert count_rows(db) == 120
    with db.session() as session:
        assert get_decision(loop_id, "ok7", session=session) is not None
        assert get_decision(loop_id + 999, "bad0", session=session) is None


def test_a_failing_flush_reaches_every_request_of_its_batch():
    def broken(items):
        raise ConnectionError("database went away")

    committer = GroupCommitter(broken)
    with pytest.raises(ConnectionError):
        committer.submit(uuid.uuid4())


def test_a_connection_lost_fails_its_batch_and_the_next_batch_reconnects(db, loop_id):
    writer = DecisionWriter(db.engine)
    assert writer.write([_row(loop_id, "before")]) == [True]
    if db.engine.dialect.name == "postgresql":  # the server ends the writer's connection
        with db.engine.begin() as connection:
            ended = connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query LIKE '%INSERT INTO decisions%'"
            )).scalars().all()
        assert ended == [True]
        with pytest.raises(psycopg.OperationalError):
            writer.write([_row(loop_id, "lost")])
    assert writer.write([_row(loop_id, "after")]) == [True]  # a new connection, prepared again
    writer.close()
    with db.session() as session:
        assert get_decision(loop_id, "after", session=session) is not None
        assert get_decision(loop_id, "lost", session=session) is None
