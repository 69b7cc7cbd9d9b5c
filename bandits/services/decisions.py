"""Choose, reward, activate, look up: the decision service without HTTP."""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from bandits.schemas import ChooseRequest, RewardRequest
from bandits.errors import ApiError, bad_request, conflict, not_found, unprocessable
from bandits.learning.examples import (
    SlotExample, ccb_actions_text, ccb_text, slates_text, slot_pmfs,
)
from bandits.learning.features import FeatureError, action_line, namespaces_text, shared_example
from bandits.learning.sampling import normalise, sample, seed_for
from bandits.services.group_commit import GroupCommitter
from bandits.services.pools import ActionPools, Pool, logged_actions
from bandits.services.slots import SlotPlans, ccb_slots, featurise_slots, slates_slots
from bandits.services.runtime import LoopRuntime
from bandits.store import decisions as store
from bandits.store.db import Database, iso, utcnow
from bandits.store.decisions import DecisionRow


class DecisionService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._writer = store.DecisionWriter(db.engine)
        self._committer: GroupCommitter[DecisionRow, bool] = GroupCommitter(self._writer.write)
        self.pools = ActionPools()
        self.slot_plans = SlotPlans()

    def close(self) -> None:
        self._writer.close()

    # -- choose -------------------------------------------------------------------------------

    def choose(
        self, loop: LoopRuntime, request: ChooseRequest, pool: Pool | None = None
    ) -> dict[str, Any]:
        """The decision for ``request``; ``pool``, when given, is its actions' (see
        bandits.services.pools): the same decision, with the actions' work already done."""
        if loop.config.kind != "cb":
            return self._choose_slots(loop, request, pool)
        ids = self._validate_choose(loop, request, pool)
        context, lines = _featurise(request, pool)
        shared = shared_example(context)
        excluded = set(request.excluded)
        baseline = request.baseline if request.baseline is not None else _first_allowed(ids, excluded)
        event_id = request.event_id if request.event_id is not None else new_event_id()
        pmf = self._pmf(loop, shared, lines, ids, excluded, baseline)
        seed = seed_for(loop.loop_id, event_id)
        chosen = sample(pmf, seed)
        row = DecisionRow(
            loop_id=loop.loop_id, event_id=event_id, ts=utcnow(), context=request.context,
            actions=pool.logged if pool is not None else logged_actions(request.actions),
            excluded=request.excluded,
            baseline=baseline, chosen=ids[chosen], probability=pmf[chosen], pmf=pmf,
            model_version=loop.policy.model_version, config_version=loop.config_version,
            learning_mode=loop.config.learning_mode, seed=seed, deferred=request.defer,
            actions_pool=pool.digest if pool is not None else None,
        )
        self._log(row)
        return {
            "event_id": event_id, "action": ids[chosen], "probability": pmf[chosen],
            "model_version": loop.policy.model_version, "ranking": _ranking(ids, pmf),
        }

    def _choose_slots(
        self, loop: LoopRuntime, request: ChooseRequest, pool: Pool | None
    ) -> dict[str, Any]:
        """``ccb`` and ``slates``: fill the slots in order, each with VW's draw seeded by the event
        id and the slot's position; log every slot's choice, probability and distribution."""
        kind = loop.config.kind
        ids, positions = self._validate_pool(loop, request, pool)
        slots = request.slots
        if request.excluded or request.baseline is not None:
            field = "excluded" if request.excluded else "baseline"
            raise bad_request(
                "InvalidChooseRequest",
                f"`{field}` is for cb loops; in a {kind} loop each slot has its own", field,
            )
        if not slots:
            raise bad_request(
                "InvalidChooseRequest", f"a {kind} loop fills slots: give `slots`, in order", "slots"
            )
        key = self.slot_plans.key(kind, pool, slots)
        plan = self.slot_plans.get(key)
        if plan is None:
            allowed, candidates = (ccb_slots if kind == "ccb" else slates_slots)(request, positions)
            shared, lines = _featurise(request, pool)
            slot_lines = featurise_slots(slots)
            self.slot_plans.keep(key, (allowed, candidates, slot_lines))
        else:
            allowed, candidates, slot_lines = plan
            shared, lines = _featurise(request, pool)
        event_id = request.event_id if request.event_id is not None else new_event_id()
        seed = seed_for(loop.loop_id, event_id)
        if loop.config.learning_mode == "apprentice":
            # Apprentice serves what the product would have shown, with certainty.
            chosen = []
            for slot in slots:
                baseline = positions[slot.baseline]
                chosen.append((baseline, [1.0 if i == baseline else 0.0 for i in range(len(ids))]))
        else:
            examples = [
                SlotExample(line, allowed[k], seed=f"{seed}.{k}") for k, line in enumerate(slot_lines)
            ]
            if kind == "ccb" and pool is not None:  # VW's parse of the pool's lines is kept
                scores = loop.policy.predict_ccb(
                    pool.serial, lambda: ccb_actions_text(lines), ccb_text(shared, [], examples)
                )
            else:
                text = (ccb_text if kind == "ccb" else slates_text)(shared, lines, examples)
                scores = loop.policy.predict_slots(text)
            chosen = slot_pmfs(kind, examples, scores, len(ids))
        logged = [
            {"id": slot.id, "features": slot.features, "baseline": slot.baseline,
             "excluded": slot.excluded, "chosen": ids[position], "probability": pmf[position], "pmf": pmf}
            for slot, (position, pmf) in zip(slots, chosen)
        ]
        first = logged[0]
        row = DecisionRow(
            loop_id=loop.loop_id, event_id=event_id, ts=utcnow(), context=request.context,
            actions=pool.logged if pool is not None else logged_actions(request.actions),
            excluded=[], baseline=first["baseline"], chosen=first["chosen"],
            probability=first["probability"], pmf=first["pmf"],
            model_version=loop.policy.model_version, config_version=loop.config_version,
            learning_mode=loop.config.learning_mode, seed=seed, deferred=request.defer, slots=logged,
            actions_pool=pool.digest if pool is not None else None,
        )
        self._log(row)
        replies = []
        for slot, own in zip(logged, candidates):
            replies.append({
                "id": slot["id"], "action": slot["chosen"], "probability": slot["probability"],
                "ranking": _ranking(ids, slot["pmf"], own),
            })
        return {"event_id": event_id, "model_version": loop.policy.model_version, "slots": replies}

    def _log(self, row: DecisionRow) -> None:
        """Commit the decision (group commit) before anything is replied."""
        try:
            written = self._committer.submit(row)
        except Exception as exc:
            raise ApiError(503, "StoreUnavailable", "the decision could not be logged; retry") from exc
        if not written:
            raise conflict(
                "DuplicateEvent", f"event_id {row.event_id!r} was already used in this loop", "event_id"
            )

    def _validate_pool(
        self, loop: LoopRuntime, request: ChooseRequest, pool: Pool | None
    ) -> tuple[list[str], dict[str, int]]:
        """Checks every kind shares: the pool's size, unique action ids, the event id. Returns
        the ids in order and each id's position."""
        if len(request.actions) > loop.config.max_actions:
            raise unprocessable(
                "TooManyActions",
                f"{len(request.actions)} actions given; this loop allows at most {loop.config.max_actions}",
                "actions",
            )
        if request.event_id is not None and "\x00" in request.event_id:
            raise bad_request("InvalidChooseRequest", "event_id contains a NUL character", "event_id")
        if pool is not None:  # its ids are known to be unique
            return pool.ids, pool.positions
        ids: list[str] = []
        positions: dict[str, int] = {}
        for index, action in enumerate(request.actions):
            if action.id in positions:
                raise bad_request(
                    "InvalidChooseRequest",
                    f"actions[{index}].id {action.id!r} repeats actions[{positions[action.id]}].id",
                    f"actions[{index}].id",
                )
            positions[action.id] = index
            ids.append(action.id)
        return ids, positions

    def _validate_choose(
        self, loop: LoopRuntime, request: ChooseRequest, pool: Pool | None
    ) -> list[str]:
        ids, positions = self._validate_pool(loop, request, pool)
        if request.slots is not None:
            raise bad_request(
                "InvalidChooseRequest", "`slots` are for ccb and slates loops; this loop is cb", "slots"
            )
        for index, action in enumerate(request.actions):
            if action.slot is not None:
                raise bad_request(
                    "InvalidChooseRequest", f"actions[{index}].slot is for slates loops; this loop is cb",
                    f"actions[{index}].slot",
                )
        for index, action_id in enumerate(request.excluded):
            if action_id not in positions:
                raise bad_request(
                    "InvalidChooseRequest", f"excluded[{index}] {action_id!r} is not among the actions",
                    f"excluded[{index}]",
                )
        if len(set(request.excluded)) >= len(ids):
            raise bad_request("InvalidChooseRequest", "every action is excluded", "excluded")
        if request.baseline is not None:
            if request.baseline not in positions:
                raise bad_request(
                    "InvalidChooseRequest", f"baseline {request.baseline!r} is not among the actions",
                    "baseline",
                )
            if request.baseline in request.excluded:
                raise bad_request(
                    "InvalidChooseRequest", f"baseline {request.baseline!r} is excluded", "baseline"
                )
        return ids

    def _pmf(
        self, loop: LoopRuntime, shared: str | None, lines: list[str], ids: list[str],
        excluded: set[str], baseline: str,
    ) -> list[float]:
        if loop.config.learning_mode == "apprentice":
            # Apprentice serves what the product would have shown, with certainty.
            return [1.0 if action_id == baseline else 0.0 for action_id in ids]
        allowed = [i for i, action_id in enumerate(ids) if action_id not in excluded]
        model_pmf = loop.policy.predict(shared, [lines[i] for i in allowed])
        pmf = [0.0] * len(ids)
        for position, probability in zip(allowed, normalise(model_pmf)):
            pmf[position] = probability
        return pmf

    # -- rewards, activation, look-up ---------------------------------------------------------

    def reward(self, loop: LoopRuntime, event_id: str, request: RewardRequest) -> dict[str, Any]:
        values: dict[str, float] = {}
        for name, value in request.rewards.items():
            if loop.config.objective(name) is None:
                known = ", ".join(o.name for o in loop.config.objectives)
                raise unprocessable(
                    "UnknownObjective", f"objective {name!r} is not configured for this loop (known: {known})",
                    f"rewards.{name}",
                )
            number = float(value)
            if not math.isfinite(number):
                raise bad_request("InvalidRewardRequest", f"rewards.{name} is not finite", f"rewards.{name}")
            values[name] = number
        kind = loop.config.kind
        if request.slot is not None and kind != "ccb":
            raise unprocessable(
                "NoSlots",
                "a cb loop has no slots; leave `slot` out" if kind == "cb" else
                "a slates loop takes one reward for the whole slate; leave `slot` out", "slot",
            )
        if request.slot is None and kind == "ccb":
            raise unprocessable(
                "SlotRequired", "a ccb loop takes rewards per slot: say which in `slot`", "slot"
            )
        now = utcnow()
        with self._db.session() as session:
            decision = store.get_decision(loop.loop_id, event_id, session=session)
            if decision is None:
                raise _event_not_found(event_id)
            if request.slot is not None:
                slot_ids = [slot["id"] for slot in decision.slots or []]
                if request.slot not in slot_ids:
                    raise unprocessable(
                        "UnknownSlot",
                        f"slot {request.slot!r} is not among this decision's slots ({', '.join(slot_ids)})",
                        "slot",
                    )
            if request.reward_id is not None and store.reward_id_seen(
                loop.loop_id, event_id, request.reward_id, session=session
            ):
                return {"event_id": event_id, "accepted": 0, "duplicate": True, "late": False}
            late = store.is_late(decision, loop.config.reward_wait, now)
            store.add_outcomes(
                loop.loop_id, event_id, values, request.slot, request.reward_id, now, late,
                session=session,
            )
            try:
                session.flush()
            except IntegrityError:  # the same reward_id raced in from another request
                session.rollback()
                return {"event_id": event_id, "accepted": 0, "duplicate": True, "late": False}
        return {"event_id": event_id, "accepted": len(values), "duplicate": False, "late": late}

    def activate(self, loop: LoopRuntime, event_id: str) -> dict[str, Any]:
        with self._db.session() as session:
            decision = store.get_decision(loop.loop_id, event_id, session=session)
            if decision is None:
                raise _event_not_found(event_id)
            if not decision.deferred:
                raise conflict("NotDeferred", f"event {event_id!r} was not deferred", "event_id")
            activated = store.activate(decision, utcnow())
        return {"event_id": event_id, "activated": activated}

    def event(self, loop: LoopRuntime, event_id: str) -> dict[str, Any]:
        with self._db.session() as session:
            decision = store.get_decision(loop.loop_id, event_id, session=session)
            if decision is None:
                raise _event_not_found(event_id)
            outcomes = store.outcomes_for(loop.loop_id, event_id, session=session)
            actions = store.logged_actions_of(decision, session=session)
        return {
            "event_id": decision.event_id, "ts": iso(decision.ts),
            "context": decision.context,
            "actions": actions,
            "excluded": decision.excluded,
            "baseline": decision.baseline, "action": decision.chosen,
            "probability": decision.probability, "pmf": decision.pmf, "slots": decision.slots,
            "model_version": decision.model_version, "config_version": decision.config_version,
            "learning_mode": decision.learning_mode, "deferred": decision.deferred,
            "activated_at": iso(decision.activated_at),
            "learned_at": iso(decision.learned_at), "learned_version": decision.learned_version,
            "outcomes": [
                {"objective": o.objective, "value": o.value, "slot": o.slot, "reward_id": o.reward_id,
                 "ts": iso(o.ts), "late": o.late}
                for o in outcomes
            ],
        }


