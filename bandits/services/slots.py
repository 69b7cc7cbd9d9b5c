"""Checking and featurising the slots of a ccb or slates choose request."""

from __future__ import annotations

from typing import Any

import msgspec

from bandits.errors import ApiError, bad_request, unprocessable
from bandits.learning.examples import slot_line
from bandits.learning.features import FeatureError
from bandits.schemas import ChooseRequest, SlotIn


def featurise_slots(slots: list[SlotIn]) -> list[str]:
    """Each slot's VW line (its id and features), validating the features as it goes."""
    lines = []
    for index, slot in enumerate(slots):
        try:
            lines.append(slot_line(slot.id, slot.features))
        except FeatureError as error:
            root = f"slots[{index}]"
            raise bad_request("InvalidChooseRequest", error.message(root), error.path(root)) from None
    return lines


def _unique_slot_ids(slots: list[SlotIn]) -> None:
    seen: dict[str, int] = {}
    for index, slot in enumerate(slots):
        if slot.id in seen:
            raise bad_request(
                "InvalidChooseRequest", f"slots[{index}].id {slot.id!r} repeats slots[{seen[slot.id]}].id",
                f"slots[{index}].id",
            )
        seen[slot.id] = index


def _invalid(message: str, target: str) -> ApiError:
    return bad_request("InvalidChooseRequest", message, target)


def ccb_slots(
    request: ChooseRequest, positions: dict[str, int]
) -> tuple[list[tuple[int, ...] | None], list[range]]:
    """``ccb``: per slot the pool positions it may take (``None``: any), and its candidates (the
    whole pool). Each slot's allowed actions must outnumber the slots before it, so that it
    always has one left whatever they took."""
    slots = request.slots or []
    actions = request.actions
    if len(slots) > len(actions):
        raise unprocessable(
            "TooFewActions",
            f"{len(slots)} slots but {len(actions)} actions: a ccb loop shows each action at most "
            "once, so it needs at least as many actions as slots", "slots",
        )
    for index, action in enumerate(actions):
        if action.slot is not None:
            raise _invalid(
                f"actions[{index}].slot is for slates loops; in a ccb loop every slot draws from "
                "the whole pool (use slots[].excluded to keep an action out of a slot)",
                f"actions[{index}].slot",
            )
    _unique_slot_ids(slots)
    allowed: list[tuple[int, ...] | None] = []
    baselines: dict[str, int] = {}
    for k, slot in enumerate(slots):
        for j, action_id in enumerate(slot.excluded):
            if action_id not in positions:
                raise _invalid(f"slots[{k}].excluded[{j}] {action_id!r} is not among the actions",
                               f"slots[{k}].excluded[{j}]")
        if slot.baseline not in positions:
            raise _invalid(f"slots[{k}].baseline {slot.baseline!r} is not among the actions",
                           f"slots[{k}].baseline")
        excluded = set(slot.excluded)
        if slot.baseline in excluded:
            raise _invalid(f"slots[{k}].baseline {slot.baseline!r} is excluded from that slot",
                           f"slots[{k}].baseline")
        if slot.baseline in baselines:
            raise _invalid(
                f"slots[{k}].baseline {slot.baseline!r} is already slots[{baselines[slot.baseline]}]'s "
                "baseline; a ccb slate shows each action once", f"slots[{k}].baseline",
            )
        baselines[slot.baseline] = k
        if not excluded:
            allowed.append(None)
            continue
        mine = tuple(i for i, action in enumerate(actions) if action.id not in excluded)
        if len(mine) <= k:
            raise _invalid(
                f"slots[{k}] may take {len(mine)} actions, and the {k} slots before it may take "
                f"them all: it needs at least {k + 1} it does not exclude", f"slots[{k}].excluded",
            )
        allowed.append(mine)
    return allowed, [range(len(actions))] * len(slots)


def slates_slots(
    request: ChooseRequest, positions: dict[str, int]
) -> tuple[list[tuple[int, ...]], list[list[int]]]:
    """``slates``: per slot the pool positions it may take (its actions less its exclusions),
    and its candidates (its actions)."""
    slots = request.slots or []
    _unique_slot_ids(slots)
    slot_of = {slot.id: k for k, slot in enumerate(slots)}
    own: list[list[int]] = [[] for _ in slots]
    for index, action in enumerate(request.actions):
        if action.slot is None:
            raise _invalid(
                f"actions[{index}].slot is required in a slates loop: name the slot this action fills",
                f"actions[{index}].slot",
            )
        if action.slot not in slot_of:
            raise _invalid(f"actions[{index}].slot {action.slot!r} is not among the slots",
                           f"actions[{index}].slot")
        own[slot_of[action.slot]].append(index)
    allowed: list[tuple[int, ...]] = []
    for k, slot in enumerate(slots):
        if not own[k]:
            raise _invalid(f"slots[{k}] {slot.id!r} has no actions: name it in some actions[].slot",
                           f"slots[{k}]")
        mine = {request.actions[i].id for i in own[k]}
        for j, action_id in enumerate(slot.excluded):
            if action_id not in mine:
                raise _invalid(f"slots[{k}].excluded[{j}] {action_id!r} is not among slot {slot.id!r}'s actions",
                               f"slots[{k}].excluded[{j}]")
        if slot.baseline not in mine:
            where = (
                f"belongs to slot {request.actions[positions[slot.baseline]].slot!r}, not to {slot.id!r}"
                if slot.baseline in positions else "is not among the actions"
            )
            raise _invalid(f"slots[{k}].baseline {slot.baseline!r} {where}", f"slots[{k}].baseline")
        if slot.baseline in slot.excluded:
            raise _invalid(f"slots[{k}].baseline {slot.baseline!r} is excluded from that slot",
                           f"slots[{k}].baseline")
        excluded = set(slot.excluded)
        allowed.append(tuple(i for i in own[k] if request.actions[i].id not in excluded))
    return allowed, own


SlotPlan = tuple[list[Any], list[Any], list[str]]  # allowed, candidates, slot lines


class SlotPlans:
    """What the slots of a request make with its pool, kept: the checks of ``ccb_slots`` or
    ``slates_slots`` (each slot's allowed actions and candidates) and the slots' VW lines. A page
    sends the same slots with the same actions again and again. Kept by (kind, pool, the slots'
    JSON) for requests whose actions are a pool (bandits.services.pools), and only once every
    check passed; slots whose JSON holds a null are not kept (msgspec writes NaN and infinities
    as null), so a request with a problem always meets the checks that word it."""

    def __init__(self, limit: int = 1024) -> None:
        self._plans: dict[Any, SlotPlan] = {}
        self._limit = limit

    def key(self, kind: str, pool: Any, slots: list[Any]) -> Any | None:
        if pool is None:
            return None
        encoded = msgspec.json.encode(slots)
        return None if b"null" in encoded else (kind, pool.serial, encoded)

    def get(self, key: Any | None) -> SlotPlan | None:
        return self._plans.get(key) if key is not None else None

    def keep(self, key: Any | None, plan: SlotPlan) -> None:
        if key is None:
            return
        if len(self._plans) >= self._limit:
            self._plans.clear()
        self._plans[key] = plan
