"""The notebooks' demo: a database filled by ``bandits simulate --direct``, a scratch
``bandits serve`` for the client notebook, and the README's picture.

``python -m bandits.analysis.demo docs/images/pareto.png`` fills a demo database in a temporary
folder, runs a tuning job on it and saves the Pareto-front plot (the README shows it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bandits.analysis.frames import open_database
from bandits.store import loops as loop_store

LOOP = "offers"
DECISIONS = 4000
DEFAULT_PATH = "demo.db"
# The demo loop was set up for clicks alone (the simulated world's objectives, weights 1, 0, 0);
# the tuning notebook asks which weights would earn more revenue without losing 5 % of the clicks.
WEIGHTS = {"click": 1.0, "conversion": 0.0, "revenue": 0.0}
TUNING = {"primary": "revenue", "guardrails": {"click": 0.05}, "budget": 60}


def _bandits(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``bandits ARGS`` with this interpreter (the environment's ``bandits``, wherever its
    scripts are)."""
    return subprocess.run([sys.executable, "-m", "bandits.cli", *args], capture_output=True,
                          text=True, env=env)


def fill(database_url: str, loop: str = LOOP, decisions: int = DECISIONS, seed: int = 0,
         epsilon: float = 0.3) -> str:
    """Create loop ``loop`` in ``database_url`` (the simulated world's objectives with
    :data:`WEIGHTS`: ``bandits db upgrade``, ``bandits loops create``) and write ``decisions``
    simulated decisions into its log (``bandits simulate --direct``, docs/simulate.md): an
    epsilon-greedy logger over the best offer for clicks. Returns what they printed."""
    import orjson

    from bandits.simulate.driver import loop_config

    env = {**os.environ, "BANDITS_DATABASE_URL": database_url}
    config = orjson.dumps(loop_config(weights=WEIGHTS)).decode()
    output = []
    for args in (("db", "upgrade"), ("loops", "create", loop, "--config", config),
                 ("simulate", "--direct", "--loop", loop, "--decisions", str(decisions),
                  "--seed", str(seed), "--epsilon", str(epsilon))):
        done = _bandits(*args, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"bandits {' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")
        output.append(done.stdout)
    return "".join(output)


def has_loop(database_url: str, loop: str = LOOP) -> bool:
    with open_database(database_url) as db:
        from bandits.store import migrate

        if migrate.pending(db.engine):
            return False
        with db.session() as session:
            return loop_store.get_loop(loop, session=session) is not None


def database_url(path: str | os.PathLike = DEFAULT_PATH, loop: str = LOOP) -> str:
    """``BANDITS_DATABASE_URL`` when it is set; otherwise the SQLite file ``path`` (relative to
    the working directory), filled with the demo loop by :func:`fill` unless it has it."""
    if os.environ.get("BANDITS_DATABASE_URL"):
        return os.environ["BANDITS_DATABASE_URL"]
    url = f"sqlite:///{Path(path).resolve()}"
    if not has_loop(url, loop):
        print(fill(url, loop))
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def service(admin_key: str, database_url: str | None = None, timeout: float = 60.0) -> Iterator[str]:
    """``bandits serve`` (SQLite dev mode: with its trainer; one gunicorn worker) on a free port
    of 127.0.0.1, on ``database_url`` (default: a new SQLite file in a temporary folder), with
    ``admin_key``; yields its base URL once ``/readyz`` answers and stops it on exit."""
    with tempfile.TemporaryDirectory(prefix="bandits-serve-") as folder:
        url = database_url or f"sqlite:///{Path(folder) / 'bandits.db'}"
        env = {**os.environ, "BANDITS_DATABASE_URL": url, "BANDITS_ADMIN_KEY": admin_key}
        port = free_port()
        log_path = Path(folder) / "serve.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bandits.cli", "serve", "--port", str(port), "--workers", "1",
                 "--threads", "4", "--no-demo", "--no-worker"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + timeout
                while not _ready(base):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"bandits serve did not come up:\n{log_path.read_text()}")
                    time.sleep(0.2)
                yield base
            finally:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def pareto_png(path: str | os.PathLike) -> None:
    """Fill a demo database in a temporary folder, tune its weights (:data:`TUNING`) and save
    the Pareto-front plot to ``path``."""
    from bandits.analysis import plots, tune

    with tempfile.TemporaryDirectory(prefix="bandits-demo-") as folder:
        url = f"sqlite:///{Path(folder) / 'demo.db'}"
        fill(url)
        result = tune(url, LOOP, TUNING["primary"], guardrails=TUNING["guardrails"],
                      budget=TUNING["budget"])
    figure = plots.pareto_front(result)
    figure.savefig(path, dpi=110)
    print(f"{path}: {len(result['candidates'])} candidates, recommendation "
          f"{result['recommendation']['action']} {result['recommendation']['weights']}")


if __name__ == "__main__":  # pragma: no cover - a script
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bandits.analysis.demo OUTPUT.png")
    pareto_png(sys.argv[1])
