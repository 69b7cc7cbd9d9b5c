"""Freshness: time from a reward's arrival to the first choose served by a model that learned it.

Starts `bandits serve` (2 workers) and `bandits train` on a fresh Postgres database, with a loop
whose objective uses `earliest` (a decision is learnable as soon as its reward arrives) and the
default publish interval (1 s). Repeatedly: choose, post the reward (t0), then keep choosing (other
event ids) until a reply's model_version is at least the version that learned the event (read back
from GET /events/{id}); the time since t0 is one sample. Prints p50/p95. Target: p95 <= 5 s.
Background traffic keeps the service busy: a few threads choosing and rewarding meanwhile.

    python benchmarks/freshness.py [--samples 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import ADMIN_KEY, request_body, service_with_trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--background-threads", type=int, default=4)
    args = parser.parse_args()

    stop = threading.Event()
    with service_with_trainer() as base:
        created = requests.post(f"{base}/v1/loops", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, json={
            "name": "fresh", "config": {"objectives": [{"name": "click", "aggregation": "earliest"}]}})
        created.raise_for_status()
        auth = {"Authorization": f"Bearer {created.json()['key']}"}
        body = request_body()
        choose_url = f"{base}/v1/loops/fresh/choose"

        def background(worker: int) -> None:
            session = requests.Session()
            i = 0
            while not stop.is_set():
                session.post(choose_url, json={**body, "event_id": f"bg-{worker}-{i}"}, headers=auth)
                session.post(f"{base}/v1/loops/fresh/events/bg-{worker}-{i}/rewards",
                             json={"rewards": {"click": i % 2}}, headers=auth)
                i += 1

        threads = [threading.Thread(target=background, args=(w,), daemon=True)
                   for w in range(args.background_threads)]
        for thread in threads:
            thread.start()

        session = requests.Session()
        samples = []
        for n in range(args.samples):
            event_id = f"probe-{n}"
            session.post(choose_url, json={**body, "event_id": event_id}, headers=auth).raise_for_status()
            t0 = time.perf_counter()
            session.post(f"{base}/v1/loops/fresh/events/{event_id}/rewards", json={"rewards": {"click": 1}},
                         headers=auth).raise_for_status()
            learned_version = None
            polls = 0
            while True:
                if learned_version is None:
                    learned_version = session.get(f"{base}/v1/loops/fresh/events/{event_id}",
                                                  headers=auth).json()["learned_version"]
                served = session.post(choose_url, json={**body, "event_id": f"poll-{n}-{polls}"},
                                      headers=auth).json()["model_version"]
                polls += 1
                if learned_version is not None and served >= learned_version:
                    break
                if time.perf_counter() - t0 > 60:
                    raise RuntimeError(f"event {event_id} not served by a model that learned it within 60 s")
                time.sleep(0.02)
            samples.append(time.perf_counter() - t0)
            print(f"sample {n + 1}: {samples[-1]:.2f} s (learned by model {learned_version})", flush=True)
        samples.sort()
        p50 = statistics.median(samples)
        p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
        print(f"\nfreshness over {len(samples)} rewards, default publish interval 1 s, api refresh 1 s, "
              f"{args.background_threads} background clients; server, trainer, Postgres and clients "
              f"share {os.cpu_count()} cores: p50 {p50:.2f} s, p95 {p95:.2f} s (target p95 <= 5 s)")
        stop.set()


if __name__ == "__main__":
    main()
