"""Dev mode: `bandits serve` on SQLite, with no other option, runs everything: the api, a trainer
and an evaluation worker beside it. A job posted to it completes, and its children stop with it."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from bandits.client import Client
from tests.conftest import ADMIN_KEY
from tests.servers import database, running_service

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ACTIONS = [{"id": f"a{k}", "features": {"offer": {"rank": k}}} for k in range(3)]


def _pids(log: str, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"{name} running beside the api \(pid (\d+)\)", log)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_job_posted_to_the_dev_server_completes(tmp_path):
    with database("sqlite", tmp_path) as database_url:
        with running_service(database_url, tmp_path) as base:
            with Client(base, ADMIN_KEY) as admin:
                created = admin.create_loop("dev", {"objectives": [{"name": "click"}]})
            with Client(base, created["key"], loop="dev") as client:
                for i in range(30):
                    decision = client.choose({"user": {"segment": f"s{i % 3}"}}, ACTIONS,
                                             event_id=f"e{i}")
                    if decision["action"] == "a2":
                        client.reward(f"e{i}", {"click": 1})
            now = datetime.now(timezone.utc)
            window = {"since": (now - timedelta(hours=1)).isoformat(),
                      "until": (now + timedelta(hours=1)).isoformat()}
            reply = requests.post(f"{base}/v1/loops/dev/evaluations", headers=ADMIN, timeout=10,
                                  json={"window": window, "candidates": [{"kind": "uniform"}]})
            assert reply.status_code == 202, reply.text
            job = reply.json()
            deadline = time.monotonic() + 60
            while job["status"] in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(0.5)
                job = requests.get(f"{base}/v1/loops/dev/evaluations/{job['id']}", headers=ADMIN,
                                   timeout=10).json()
            assert job["status"] == "succeeded", job
            assert job["result"]["n"] == 30
        log = (tmp_path / "serve.log").read_text()
    trainers, workers = _pids(log, "trainer"), _pids(log, "worker")
    assert len(trainers) == 1 and len(workers) == 1, log
    # Stopping the api stops its children.
    deadline = time.monotonic() + 10
    while not (_gone(trainers[0]) and _gone(workers[0])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(trainers[0]) and _gone(workers[0]), log


def test_no_worker_leaves_jobs_queued(tmp_path):
    with database("sqlite", tmp_path) as database_url:
        with running_service(database_url, tmp_path, "--no-worker", "--no-trainer") as base:
            with Client(base, ADMIN_KEY) as admin:
                admin.create_loop("dev", {"objectives": [{"name": "click"}]})
            now = datetime.now(timezone.utc)
            window = {"since": (now - timedelta(hours=1)).isoformat(), "until": now.isoformat()}
            reply = requests.post(f"{base}/v1/loops/dev/evaluations", headers=ADMIN, timeout=10,
                                  json={"window": window, "candidates": [{"kind": "uniform"}]})
            assert reply.status_code == 202, reply.text
            time.sleep(3)  # a worker polls every second
            job = requests.get(f"{base}/v1/loops/dev/evaluations/{reply.json()['id']}",
                               headers=ADMIN, timeout=10).json()
            assert job["status"] == "queued", job
        log = (tmp_path / "serve.log").read_text()
    assert "running beside the api" not in log, log
