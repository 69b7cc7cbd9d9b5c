"""Where a POST /choose request's CPU goes under load: the same server cut short at each step.

Starts `bandits serve` four times on one fresh Postgres database, each with
benchmarks/ladder/sitecustomize.py loaded and ``BANDITS_LADDER`` set to one step, plus the bare
endpoint of benchmarks/choose_throughput.py, and drives them with wrk in alternating rounds (same
body, 16 connections, loopback). Steps, each doing everything the one before does:

    parse      read and parse the body, reply (our gunicorn settings and WSGI handler, no Flask)
    validate   + the key, the loop and the request's validation
    nowrite    + the whole decision (featurising, VW, sampling, the log row, the reply), but the
               log writer returns at once: a measurement, not a service (nothing is durable)
    full       the service as it runs: + the group-committed write to Postgres

For each it prints requests/s and the CPU per request of the workers and of Postgres (medians of
the rounds), and what each step adds. wrk, the servers and Postgres share the machine's cores,
as in choose_throughput.py: compare CPU per request, which neighbours move least.

    python benchmarks/choose_ladder.py [--rounds 5] [--seconds 5] [--kind cb|ccb]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bandits.config import load_settings  # noqa: E402
from bandits.services.loops import LoopService  # noqa: E402
from bandits.store import migrate  # noqa: E402
from bandits.store.db import Database  # noqa: E402
from benchmarks.choose_throughput import run_wrk, workers  # noqa: E402
from benchmarks.common import (  # noqa: E402
    bare_command, ccb_request_body, free_port, fresh_database, processes, request_body,
    serve_command, wait_ready,
)

STEPS = ("parse", "validate", "nowrite", "full")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--kind", choices=("cb", "ccb"), default="cb")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    with fresh_database() as url, processes() as started:
        database = Database(load_settings(database_url=url), pool_size=2)
        migrate.upgrade(database.engine)
        config: dict = {"objectives": [{"name": "click"}]}
        if args.kind == "ccb":
            config["kind"] = "ccb"
        key = LoopService(database).create("bench", config)["key"]
        database.dispose()
        body = ccb_request_body() if args.kind == "ccb" else request_body()
        targets: dict[str, tuple[int, subprocess.Popen, str | None]] = {}
        for step in STEPS:
            port = free_port()
            env = {**os.environ, "BANDITS_DATABASE_URL": url, "BANDITS_LADDER": step,
                   "PYTHONPATH": f"{ROOT / 'benchmarks' / 'ladder'}{os.pathsep}{ROOT}"}
            started.append(subprocess.Popen(serve_command(port, 2, 8), env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            targets[step] = (port, started[-1], key)
        port = free_port()
        started.append(subprocess.Popen(
            bare_command(port, 2, 8), env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        targets["bare"] = (port, started[-1], None)
        for port, _, _ in targets.values():  # five servers import at once on two cores
            wait_ready(f"http://127.0.0.1:{port}/healthz", seconds=120)

        results: dict[str, list[dict]] = {name: [] for name in targets}
        with tempfile.TemporaryDirectory() as scratch:
            for port, _, token in targets.values():  # warm-up
                run_wrk(f"http://127.0.0.1:{port}/v1/loops/bench/choose", token, body, 2, 16,
                        Path(scratch))
            for round_ in range(args.rounds):
                for name, (port, master, token) in targets.items():
                    result = run_wrk(f"http://127.0.0.1:{port}/v1/loops/bench/choose", token, body,
                                     args.seconds, 16, Path(scratch), pids=workers(master.pid))
                    results[name].append(result)
                    print(f"round {round_ + 1} {name}: {result['rps']:.0f} req/s, CPU ms/request: "
                          f"workers {result['cpu_ms']:.3f}, "
                          f"Postgres {result['postgres_cpu_ms']:.3f}; "
                          f"non-2xx {result['non2xx']}", flush=True)

    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    print()
    print(f"{args.kind}: gunicorn 2 workers x 8 threads, wrk -c 16, {args.rounds} rounds of "
          f"{args.seconds} s; wrk, the servers and Postgres share {os.cpu_count()} cores")
    print("    step     req/s   workers ms/req   Postgres ms/req   adds (workers + Postgres)")
    before = 0.0
    for name in targets:
        workers_ms, postgres_ms = median(name, "cpu_ms"), median(name, "postgres_cpu_ms")
        total = workers_ms + postgres_ms
        adds = f"{total - before:+.3f}" if name != "bare" else "(the baseline)"
        print(f"{name:>8} {median(name, 'rps'):9.0f} {workers_ms:16.3f} {postgres_ms:17.3f}   "
              f"{adds}")
        before = total
    non2xx = sum(r["non2xx"] for name in STEPS for r in results[name])
    print(f"non-2xx replies: {non2xx}")


if __name__ == "__main__":
    main()
