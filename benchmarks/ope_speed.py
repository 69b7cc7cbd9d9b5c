"""Speed and memory of the OPE library (bandits.ope) on a million logged events.

Two workloads, each generated here from a seed (numpy only, no service, no database):

1. Single slot: 1,000,000 events, 50 actions, 5 context features. Logger: softmax over a noisy
   score mixed with 10 % uniform exploration; target: a sharper softmax over a different score
   with 2 % exploration; rewards Bernoulli; a reward model's predictions (truth plus noise) give
   ``q_logged`` and ``q_target``.
   **Timed**: one :class:`bandits.ope.Evaluation` fed in chunks of 100,000 events (validation,
   terms, moments, diagnostics, bootstrap) plus ``result()``: IPS, SNIPS, DM, DR, SNDR and
   Switch-DR (threshold 20) with Gaussian intervals, a 1,000-resample Poisson bootstrap of SNIPS
   and DR, and the paired lift of every estimate over the logging policy.
2. Slates: 1,000,000 slates of 3 slots with 10 actions each, product logger and target, per-slot
   Bernoulli rewards, slate reward their sum. **Timed**: an Evaluation with PI and IIPS, Gaussian
   intervals and lifts, in chunks of 100,000.

Data generation is not timed (its time is printed separately). Peak RSS is the process's
maximum resident set size so far (``resource.getrusage``), so it includes the generated data.
Targets on the 2-core development machine: single slot <= 10 s and <= 1 GB; slates <= 10 s.

BLAS runs single-threaded unless ``OPENBLAS_NUM_THREADS`` says otherwise: the bootstrap's
matrix products are small, and on a shared 2-core machine OpenBLAS's second thread waits for a
busy core (measured: about 2 s with one thread, 8-10 s with two while other jobs ran).

    python benchmarks/ope_speed.py [--events 1000000] [--chunk 100000] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS; see above

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandits.ope import Evaluation  # noqa: E402

ACTIONS, FEATURES, SLOTS, SLOT_ACTIONS = 50, 5, 3, 10


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    return exp / exp.sum(axis=1, keepdims=True)


def sample(pmf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cumulative = pmf.cumsum(axis=1)
    draws = rng.random((pmf.shape[0], 1)) * cumulative[:, -1:]
    return np.minimum((cumulative < draws).sum(axis=1), pmf.shape[1] - 1)


def single_slot_data(events: int, chunk: int, seed: int) -> tuple[dict[str, np.ndarray], float]:
    """The logged arrays, and the target's true value averaged over the generated contexts."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(scale=0.5, size=(FEATURES, ACTIONS))
    bias = rng.normal(loc=-1.5, scale=0.5, size=ACTIONS)
    columns = {name: np.empty(events) for name in
               ("reward", "propensity", "target_probability", "q_logged", "q_target")}
    value_sum = 0.0
    for begin in range(0, events, chunk):
        end = min(begin + chunk, events)
        x = rng.normal(size=(end - begin, FEATURES))
        click = 1.0 / (1.0 + np.exp(-(x @ theta + bias)))
        logger = 0.9 * softmax(x @ theta + rng.normal(size=click.shape)) + 0.1 / ACTIONS
        target = 0.98 * softmax(3.0 * (x @ (theta + 0.3)) + bias) + 0.02 / ACTIONS
        action = sample(logger, rng)
        rows = np.arange(end - begin)
        model = np.clip(click + rng.normal(scale=0.05, size=click.shape), 0.0, 1.0)
        columns["reward"][begin:end] = rng.random(end - begin) < click[rows, action]
        columns["propensity"][begin:end] = logger[rows, action]
        columns["target_probability"][begin:end] = target[rows, action]
        columns["q_logged"][begin:end] = model[rows, action]
        columns["q_target"][begin:end] = (target * model).sum(axis=1)
        value_sum += float((target * click).sum())
    return columns, value_sum / events


