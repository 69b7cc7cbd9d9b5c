"""Throughput of POST /choose on Postgres against a bare Flask endpoint, same gunicorn settings.

Starts gunicorn twice with the same settings (ours: `bandits serve` on a fresh Postgres database;
baseline: benchmarks/bare_app.py), drives both with wrk (same body: 10 actions, 4 context
namespaces; 16 connections; loopback) in alternating rounds, and prints requests/s, p50 and p99 of
each (medians over rounds), their ratio, and the RSS of each of our workers. A second case does
the same for a 3-slot `ccb` loop over 20 actions (the bare endpoint parses the same body). wrk, the
service and Postgres share the machine's cores: the ratio is the figure to judge.

The ratio is printed as the ratio of the two medians, and as the median of each round's ratio
(ours against the bare round just before it). On a shared machine a busy neighbour can halve one
round of either side; the CPU each side spends per request (workers, Postgres, wrk) moves much
less, so their ratio is printed too: the throughput ratio the cores would give with nothing else
on them.

    python benchmarks/choose_throughput.py [--rounds 3] [--seconds 10] [--workers 2] [--threads 8]
        [--kinds cb,ccb]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bandits.config import load_settings  # noqa: E402
from bandits.services.loops import LoopService  # noqa: E402
from bandits.store import migrate  # noqa: E402
from bandits.store.db import Database  # noqa: E402
from bandits.store.models import Decision  # noqa: E402
from benchmarks.common import (  # noqa: E402
    bare_command, ccb_request_body, free_port, fresh_database, processes, request_body,
    serve_command, wait_ready,
)

def workers(master_pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()


def context_switches(pids: list[str]) -> int:
    """Voluntary + involuntary context switches of every thread of the processes so far."""
    total = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                text = status.read_text()
            except FileNotFoundError:
                continue
            total += sum(int(line.split()[1]) for line in text.splitlines() if "ctxt_switches" in line)
    return total


def cpu_seconds(pids: list[str]) -> float:
    """User + system CPU time of the processes so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a Postgres backend that ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[str]:
    """The Postgres server's processes (the service's connections among them)."""
    return subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True).stdout.split()


def worker_rss_mb(master_pid: int) -> list[float]:
    rss = []
    for pid in workers(master_pid):
        status = Path(f"/proc/{pid}/status").read_text()
        rss.append(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024)
    return rss


def run_wrk(url: str, key: str | None, body_json: dict, seconds: int, connections: int,
            script_dir: Path, pids: list[str] | None = None) -> dict:
    body = json.dumps(body_json)
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if key:
        headers += f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    script = script_dir / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n{headers}')
    postgres = postgres_pids()
    each_before = [cpu_seconds([pid]) for pid in pids or []]
    postgres_before = cpu_seconds(postgres)
    switches_before = context_switches(pids or [])
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    each = [cpu_seconds([pid]) - before for pid, before in zip(pids or [], each_before)]
    cpu = sum(each)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child waited for
    wrk_cpu = ((wrk_after.ru_utime + wrk_after.ru_stime)
               - (wrk_before.ru_utime + wrk_before.ru_stime))
    postgres_cpu = cpu_seconds(postgres) - postgres_before
    switches = context_switches(pids or []) - switches_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    latency = {}
    for label, value, unit in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)\b", out):
        latency[label] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], "cpu_ms": 1000 * cpu / max(total, 1),
            "postgres_cpu_ms": 1000 * postgres_cpu / max(total, 1),
            "switches": switches / max(total, 1), "wrk_cpu_ms": 1000 * wrk_cpu / max(total, 1),
            "non2xx": int(errors.group(1)) if errors else 0,
            # each worker's share of the workers' CPU: whether the connections were shared
            "split": [round(100 * c / cpu) if cpu > 0 else 0 for c in each],
            "socket_errors": socket_errors.group(1) if socket_errors else None}


