"""What the benchmarks share: a throw-away Postgres database, processes, ports, the request body."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bandits.server import worker_class

POSTGRES_URL = os.environ.get(
    "BANDITS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty Postgres database for one benchmark run, dropped afterwards."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"bandits_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes started into the yielded list are stopped (SIGTERM, then SIGKILL) at the end."""
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def serve_command(port: int, workers: int, threads: int) -> list[str]:
    """`bandits serve` as the /choose benchmarks start it (no demo loop)."""
    return [str(Path(sys.executable).parent / "bandits"), "serve", "--no-demo", "--port", str(port),
            "--workers", str(workers), "--threads", str(threads)]


def bare_command(port: int, workers: int, threads: int) -> list[str]:
    """The bare endpoint (benchmarks/bare_app.py) under the gunicorn settings `bandits serve`
    uses for ``workers`` and ``threads`` (its worker class too, see bandits/workers.py); run it
    from the repository's root."""
    return [str(Path(sys.executable).parent / "gunicorn"), "-b", f"127.0.0.1:{port}",
            "-w", str(workers), "--threads", str(threads), "-k", worker_class(threads),
            "--keep-alive", "5", "benchmarks.bare_app:app"]


def request_body() -> dict:
    """A choose body: 10 actions, 4 context namespaces."""
    return {
        "context": {
            "user": {"country": "AR", "age": 31, "segments": ["new", "mobile"]},
            "device": {"os": "android", "model": "pixel 7", "dark_mode": True},
            "page": {"section": "home", "referrer": "search", "depth": 3},
            "time": {"hour": 21, "weekday": "thu"},
        },
        "actions": [
            {"id": f"offer-{i}",
             "features": {"offer": {"vertical": ["loans", "cards", "travel"][i % 3],
                                    "payout": 2.5 * i, "brand": f"b{i % 4}"}}}
            for i in range(10)
        ],
    }


def ccb_request_body() -> dict:
    """A 3-slot ccb choose body: 20 actions, 4 context namespaces, slots with a position feature."""
    body = request_body()
    body["actions"] = [
        {"id": f"offer-{i}",
         "features": {"offer": {"vertical": ["loans", "cards", "travel", "insurance"][i % 4],
                                "payout": 2.5 * i, "brand": f"b{i % 5}"}}}
        for i in range(20)
    ]
    body["slots"] = [
        {"id": name, "features": {"slot": {"position": position}}, "baseline": f"offer-{position}"}
        for position, name in enumerate(["hero", "middle", "bottom"])
    ]
    return body


ADMIN_KEY = "benchmark-admin-key-0123456789"


@contextmanager
def service_with_trainer(workers: int = 2) -> Iterator[str]:
    """`bandits serve` and `bandits train` on a fresh Postgres database (admin key
    :data:`ADMIN_KEY`); yields the base URL once it is ready, stops both and drops the database."""
    bandits = str(Path(sys.executable).parent / "bandits")
    with fresh_database() as url, processes() as started:
        env = {**os.environ, "BANDITS_DATABASE_URL": url, "BANDITS_ADMIN_KEY": ADMIN_KEY}
        subprocess.run([bandits, "db", "upgrade"], env=env, check=True, capture_output=True)
        port = free_port()
        started.append(subprocess.Popen(
            [bandits, "serve", "--no-demo", "--port", str(port), "--workers", str(workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started.append(subprocess.Popen([bandits, "train"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz")
        yield base
