"""Run the api under gunicorn (gthread workers, bandits.workers: threads share a process's group
commit, connections are spread evenly over the workers), and the
dev-mode child processes beside it (`bandits train`, `bandits worker`)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from bandits.config import Settings


class GunicornServer(BaseApplication):
    """Gunicorn with our app factory; each worker builds its own app after the fork."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        from bandits.api import create_app

        return create_app(self._settings, {"POOL_SIZE": self._options.get("threads", 1) + 2})


def worker_class(threads: int) -> str:
    """gunicorn's worker class for ``threads`` per worker: gthread spreading connections evenly
    (bandits.workers) with more than one, sync otherwise."""
    return "bandits.workers.BalancedThreadWorker" if threads > 1 else "sync"


def gunicorn_options(
    host: str, port: int, workers: int, threads: int, access_log: bool, pin_workers: bool = True,
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": worker_class(threads),
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "proc_name": "bandits",
    }
    if access_log:
        options["accesslog"] = "-"
    if pin_workers and threads > 1 and len(usable_cpus()) > 1:
        options["pre_fork"] = choose_cpu
        options["post_fork"] = pin_to_cpu
    return options


# Pinning (see docs/operations.md, "Workers pinned to CPUs"). A gthread worker runs one thread at
# a time (the GIL), and its threads hand work to one another many times per request: the request
# to a pool thread, the group commit's batch to its waiting requests, the GIL itself. A worker
# kept on one core gives up no parallelism it could use, and those hand-offs no longer wake
# threads across cores: on the 2-core machine /choose went from 1,946 to 2,324 requests/s, worker
# CPU from 0.71 to 0.65 ms per request.


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the OS cannot tell)."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def choose_cpu(server: Any, worker: Any) -> None:
    """gunicorn's pre_fork hook (in the arbiter): give the new worker the usable CPU that the
    fewest live workers are on (the lowest such), so that N workers spread over the CPUs and a
    replacement worker takes its predecessor's CPU."""
    cpus = usable_cpus()
    taken = [getattr(other, "bandits_cpu", None) for other in server.WORKERS.values()]
    worker.bandits_cpu = min(cpus, key=lambda cpu: (taken.count(cpu), cpu))


def pin_to_cpu(server: Any, worker: Any) -> None:
    """gunicorn's post_fork hook (in the worker, before it starts its threads, which inherit it)."""
    cpu = getattr(worker, "bandits_cpu", None)
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as error:  # e.g. the CPU left the allowed set meanwhile: run unpinned
        server.log.warning("worker %s not pinned to CPU %s: %s", os.getpid(), cpu, error)
        return
    server.log.info("worker %s pinned to CPU %s", os.getpid(), cpu)


@dataclass(frozen=True)
class Child:
    """A `bandits` command run beside the api (dev mode)."""

    name: str
    process: subprocess.Popen


# Each dev-mode child's `bandits` arguments. Both stop on SIGTERM: the trainer finishes its step;
# the worker just ends, and a job it leaves unfinished is claimed again once its heartbeat is
# stale. (Not SIGINT: a shell starts background jobs with SIGINT ignored, children inherit it.)
CHILDREN = {"trainer": ["train"], "worker": ["worker"]}


def start_child(name: str) -> Child:
    """Start the dev-mode child ``name`` (``trainer`` or ``worker``): `python -m bandits.cli ...`."""
    env = dict(os.environ)
    if name == "worker":  # evaluations use BLAS; one thread each on a machine the api shares
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return Child(name, subprocess.Popen([sys.executable, "-m", "bandits.cli", *CHILDREN[name]],
                                        env=env))


def stop_children(children: list[Child], timeout: float = 30.0) -> None:
    """SIGTERM every child still running, then wait for each (killed after ``timeout`` s)."""
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    for child in children:
        try:
            child.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
