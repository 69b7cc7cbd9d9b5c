"""From outcomes to the number VW learns: aggregation per objective, defaults, weights, cost.

Outcomes are logged raw; these functions turn them into a scalar reward with the loop's current
weights, so weights can change without losing data. ``cost`` is the one place where the sign
flips: VW minimises cost, we maximise reward.

>>> config = LoopConfig(objectives=[{"name": "click", "aggregation": "max"},
...                                 {"name": "revenue", "weight": 0.1, "default": 0.0}])
>>> scalar_reward(config, [("click", 1.0), ("revenue", 20.0), ("click", 1.0), ("revenue", 5.0)])
3.5
>>> cost(3.5)
-3.5
"""

from __future__ import annotations

from collections.abc import Iterable

from bandits.loop_config import LoopConfig


def aggregate(values: list[float], aggregation: str) -> float:
    """Combine the outcomes of one objective, given in arrival order."""
    if aggregation == "sum":
        return float(sum(values))
    if aggregation == "earliest":
        return values[0]
    if aggregation == "last":
        return values[-1]
    if aggregation == "max":
        return max(values)
    raise ValueError(f"unknown aggregation {aggregation!r}")


def objective_values(config: LoopConfig, outcomes: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Each objective's aggregated value (its default when no outcome came), in config order.

    ``outcomes`` are (objective, value) pairs in arrival order; objectives the loop no longer has
    are ignored.
    """
    seen: dict[str, list[float]] = {}
    for objective, value in outcomes:
        seen.setdefault(objective, []).append(value)
    return {
        o.name: aggregate(seen[o.name], o.aggregation) if o.name in seen else o.default
        for o in config.objectives
    }


def scalar_reward(config: LoopConfig, outcomes: Iterable[tuple[str, float]]) -> float:
    """Σ weight × aggregated value over the loop's objectives."""
    values = objective_values(config, outcomes)
    return float(sum(o.weight * values[o.name] for o in config.objectives))


def cost(reward: float) -> float:
    """VW's cost for a reward, and a reward for VW's cost (predicted costs): the one place
    where the sign flips."""
    return -reward


def complete_early(config: LoopConfig) -> bool:
    """True when a decision can be learned as soon as every objective has an outcome: with
    ``earliest`` everywhere, no later outcome can change what is learned."""
    return all(o.aggregation == "earliest" for o in config.objectives)