def _label(side: str, kind: str) -> str:
    """How a case is printed: ``bare``, ``ours``, ``bare ccb``, ``ours ccb``."""
    return side if kind == "cb" else f"{side} {kind}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--kinds", default="cb,ccb",
                        help="cases to run: cb (10 actions), ccb (3 slots over 20 actions); default %(default)s")
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if not kinds or set(kinds) - {"cb", "ccb"}:
        parser.error("--kinds takes cb, ccb or both, separated by a comma")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    with fresh_database() as url, processes() as started:
        database = Database(load_settings(database_url=url), pool_size=2)
        migrate.upgrade(database.engine)
        key = LoopService(database).create("bench", {"objectives": [{"name": "click"}]})["key"]
        ccb_key = LoopService(database).create(
            "bench-ccb", {"kind": "ccb", "objectives": [{"name": "click"}]}
        )["key"]

        env = {**os.environ, "BANDITS_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
        ours_port, bare_port = free_port(), free_port()
        started.append(subprocess.Popen(
            serve_command(ours_port, args.workers, args.threads),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started.append(subprocess.Popen(
            bare_command(bare_port, args.workers, args.threads),
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_ready(f"http://127.0.0.1:{ours_port}/healthz")
        wait_ready(f"http://127.0.0.1:{bare_port}/healthz")

        loops = {"cb": ("bench", key, request_body()), "ccb": ("bench-ccb", ccb_key, ccb_request_body())}
        servers = {"bare": (bare_port, 1), "ours": (ours_port, 0)}  # port, index in `started`
        targets = {}  # label: (URL, key, body, gunicorn master), bare before ours for each kind
        for kind in kinds:
            loop, token, body = loops[kind]
            for side, (port, master) in servers.items():
                targets[_label(side, kind)] = (f"http://127.0.0.1:{port}/v1/loops/{loop}/choose",
                                               token if side == "ours" else None, body, master)
        results: dict[str, list[dict]] = {name_: [] for name_ in targets}
        with tempfile.TemporaryDirectory() as scratch:
            for name_, (target, token, body, _) in targets.items():  # warm-up: models, connections
                run_wrk(target, token, body, seconds=2, connections=args.connections,
                        script_dir=Path(scratch))
            for round_ in range(args.rounds):
                for name_, (target, token, body, master) in targets.items():
                    result = run_wrk(target, token, body, args.seconds, args.connections, Path(scratch),
                                     pids=workers(started[master].pid))
                    results[name_].append(result)
                    print(f"round {round_ + 1} {name_}: {result['rps']:.0f} req/s, p50 {result['p50']:.2f} ms, "
                          f"p99 {result['p99']:.2f} ms, CPU ms/request: workers {result['cpu_ms']:.3f}, "
                          f"Postgres {result['postgres_cpu_ms']:.3f}, "
                          f"wrk {result['wrk_cpu_ms']:.3f}; "
                          f"context switches/request {result['switches']:.1f}, "
                          f"workers' CPU split {'/'.join(str(x) for x in result['split'])} %, "
                          f"non-2xx {result['non2xx']}", flush=True)
        rss = worker_rss_mb(started[0].pid)
        with database.session() as session:
            logged = session.scalar(select(func.count()).select_from(Decision))
        database.dispose()

        def median(name_: str, field: str) -> float:
            return statistics.median(r[field] for r in results[name_])

        print()
        print(f"gunicorn: {args.workers} workers x {args.threads} threads, wrk -c {args.connections}, "
              f"{args.rounds} rounds of {args.seconds} s; wrk, gunicorn and Postgres share {os.cpu_count()} cores")
        for name_ in targets:
            print(f"{name_:>8}: {median(name_, 'rps'):8.0f} req/s   p50 {median(name_, 'p50'):6.2f} ms   "
                  f"p99 {median(name_, 'p99'):6.2f} ms   CPU ms/request: workers {median(name_, 'cpu_ms'):.3f}, "
                  f"Postgres {median(name_, 'postgres_cpu_ms'):.3f}, "
                  f"wrk {median(name_, 'wrk_cpu_ms'):.3f}"
                  f"   (median of {args.rounds})")
        for kind in kinds:
            ours_, bare_ = results[_label("ours", kind)], results[_label("bare", kind)]
            of_medians = median(_label("ours", kind), "rps") / median(_label("bare", kind), "rps")
            per_round = [o["rps"] / b["rps"] for o, b in zip(ours_, bare_)]
            print(f"ratio ours/bare throughput, {kind}: "
                  f"{of_medians:.2f} (ratio of the medians); per round {', '.join(f'{r:.2f}' for r in per_round)}, "
                  f"median {statistics.median(per_round):.2f}")
            # What the ratio would be if the cores did nothing else: each side's CPU per request
            # (workers, Postgres, wrk), whatever the other tenants of a shared machine took.
            cost = {
                side: sum(median(_label(side, kind), field)
                          for field in ("cpu_ms", "postgres_cpu_ms", "wrk_cpu_ms"))
                for side in ("ours", "bare")
            }
            print(f"  CPU per request, workers + Postgres + wrk: ours {cost['ours']:.3f} ms, bare "
                  f"{cost['bare']:.3f} ms; their ratio bare/ours {cost['bare'] / cost['ours']:.2f}")
        print(f"RSS per worker (ours): {', '.join(f'{r:.0f} MB' for r in rss)}")
        non2xx = sum(r["non2xx"] for kind in kinds for r in results[_label("ours", kind)])
        print(f"decisions in Postgres: {logged}; non-2xx replies: {non2xx}")


if __name__ == "__main__":
    main()
