"""Logged decisions as DSJSON, the line format ``vw --dsjson`` reads (one JSON object a line).

Features come from the service's one featuriser (:mod:`bandits.learning.features`): its VW text
is read back into JSON namespaces whose keys are the very feature names it wrote
(``{"user": {"country=AR": 1, "age": 31}}``). VW's JSON parser hashes a number-valued key
exactly as its text parser hashes ``name:value``, so a model learned from the export sees the
features the trainer learns from. One difference: VW's JSON parser ignores keys starting with
``_``, so the id namespaces ``_action`` and ``_slot`` are written as ``action`` and ``slot``
(interactions naming ``_`` in ``vw_args`` must name ``a``/``s`` instead when replaying).

Costs are :func:`bandits.learning.rewards.cost` of :func:`~bandits.learning.rewards.scalar_reward`
with the loop's current weights, the same numbers the trainer learns, per slot for ``ccb``.
The layout of each kind follows VW's DS parser (``parse_example_json.cc``) and slates parser
(``parse_example_slates_json.cc``); see docs/export.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from bandits.learning.examples import SLOT_NAMESPACE, slot_line
from bandits.learning.features import ACTION_NAMESPACE, action_line, namespaces_text
from bandits.learning.rewards import cost, scalar_reward
from bandits.loop_config import LoopConfig
from bandits.store.db import as_utc
from bandits.store.jobs import LoggedEvent

# VW's JSON parser skips keys that start with "_" (inside `c`, `_multi` and `_slots`).
JSON_NAMESPACES = {ACTION_NAMESPACE: ACTION_NAMESPACE.lstrip("_"), SLOT_NAMESPACE: SLOT_NAMESPACE.lstrip("_")}


def json_namespaces(text: str) -> dict[str, dict[str, float]]:
    """The featuriser's ``|ns name name:value ...`` text as ``{ns: {name: value}}``.

    Names are already escaped (no spaces, ``|`` nor ``:``), so the text splits plainly. A name
    repeated in a namespace (a list holding a value twice) is one key whose values add up.

    >>> json_namespaces("|user country=AR age:31 |_action id=a1")
    {'user': {'country=AR': 1, 'age': 31}, 'action': {'id=a1': 1}}
    """
    namespaces: dict[str, dict[str, float]] = {}
    features: dict[str, float] = {}
    for token in text.split():
        if token.startswith("|"):
            name = token[1:]
            features = namespaces.setdefault(JSON_NAMESPACES.get(name, name), {})
            continue
        name, _, value = token.partition(":")
        number = _number(value) if value else 1
        features[name] = features.get(name, 0) + number
    return namespaces


def _number(text: str) -> float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ss.ffffffZ`` in UTC, as DSJSON writers spell it."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _raw(outcomes: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"objective": objective, "v": value} for objective, value in outcomes]


def _ranked(chosen: int, candidates: list[int]) -> list[int]:
    """The chosen position first, then the others in their order (DSJSON's ``a`` / ``_a``)."""
    return [chosen] + [position for position in candidates if position != chosen]


def _head(event: LoggedEvent) -> dict[str, Any]:
    head: dict[str, Any] = {"Version": "1", "EventId": event.event_id, "Timestamp": timestamp(event.ts)}
    if event.model_version is not None:
        head["VWState"] = {"m": str(event.model_version)}
    if event.unactivated:
        head["_skipLearn"] = True
    return head


def cb_line(config: LoopConfig, event: LoggedEvent) -> dict[str, Any]:
    """A ``cb`` decision: the actions offered (the excluded ones, probability 0, are left out as
    the trainer leaves them out), ``a``/``p`` the 1-based ranking and its probabilities."""
    excluded = set(event.excluded)
    offered = [i for i, action in enumerate(event.actions) if action["id"] not in excluded]
    ids = [event.actions[i]["id"] for i in offered]
    chosen = ids.index(event.chosen)
    ranking = _ranked(chosen, list(range(len(offered))))
    label_cost = cost(scalar_reward(config, event.outcomes))
    line = _head(event)
    line.update({
        "_label_cost": label_cost, "_label_probability": event.probability,
        "_label_Action": chosen + 1, "_labelIndex": chosen,
        "a": [index + 1 for index in ranking], "p": [event.pmf[offered[index]] for index in ranking],
        "o": _raw(event.outcomes), "_original_label_cost": label_cost,
        "c": {**json_namespaces(namespaces_text(event.context)),
              "_multi": [_action(event.actions[i]) for i in offered]},
    })
    return line


def _action(action: dict[str, Any]) -> dict[str, Any]:
    return json_namespaces(action_line(action["id"], action.get("features")))


def _slot(slot: dict[str, Any]) -> dict[str, Any]:
    return {"_id": slot["id"], **json_namespaces(slot_line(slot["id"], slot.get("features")))}


def ccb_line(config: LoopConfig, event: LoggedEvent) -> dict[str, Any]:
    """A ``ccb`` decision: the whole pool in ``_multi``; per slot its features in ``_slots``
    (``_inc``: the pool positions it may take, when it excludes some) and its label in
    ``_outcomes`` (``_a``: 0-based pool positions, the chosen first, then the others its
    logged PMF gives a chance; ``_p`` their probabilities; its own cost)."""
    ids = [action["id"] for action in event.actions]
    slots, outcomes = [], []
    slot_outcomes = event.slot_outcomes or {}
    for logged in event.slots or []:
        slot = _slot(logged)
        excluded = set(logged.get("excluded") or [])
        if excluded:
            slot["_inc"] = [i for i, action_id in enumerate(ids) if action_id not in excluded]
        slots.append(slot)
        pmf = logged["pmf"]
        chosen = ids.index(logged["chosen"])
        ranking = _ranked(chosen, [i for i, p in enumerate(pmf) if p > 0])
        raw = slot_outcomes.get(logged["id"], [])
        slot_cost = cost(scalar_reward(config, raw))
        outcomes.append({
            "_id": logged["id"], "_label_cost": slot_cost, "_a": ranking,
            "_p": [pmf[i] if i != chosen else logged["probability"] for i in ranking],
            "_o": _raw(raw), "_original_label_cost": slot_cost,
        })
    line = _head(event)
    line.update({
        "c": {**json_namespaces(namespaces_text(event.context)),
              "_multi": [_action(action) for action in event.actions], "_slots": slots},
        "_outcomes": outcomes,
    })
    return line


def slates_line(config: LoopConfig, event: LoggedEvent) -> dict[str, Any]:
    """A ``slates`` decision: one cost for the slate; ``_multi`` lists each slot's actions (its
    own, less its exclusions, as the trainer writes them) with ``_slot_id``, slot by slot;
    ``_outcomes[k]``: ``_a`` indices among slot ``k``'s actions, the chosen first, ``_p`` their
    probabilities."""
    multi, slots, outcomes = [], [], []
    for k, logged in enumerate(event.slots or []):
        excluded = set(logged.get("excluded") or [])
        own = [i for i, action in enumerate(event.actions)
               if action.get("slot") == logged["id"] and action["id"] not in excluded]
        multi.extend({"_slot_id": k, **_action(event.actions[i])} for i in own)
        slots.append(_slot(logged))
        chosen = [event.actions[i]["id"] for i in own].index(logged["chosen"])
        ranking = _ranked(chosen, list(range(len(own))))
        outcomes.append({
            "_a": ranking,
            "_p": [logged["pmf"][own[j]] if j != chosen else logged["probability"] for j in ranking],
        })
    label_cost = cost(scalar_reward(config, event.outcomes))
    line = _head(event)
    line.update({
        "_label_cost": label_cost, "_original_label_cost": label_cost, "o": _raw(event.outcomes),
        "c": {**json_namespaces(namespaces_text(event.context)), "_multi": multi, "_slots": slots},
        "_outcomes": outcomes,
    })
    return line


LINES = {"cb": cb_line, "ccb": ccb_line, "slates": slates_line}


def dsjson_lines(config: LoopConfig, events: list[LoggedEvent]) -> bytes:
    """A page of decisions as DSJSON lines (each ending with a newline)."""
    line = LINES[config.kind]
    return b"".join(orjson.dumps(line(config, event)) + b"\n" for event in events)