def slate_data(events: int, chunk: int, seed: int) -> tuple[dict[str, np.ndarray], float]:
    """The logged slates, and the target's true value (sum of slot rewards) on these contexts."""
    rng = np.random.default_rng(seed + 1)
    columns = {"propensity": np.empty((events, SLOTS)), "target_probability":
               np.empty((events, SLOTS)), "slot_reward": np.empty((events, SLOTS))}
    appeal = rng.uniform(0.02, 0.3, size=(SLOTS, SLOT_ACTIONS))
    value_sum = 0.0
    for begin in range(0, events, chunk):
        end = min(begin + chunk, events)
        for slot in range(SLOTS):
            scores = rng.normal(size=(end - begin, SLOT_ACTIONS))
            logger = 0.8 * softmax(scores) + 0.2 / SLOT_ACTIONS
            target = 0.9 * softmax(2.0 * appeal[slot] * 10 + scores) + 0.1 / SLOT_ACTIONS
            action = sample(logger, rng)
            rows = np.arange(end - begin)
            columns["propensity"][begin:end, slot] = logger[rows, action]
            columns["target_probability"][begin:end, slot] = target[rows, action]
            columns["slot_reward"][begin:end, slot] = rng.random(end - begin) < appeal[slot, action]
            value_sum += float((target * appeal[slot]).sum())
    return columns, value_sum / events


def run_single_slot(data: dict[str, np.ndarray], chunk: int) -> tuple[float, object]:
    started = time.perf_counter()
    evaluation = Evaluation(
        ["ips", "snips", "dm", "dr", "sndr", {"name": "switch-dr", "threshold": 20}],
        candidates=["target"], n_bootstrap=1000, bootstrap_estimators=["snips", "dr"],
        random_state=2026)
    for begin in range(0, data["reward"].shape[0], chunk):
        part = {name: values[begin: begin + chunk] for name, values in data.items()}
        evaluation.update(reward=part["reward"], propensity=part["propensity"],
                          q_logged=part["q_logged"],
                          candidates={"target": {"target_probability": part["target_probability"],
                                                 "q_target": part["q_target"]}})
    report = evaluation.result(alpha=0.05)
    return time.perf_counter() - started, report


def run_slates(data: dict[str, np.ndarray], chunk: int) -> tuple[float, object]:
    started = time.perf_counter()
    evaluation = Evaluation(["pi", "iips"], candidates=["target"])
    for begin in range(0, data["propensity"].shape[0], chunk):
        part = {name: values[begin: begin + chunk] for name, values in data.items()}
        evaluation.update(propensity=part["propensity"], slot_reward=part["slot_reward"],
                          candidates={"target": {"target_probability":
                                                 part["target_probability"]}})
    report = evaluation.result(alpha=0.05)
    return time.perf_counter() - started, report


def show(report) -> None:
    for estimate, lift in zip(report.estimates, report.lifts):
        intervals = "  ".join(f"{name} [{interval.lower:.4f}, {interval.upper:.4f}]"
                              for name, interval in estimate.intervals.items())
        lift_intervals = "  ".join(f"{name} [{interval.lower:+.4f}, {interval.upper:+.4f}]"
                                   for name, interval in lift.intervals.items())
        print(f"  {estimate.estimator:<24} {estimate.value:.4f}  {intervals}")
        print(f"  {'  lift':<24} {lift.value:+.4f}  {lift_intervals}")
    diagnostics = report.estimates[0].diagnostics
    print(f"  weights ({report.estimates[0].estimator}): "
          f"ESS {diagnostics.effective_sample_size:,.0f} of {diagnostics.n:,}, "
          f"max {diagnostics.weight_max:.2f}, p99 {diagnostics.weight_quantiles['p99']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    started = time.perf_counter()
    data, truth = single_slot_data(args.events, args.chunk, args.seed)
    print(f"single slot: generated {args.events:,} events x {ACTIONS} actions in "
          f"{time.perf_counter() - started:.1f} s (not timed below); target's value on these "
          f"contexts {truth:.4f}, logged mean {data['reward'].mean():.4f}; "
          f"peak RSS so far {peak_rss_mb():.0f} MB")
    seconds, report = run_single_slot(data, args.chunk)
    show(report)
    print(f"single slot: 6 estimators + 1,000-resample bootstrap (snips, dr) + lifts: "
          f"{seconds:.2f} s wall (target <= 10 s), peak RSS {peak_rss_mb():.0f} MB "
          f"(target <= 1024 MB)")
    del data

    started = time.perf_counter()
    slates, truth = slate_data(args.events, args.chunk, args.seed)
    print(f"slates: generated {args.events:,} slates x {SLOTS} slots in "
          f"{time.perf_counter() - started:.1f} s (not timed below); target's value on these "
          f"contexts {truth:.4f}, logged mean {slates['slot_reward'].sum(axis=1).mean():.4f}")
    seconds, report = run_slates(slates, args.chunk)
    show(report)
    print(f"slates: PI + IIPS with Gaussian intervals and lifts: {seconds:.2f} s wall "
          f"(target <= 10 s), peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
