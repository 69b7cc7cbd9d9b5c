"""Real `bandits serve` (and `bandits train`) processes for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import ADMIN_KEY

BANDITS = Path(sys.executable).parent / "bandits"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_service(database_url: str, directory: Path, *args: str) -> Iterator[str]:
    """`bandits serve` (2 workers x 4 threads, plus ``args``) on ``database_url``; yields its base
    URL once /readyz answers, stops it afterwards. Its log is ``directory/serve.log``."""
    with running_server(database_url, directory, *args) as (base, _process):
        yield base


@contextmanager
def running_server(
    database_url: str, directory: Path, *args: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`running_service`, yielding the gunicorn arbiter's process too."""
    env = {**os.environ, "BANDITS_DATABASE_URL": database_url, "BANDITS_ADMIN_KEY": ADMIN_KEY}
    if not database_url.startswith("sqlite"):
        subprocess.run([BANDITS, "db", "upgrade"], env=env, check=True, capture_output=True)
    port = free_port()
    log_path = directory / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [BANDITS, "serve", "--port", str(port), "--workers", "2", "--threads", "4", "--no-demo", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    # A worker's first request loads VW and the database: slow on a busy machine.
                    if requests.get(f"{base}/readyz", timeout=10).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"bandits serve did not come up:\n{log_path.read_text()}")
                time.sleep(0.2)
            yield base, process
        finally:
            stop(process)


@contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """An empty database for a server: a SQLite file in ``directory``, or a fresh Postgres one."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'bandits.db'}"
        return
    from tests.conftest import _postgres_database

    databases = _postgres_database()
    try:
        yield next(databases)
    finally:
        databases.close()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