def _featurise(request: ChooseRequest, pool: Pool | None) -> tuple[str, list[str]]:
    """VW text of the context's namespaces and of every action (excluded ones too: all are logged
    and learned from later), validating every feature value in the same walk."""
    root = "context"
    try:
        context = namespaces_text(request.context)
        if pool is not None:
            return context, pool.lines
        lines = []
        for index, action in enumerate(request.actions):
            root = f"actions[{index}]"
            lines.append(action_line(action.id, action.features))
    except FeatureError as error:
        raise bad_request("InvalidChooseRequest", error.message(root), error.path(root)) from None
    return context, lines


def _ranking(
    ids: list[str], pmf: list[float], candidates: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Every candidate (positions in ``ids``; all of them by default) with its probability, most
    probable first; ties keep the candidates' order (the sort is stable, reversed or not)."""
    order = sorted(
        range(len(pmf)) if candidates is None else candidates, key=pmf.__getitem__, reverse=True
    )
    return [{"id": ids[i], "probability": pmf[i]} for i in order]


def new_event_id() -> str:
    """An event id for a request that brought none: 32 random hex digits (as uuid4().hex, for a
    third of its CPU)."""
    return secrets.token_hex(16)


def _first_allowed(ids: list[str], excluded: set[str]) -> str:
    return next(action_id for action_id in ids if action_id not in excluded)


def _event_not_found(event_id: str) -> ApiError:
    return not_found("EventNotFound", f"no decision with event_id {event_id!r} in this loop", "event_id")
