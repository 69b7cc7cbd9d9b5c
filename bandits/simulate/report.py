"""The learning curve: what the served policy earned, next to exact uniform and oracle values.

Every ``report_every`` decisions a line shows, for the decisions of that window: the realised mean
of each objective, the realised scalar reward (the loop's weights), ``policy``: the exact expected
scalar reward of the PMFs the service served on those contexts (the served policy's value without
the outcome noise), and the exact values of uniform random and of the oracle over the whole world.
For a slate world (:mod:`~bandits.simulate.slates`) the outcomes are the page's: sums over its
slots.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from bandits.simulate.slates import SlateWorld
from bandits.simulate.world import OBJECTIVES, World, scalarise, weight_vector

SHORT_NAMES = {"click": "click", "conversion": "conv", "revenue": "revenue"}
COLUMNS = ("decisions", *(SHORT_NAMES[name] for name in OBJECTIVES),
           "reward", "policy", "uniform", "oracle", "model", "seconds")
WIDTHS = (9, 7, 7, 8, 7, 7, 7, 7, 5, 7)


def _row(cells: tuple[str, ...]) -> str:
    return "  ".join(cell.rjust(width) for cell, width in zip(cells, WIDTHS))


class LearningCurve:
    """Collects each served decision (thread-safe) and writes a line every ``report_every``."""

    def __init__(self, world: World | SlateWorld, weights: Mapping[str, float], report_every: int,
                 write: Callable[[str], None]) -> None:
        self.world = world
        self.weights = dict(weights)
        self.report_every = report_every
        self._write = write
        self._weights = weight_vector(weights)
        self.uniform = world.uniform_value()
        self.oracle = world.oracle_value(weights)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.decisions = 0
        self._realised_total = np.zeros(len(OBJECTIVES))
        self._policy_total = np.zeros(len(OBJECTIVES))
        self._window: list[tuple[np.ndarray, np.ndarray, int]] = []

    def header(self) -> str:
        return _row(COLUMNS)

    def add(self, segment: int, outcomes: Mapping[str, float], pmf: Mapping[str, float],
            model_version: int) -> None:
        """One served decision: its drawn outcomes and the PMF the service served."""
        self.record(outcomes, self.world.pmf(pmf) @ self.world.expectations[segment], model_version)

    def record(self, outcomes: Mapping[str, float], expected: np.ndarray,
               model_version: int) -> None:
        """One served decision: its drawn outcomes and the exact expected outcomes (aligned with
        the objectives) of what the service served for its context."""
        realised = np.array([outcomes[name] for name in OBJECTIVES], dtype=float)
        policy = np.asarray(expected, dtype=float)
        with self._lock:
            self.decisions += 1
            self._realised_total += realised
            self._policy_total += policy
            self._window.append((realised, policy, model_version))
            if len(self._window) == self.report_every:
                self._write(self._line(self._window))
                self._window = []

    def _line(self, window: list[tuple[np.ndarray, np.ndarray, int]]) -> str:
        realised = np.mean([row[0] for row in window], axis=0)
        policy = np.mean([row[1] for row in window], axis=0)
        return _row((
            str(self.decisions), *(f"{value:.4f}" for value in realised),
            f"{realised @ self._weights:.4f}", f"{policy @ self._weights:.4f}",
            f"{scalarise(self.uniform, self.weights):.4f}",
            f"{scalarise(self.oracle, self.weights):.4f}",
            str(max(row[2] for row in window)), f"{time.monotonic() - self._started:.1f}",
        ))

    def realised_mean(self) -> dict[str, float]:
        """Mean drawn outcome per objective over every decision so far."""
        return self._mean(self._realised_total)

    def policy_mean(self) -> dict[str, float]:
        """Mean exact expected outcome of the served PMFs over every decision so far."""
        return self._mean(self._policy_total)

    def _mean(self, total: np.ndarray) -> dict[str, float]:
        with self._lock:
            values = total / self.decisions if self.decisions else np.full(len(OBJECTIVES), np.nan)
        return {name: float(value) for name, value in zip(OBJECTIVES, values)}

    def summary_table(self) -> list[str]:
        """Per objective and scalarised: served (realised and exact), uniform, oracle."""
        rows = [("served", self.realised_mean()), ("policy", self.policy_mean()),
                ("uniform", self.uniform), ("oracle", self.oracle)]
        lines = ["".ljust(8) + "".join(name.rjust(12) for name in (*OBJECTIVES, "reward"))]
        for label, values in rows:
            cells = [values[name] for name in OBJECTIVES] + [scalarise(values, self.weights)]
            lines.append(label.ljust(8) + "".join(f"{cell:12.4f}" for cell in cells))
        return lines


def describe_world(world: World, weights: Mapping[str, float]) -> list[str]:
    """A few lines on the world: segments, their share, and their best offer under ``weights``."""
    best = world.best_offers(weights)
    lines = [f"world: {len(world.segments)} segments, {len(world.offers)} offers; "
             f"weights {', '.join(f'{k}={v:g}' for k, v in weights.items())}"]
    for segment, offer in zip(world.segments, best):
        user = segment.features
        lines.append(f"  {segment.name}  {segment.probability:5.1%}  {user['country']} {user['device']} "
                     f"{user['age_band']}: best {offer}")
    return lines


def describe_slate_world(world: SlateWorld, weights: Mapping[str, float]) -> list[str]:
    """A few lines on a page: its slots and their examination, the segments, their share, and
    their best slate under ``weights``."""
    slots = ", ".join(f"{slot.id} (examined {slot.examination:.0%})" for slot in world.slots)
    if world.kind == "ccb":
        pool = f"a shared pool of {len(world.offers)} offers"
    else:
        pool = f"{len(world.slot_offers[0])} offers per slot"
    lines = [f"world: a {world.kind} page, slots {slots}; {pool}; {len(world.segments)} segments; "
             f"weights {', '.join(f'{k}={v:g}' for k, v in weights.items())}"]
    for segment, slate in zip(world.segments, world.best_slates(weights)):
        user = segment.features
        lines.append(f"  {segment.name}  {segment.probability:5.1%}  {user['country']} "
                     f"{user['device']} {user['age_band']}: best {' '.join(slate)}")
    return lines
