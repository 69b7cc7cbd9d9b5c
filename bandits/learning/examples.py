"""VW text for multi-slot decisions: ``ccb`` and ``slates`` examples, to predict and to learn.

The pieces come from :mod:`bandits.learning.features` (already escaped): the context's namespaces,
each action's line and each slot's line (its id in namespace ``_slot`` plus its own namespaces).

``ccb`` (VW ``--ccb_explore_adf``): one shared pool; slots are filled in order, and VW leaves out
of each slot the actions taken by the slots before it::

    ccb shared |user ...
    ccb action |_action id=a1 |offer ...          one line per action of the pool
    ccb slot 0:-1:0.5 0,2,3 'seed=77.0 |_slot id=hero ...
             label     the slot's allowed actions (its exclusions), left out when it may take any

``slates`` (VW ``--slates``): each action belongs to one slot, one cost for the whole slate::

    slates shared -1 |user ...
    slates action 0 |_action id=a1 ...            the slot's index, then the action
    slates slot 1:0.5 'seed=77.0 |_slot id=top ...

Action indices in ``ccb`` labels and predictions are positions in the pool; in ``slates`` they
are positions among the slot's own actions, in the order they appear. When predicting, the tag
``seed=...`` makes VW's draw for the slot a function of the seed: same event id, same draws, in
any process (each slot has its own seed, so the draws of a slate are independent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bandits.learning.features import identified_line
from bandits.learning.rewards import cost, scalar_reward
from bandits.learning.sampling import normalise
from bandits.loop_config import LoopConfig

SLOT_NAMESPACE = "_slot"


def slot_line(slot_id: str, features: dict | None) -> str:
    """A slot's features: its id (namespace ``_slot``) plus its own namespaces."""
    return identified_line(SLOT_NAMESPACE, slot_id, features)


@dataclass(slots=True)  # not frozen: a frozen dataclass takes 3 times as long to make
class SlotExample:
    """One slot of an example.

    ``allowed``: the pool positions the slot may take (``ccb``: ``None`` for all of them;
    ``slates``: its own actions, which must be given). ``seed`` (predicting) seeds VW's draw.
    ``chosen`` (a pool position), ``probability`` and, for ``ccb``, ``cost`` label it (learning).
    """

    line: str
    allowed: tuple[int, ...] | None = None
    seed: str | None = None
    chosen: int | None = None
    probability: float | None = None
    cost: float | None = None


def _tag(slot: SlotExample) -> str:
    return f" 'seed={slot.seed}" if slot.seed is not None else ""


def ccb_text(shared: str, actions: list[str], slots: list[SlotExample]) -> str:
    """A ``ccb`` example: ``shared`` is the context's namespaces text (may be empty). With no
    ``actions``, the example less its action lines (bandits.learning.vw.Policy.predict_ccb)."""
    lines = [f"ccb shared {shared}" if shared else "ccb shared |"]
    if actions:
        lines.append(ccb_actions_text(actions))
    for slot in slots:
        label = ""
        if slot.chosen is not None:
            label = f" {slot.chosen}:{slot.cost!r}:{slot.probability!r}"
        includes = f" {','.join(map(str, slot.allowed))}" if slot.allowed is not None else ""
        lines.append(f"ccb slot{label}{includes}{_tag(slot)} {slot.line}")
    return "\n".join(lines)


def ccb_actions_text(actions: list[str]) -> str:
    """The action lines of a ``ccb`` example."""
    return "\n".join([f"ccb action {line}" for line in actions])


def slates_text(
    shared: str, actions: list[str], slots: list[SlotExample], cost: float | None = None
) -> str:
    """A ``slates`` example: each slot's ``allowed`` actions (pool positions) are written, in
    that order, as that slot's actions; ``cost`` is the whole slate's (learning)."""
    head = f"slates shared {cost!r}" if cost is not None else "slates shared"
    lines = [f"{head} {shared or '|'}"]
    for index, slot in enumerate(slots):
        assert slot.allowed is not None, "a slates slot lists its actions"
        lines.extend(f"slates action {index} {actions[position]}" for position in slot.allowed)
    for slot in slots:
        label = ""
        if slot.chosen is not None:
            assert slot.allowed is not None
            label = f" {slot.allowed.index(slot.chosen)}:{slot.probability!r}"
        lines.append(f"slates slot{label}{_tag(slot)} {slot.line}")
    return "\n".join(lines)


# Outcomes of a decision, (objective, value) pairs in arrival order, by slot id (None: the
# decision's own, a slates loop's slate reward).
SlotOutcomes = Mapping[str | None, Sequence[tuple[str, float]]]


def labelled_slots(config: LoopConfig, ids: list[str], action_slots: list[str | None],
                   slots: list[dict[str, Any]], outcomes: SlotOutcomes) -> list[SlotExample]:
    """A logged decision's slots (``decisions.slots``) labelled as the trainer learns them.

    ``ids`` and ``action_slots`` are the pool's action ids and (``slates``) the slot each action
    belongs to. Each slot keeps the actions it could take (``ccb``: the pool less its exclusions,
    ``None`` when it has none; ``slates``: its own actions less its exclusions), its logged
    action and probability and, on ``ccb``, the cost of its own outcomes (the objectives'
    defaults where none came)."""
    position = {action_id: index for index, action_id in enumerate(ids)}
    examples = []
    for slot in slots:
        excluded = set(slot.get("excluded") or ())
        if config.kind == "slates":
            allowed: tuple[int, ...] | None = tuple(
                i for i, action_id in enumerate(ids)
                if action_slots[i] == slot["id"] and action_id not in excluded
            )
            slot_cost = None
        else:
            allowed = tuple(i for i, a in enumerate(ids) if a not in excluded) if excluded else None
            slot_cost = cost(scalar_reward(config, outcomes.get(slot["id"], ())))
        examples.append(SlotExample(
            slot_line(slot["id"], slot.get("features")), allowed, chosen=position[slot["chosen"]],
            probability=slot["probability"], cost=slot_cost,
        ))
    return examples


def labelled_text(config: LoopConfig, shared: str, actions: list[str], slots: list[SlotExample],
                  outcomes: SlotOutcomes) -> str:
    """The example the trainer learns for :func:`labelled_slots`: ``ccb`` with each slot's own
    cost, ``slates`` with one cost for the slate (from the decision's outcomes)."""
    if config.kind == "ccb":
        return ccb_text(shared, actions, slots)
    return slates_text(shared, actions, slots, cost(scalar_reward(config, outcomes.get(None, ()))))


def slot_pmfs(
    kind: str, slots: list[SlotExample], scores: list[list[tuple[int, float]]], pool: int
) -> list[tuple[int, list[float]]]:
    """From VW's decision scores: per slot, (the pool position VW drew, the PMF over the pool,
    zero for every action the slot could not take)."""
    result = []
    for slot, slot_scores in zip(slots, scores):
        if not slot_scores:
            raise RuntimeError("VW left a slot without an action")
        pmf = [0.0] * pool
        indices, probabilities = zip(*slot_scores)
        positions = [slot.allowed[i] for i in indices] if kind == "slates" else indices  # type: ignore[index]
        for position, probability in zip(positions, normalise(probabilities)):
            pmf[position] = probability
        result.append((positions[0], pmf))
    return result
