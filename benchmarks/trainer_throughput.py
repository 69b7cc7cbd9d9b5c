"""Events learned per second by the trainer (join + learn + commit), `cb` with 10 actions.

Fills a fresh Postgres database with N decisions (10 actions, 4 context namespaces whose values
vary from event to event) and their outcomes, then times `LoopTrainer.step()` over all of them: reading the decisions and outcomes,
scalarising, featurising, learning with VW, saving the snapshot and marking the events, in one
transaction. For scale it also times VW alone learning the same, already featurised, examples.
Target: >= 20,000 events/s on the 2-core machine.

    python benchmarks/trainer_throughput.py [--events 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import insert, text, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bandits.config import load_settings  # noqa: E402
from bandits.learning.features import action_line, shared_line  # noqa: E402
from bandits.learning.vw import Learner  # noqa: E402
from bandits.loop_config import LoopConfig  # noqa: E402
from bandits.services.loops import LoopService  # noqa: E402
from bandits.services.trainer import LoopTrainer  # noqa: E402
from bandits.store import migrate  # noqa: E402
from bandits.store.db import Database, utcnow  # noqa: E402
from bandits.store.decisions import DecisionRow, DecisionWriter  # noqa: E402
from bandits.store.models import Decision, Model, Outcome  # noqa: E402
from benchmarks.common import fresh_database, request_body  # noqa: E402

CONFIG = {"objectives": [{"name": "click", "aggregation": "earliest"}], "vw_args": "-q uo"}
# -q uo (user features x offer features) is what a real loop needs; --vw-args "" measures the
# loop's default (no interactions).


COUNTRIES = ["AR", "BR", "CL", "CO", "MX", "PE", "UY", "ES", "US", "DE"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def context(i: int) -> dict:
    """The benchmark body's context namespaces, with values that vary from event to event as a
    product's users do (20,000 users, 50 device models, ...), so that nothing is learned from a
    featuriser's memory of one context."""
    return {
        "user": {"id": f"user-{i * 7919 % 20_000}", "country": COUNTRIES[i % 10], "age": 18 + i % 60,
                 "segments": ["new" if i % 3 else "returning", "mobile" if i % 2 else "desktop"]},
        "device": {"os": ["android", "ios", "web"][i % 3], "model": f"model {i % 50}",
                   "dark_mode": i % 4 == 0},
        "page": {"section": f"section-{i % 8}", "referrer": f"ref-{i % 5}", "depth": i % 10},
        "time": {"hour": i % 24, "weekday": WEEKDAYS[i % 7]},
    }


def fill(database: Database, loop_id: int, events: int) -> None:
    body = request_body()
    writer = DecisionWriter(database.engine)
    now = utcnow()
    for start in range(0, events, 1000):
        rows = [
            DecisionRow(loop_id, f"e{i}", now, context(i), body["actions"], [], "offer-0",
                        f"offer-{i % 10}", 0.1, [0.1] * 10, 0, 1, "online", i, False)
            for i in range(start, min(start + 1000, events))
        ]
        writer.write(rows)
    writer.close()
    with database.engine.begin() as connection:
        connection.execute(insert(Outcome), [
            {"loop_id": loop_id, "event_id": f"e{i}", "objective": "click", "value": float(i % 3 == 0),
             "ts": now, "late": False} for i in range(events)
        ])


def reset(database: Database, loop_id: int) -> None:
    with database.engine.begin() as connection:
        connection.execute(update(Decision).where(Decision.loop_id == loop_id)
                           .values(learned_at=None, learned_version=None))
        connection.execute(Model.__table__.delete().where(Model.loop_id == loop_id))
    # Resetting left a dead row version per decision, which a live loop's autovacuum would have
    # cleaned up long ago: clean it up before the next round.
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE decisions, outcomes"))


def vw_alone(events: int) -> float:
    body = request_body()
    shared = [shared_line(context(i)) for i in range(events)]
    lines = [action_line(a["id"], a["features"]) for a in body["actions"]]
    learner = Learner(LoopConfig.model_validate(CONFIG))
    started = time.perf_counter()
    for i in range(events):
        learner.learn(shared[i], lines, i % 10, -float(i % 3 == 0), 0.1)
    elapsed = time.perf_counter() - started
    learner.close()
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vw-args", default=CONFIG["vw_args"], help="the loop's vw_args (default: %(default)s)")
    args = parser.parse_args()
    CONFIG["vw_args"] = args.vw_args

    with fresh_database() as url:
        database = Database(load_settings(database_url=url), pool_size=2)
        migrate.upgrade(database.engine)
        LoopService(database).create("bench", CONFIG)
        loop_id = 1
        print(f"filling {args.events} decisions with outcomes ...", flush=True)
        fill(database, loop_id, args.events)
        rates, alone = [], []
        for round_ in range(args.rounds):
            reset(database, loop_id)
            trainer = LoopTrainer(database, loop_id, "bench")
            started = time.perf_counter()
            learned = trainer.step(limit=args.events)
            elapsed = time.perf_counter() - started
            trainer.close()
            assert learned == args.events, learned
            rates.append(learned / elapsed)
            alone.append(vw_alone(args.events))
            print(f"round {round_ + 1}: trainer {rates[-1]:,.0f} events/s ({elapsed:.2f} s); "
                  f"VW alone on featurised text {alone[-1]:,.0f} events/s", flush=True)
        print(f"\ntrainer (join + learn + commit), cb with 10 actions, vw_args {args.vw_args!r}: "
              f"{statistics.median(rates):,.0f} events/s (median of {args.rounds}); "
              f"VW alone: {statistics.median(alone):,.0f} events/s; "
              f"ratio {statistics.median(rates) / statistics.median(alone):.2f}")
        database.dispose()


if __name__ == "__main__":
    main()
