"""Learning quality: the service (trainer, snapshots, reward delays) against VW learning in-process.

The same simulated stream (bandits.simulate: the same users, in the same order, with the same
outcome randomness per decision) is learned twice:

(a) through the service: `bandits serve` + `bandits train` on a fresh Postgres database, driven
    over HTTP by the simulator with realistic (scaled) outcome delays, snapshots published every
    second;
(b) by one VW workspace in this process with the loop's own arguments, our featuriser and
    sampler, learning each decision the moment it is made.

For each, the exact expected reward (the world's truth, scalarised with the loop's weights) of the
PMFs served over the last half of the stream, and their ratio. A single learning run is noisy
(exploration luck sends VW down different paths), so the comparison is repeated over several
worlds and streams and the means are compared. Target: (a) >= 0.95 x (b).

    python benchmarks/learning_quality.py [--decisions 10000] [--speed 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bandits.client import Client  # noqa: E402
from bandits.learning.features import action_line, shared_line  # noqa: E402
from bandits.learning.rewards import cost, scalar_reward  # noqa: E402
from bandits.learning.sampling import normalise, sample, seed_for  # noqa: E402
from bandits.learning.vw import Learner  # noqa: E402
from bandits.loop_config import LoopConfig  # noqa: E402
from bandits.simulate.driver import Delays, decision_rng, loop_config, run  # noqa: E402
from bandits.simulate.world import OBJECTIVES, World, generate, scalarise  # noqa: E402
from benchmarks.common import ADMIN_KEY, service_with_trainer  # noqa: E402


def through_service(world: World, config: dict, half: int, speed: float, concurrency: int,
                    seeds: tuple[int, int]) -> float:
    with service_with_trainer() as base:
        with Client(base, ADMIN_KEY) as admin:
            key = admin.create_loop("quality", config)["key"]
        delays = Delays(speed=speed)
        with Client(base, key, loop="quality") as client:
            first = run(client, world, half, concurrency, seeds[0], delays, report_every=half,
                        write=lambda line: None)
            second = run(client, world, half, concurrency, seeds[1], delays, report_every=half,
                         write=lambda line: None)
        if not (first.ok and second.ok):
            raise RuntimeError("the simulated run through the service had failures")
        return scalarise(second.policy, second.weights)


def in_process(world: World, config: dict, half: int, seeds: tuple[int, int]) -> float:
    loop = LoopConfig.model_validate(config)
    weights = {o.name: o.weight for o in loop.objectives}
    learner = Learner(loop)
    actions = world.actions()
    ids = [a["id"] for a in actions]
    lines = [action_line(a["id"], a["features"]) for a in actions]
    expected = np.array([[scalarise(world.expected(s, a), weights) for a in range(len(ids))]
                         for s in range(len(world.segments))])
    values = []
    for seed in seeds:
        for index in range(half):
            rng = decision_rng(seed, index)
            segment, context = world.draw_context(rng)
            shared = shared_line(context)
            pmf = normalise(learner.predict(shared, lines))
            chosen = sample(pmf, seed_for(0, f"inproc-{seed}-{index}"))
            outcomes = world.draw_outcomes(segment, ids[chosen], rng)
            reward = scalar_reward(loop, [(name, float(outcomes[name])) for name in OBJECTIVES])
            learner.learn(shared, lines, chosen, cost(reward), pmf[chosen])
            if seed == seeds[1]:
                values.append(float(np.dot(pmf, expected[segment])))
    learner.close()
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--speed", type=float, default=10.0, help="divides the outcome delays")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    delays = Delays(speed=args.speed)
    config = loop_config(delays)
    weights = {o["name"]: o["weight"] for o in config["objectives"]}
    half = args.decisions // 2
    services, inprocs = [], []
    for repeat in range(args.repeats):
        world = generate(seed=100 + repeat, segments=5, offers=10)
        seeds = (1000 + 2 * repeat, 1001 + 2 * repeat)
        started = time.monotonic()
        inprocs.append(in_process(world, config, half, seeds))
        services.append(through_service(world, config, half, args.speed, args.concurrency, seeds))
        uniform = scalarise(world.uniform_value(), weights)
        oracle = scalarise(world.oracle_value(weights), weights)
        print(f"world {repeat + 1}: (a) service {services[-1]:.4f}, (b) in-process {inprocs[-1]:.4f}; "
              f"uniform {uniform:.4f}, oracle {oracle:.4f} ({time.monotonic() - started:.0f} s)", flush=True)
    service, inproc = float(np.mean(services)), float(np.mean(inprocs))
    print(f"\nexact mean reward over the last half of each stream ({half} of {2 * half} decisions), "
          f"weights {weights}, mean of {args.repeats} worlds:")
    print(f"  (a) service: trainer + 1 s snapshots + outcome delays / {args.speed:g}: {service:.4f}")
    print(f"  (b) one VW workspace in-process, learning at once:               {inproc:.4f}")
    print(f"ratio (a)/(b): {service / inproc:.3f} (target >= 0.95); the service, Postgres and the "
          f"simulator share {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
