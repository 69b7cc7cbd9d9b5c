"""Speed of a weight-tuning job: 1,000 weight candidates over 1,000,000 logged decisions with 3
objectives (click, conversion, revenue).

The log is written straight into a fresh database by :func:`bandits.simulate.logged.write_log`
(a :func:`bandits.simulate.world.generate` world: 5 segments, 10 offers, the three objectives
with a real trade-off; an epsilon-greedy logger, 0.2, over the click-best offer per segment;
not timed). The loop learns with ``-q u_ -q uo`` and epsilon-greedy exploration.

**Timed**: the whole job as ``bandits worker`` runs it (:func:`bandits.jobs.worker.run_job`):
read the window in pages (default split 60/20/20), fit one VW reward model per objective on the
fit share's newest ``fit_limit`` (default 200,000) decisions, score every action of the tune and
holdout shares (200,000 each, two child processes reading them meanwhile), score 1,000 weight
candidates on the tune share (in those two children), confirm the best three distinct policies
and the current weights by training the loop's model with them on the fit share, re-estimate the
choice on the holdout. Printed: each phase,
the total, peak RSS (of this process; the children hold their share's text too).

**Baseline, same run**: scoring one candidate with the general streaming library
(:class:`bandits.ope.Evaluation`, DR and SNIPS per objective, fed the same arrays in one chunk)
against the tuning's vectorised scorer (:class:`bandits.tuning.Scorer`), medians of 5.

Target on the 2-core development machine: the job in <= 60 s. The machine is shared (Postgres
runs on it too).

    python benchmarks/tuning_speed.py [--events 1000000] [--budget 1000] [--sqlite]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the worker sets it (bandits.server)

import numpy as np  # noqa: E402
from sqlalchemy import text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import fresh_database  # noqa: E402
from bandits.config import load_settings  # noqa: E402
from bandits.jobs import tuning  # noqa: E402
from bandits.jobs.worker import TuningService, run_job  # noqa: E402
from bandits.ope import Evaluation  # noqa: E402
from bandits.schemas import TuningRequest, parse  # noqa: E402
from bandits.services.loops import LoopService  # noqa: E402
from bandits.simulate.logged import write_log  # noqa: E402
from bandits.simulate.world import generate  # noqa: E402
from bandits.store.db import Database  # noqa: E402
from bandits.store.migrate import upgrade  # noqa: E402
from bandits.store.models import Loop  # noqa: E402
from bandits.tuning import Exploration, Scorer  # noqa: E402

CURRENT = {"click": 1.0, "conversion": 0.0, "revenue": 0.0}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(url: str, events: int) -> Database:
    db = Database(load_settings(database_url=url, admin_key="b" * 32))
    upgrade(db.engine)
    LoopService(db).create("bench", {
        "objectives": [{"name": name, "weight": weight} for name, weight in CURRENT.items()],
        "exploration": {"algorithm": "epsilon", "epsilon": 0.2}, "vw_args": "-q u_ -q uo"})
    with db.session() as session:
        loop_id = session.query(Loop.id).filter(Loop.name == "bench").scalar()
    started = time.perf_counter()
    write_log(db, loop_id, generate(seed=1, segments=5, offers=10), events, weights=CURRENT,
              epsilon=0.2, seed=1, spacing=timedelta(milliseconds=1),
              progress=lambda done: print(f"\r  writing {done:,} / {events:,}", end="", file=sys.stderr))
    with db.engine.connect() as connection:  # fresh statistics, as autovacuum keeps them in production
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    print(f"\nwrote {events:,} decisions in {time.perf_counter() - started:.0f} s (not timed)")
    return db


def baseline(arrays, weights: np.ndarray) -> tuple[float, float]:
    """Seconds per candidate: bandits.ope.Evaluation vs the tuning's Scorer (medians of 5)."""
    scorer = Scorer(arrays, Exploration("epsilon", 0.2))
    rows = np.arange(arrays.n)

    def with_library() -> None:
        pmf = scorer.pmf(weights).astype(float)
        for k in range(arrays.objectives):
            evaluation = Evaluation(["dr", "snips"], candidates=["w"])
            evaluation.update(
                reward=arrays.outcomes[:, k], propensity=arrays.propensity,
                q_logged=arrays.predictions[rows, arrays.logged, k],
                candidates={"w": {"target_probability": pmf[arrays.logged, rows],
                                  "q_target": np.einsum("an,na->n", pmf, arrays.predictions[:, :, k])}})
            evaluation.result(0.05)

    def timed(work) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            work()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    return timed(with_library), timed(lambda: scorer.score(weights))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of Postgres")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as scratch:
        if args.sqlite:
            run(f"sqlite:///{scratch}/bench.db", args)
        else:
            with fresh_database() as url:
                run(url, args)


def run(url: str, args) -> None:
    db = fill(url, args.events)
    now = datetime.now(timezone.utc)
    body = {"window": {"since": (now - timedelta(days=30)).isoformat(), "until": now.isoformat()},
            "primary": "revenue", "guardrails": [{"objective": "click", "max_drop": 0.05}],
            "budget": args.budget}
    service = TuningService(db)
    job = service.submit("bench", parse(TuningRequest, body, "InvalidTuning", 422), claimed_by="bench")
    captured = {}
    original = tuning.tune

    def capturing(problem, exploration, tune_split, holdout_split, *rest, **named):
        captured["read"] = time.perf_counter()
        captured["tune"] = tune_split
        confirm = named["confirm"]

        def timed_confirm(weights):
            captured["searched"] = time.perf_counter()
            return confirm(weights)

        return original(problem, exploration, tune_split, holdout_split, *rest,
                        **{**named, "confirm": timed_confirm})

    tuning.tune = capturing
    started = time.perf_counter()
    assert run_job(db, job["id"], "bench"), service.get("bench", job["id"])["error"]
    finished = time.perf_counter()
    tuning.tune = original
    result = service.get("bench", job["id"])["result"]
    events = result["run"]["events"]
    print(f"read + fit {events['fit_used']:,} + score {events['tune'] + events['holdout']:,} decisions "
          f"x {len(result['objectives'])} objectives: {captured['read'] - started:.1f} s")
    print(f"search: {len(result['candidates']):,} candidates on {events['tune']:,} decisions: "
          f"{captured['searched'] - captured['read']:.1f} s; confirming {len(result['confirmed'])} "
          f"trained policies + holdout: {finished - captured['searched']:.1f} s")
    print(f"tuning job, {args.events:,} decisions, {len(result['candidates']):,} candidates, 3 objectives: "
          f"{finished - started:.1f} s wall (target <= 60 s), peak RSS {peak_rss_mb():.0f} MB; "
          f"recommendation: {result['recommendation']['action']} {result['recommendation']['weights']}")
    library, ours = baseline(captured["tune"], np.array([1.0, 0.5, 0.1]))
    print(f"one candidate on {events['tune']:,} decisions (median of 5): bandits.ope.Evaluation "
          f"{library * 1000:.0f} ms, tuning Scorer {ours * 1000:.0f} ms ({library / ours:.1f}x)")


if __name__ == "__main__":
    main()
