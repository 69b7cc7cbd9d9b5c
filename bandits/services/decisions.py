"""Choose, reward, activate, look up: the decision service without HTTP."""

from __future__ import annotations

import math
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from bandits.schemas import ChooseRequest, RewardRequest
from bandits.errors import ApiError, bad_request, conflict, not_found, unprocessable
from bandits.learning.features import FeatureError, action_line, shared_line
from bandits.learning.sampling import normalise, sample, seed_for
from bandits.services.group_commit import GroupCommitter
from bandits.services.runtime import LoopRuntime
from bandits.store import decisions as store
from bandits.store.db import Database, iso, utcnow
from bandits.store.decisions import DecisionRow


class DecisionService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._writer = store.DecisionWriter(db.engine)
        self._committer: GroupCommitter[DecisionRow, bool] = GroupCommitter(self._writer.write)

    def close(self) -> None:
        self._writer.close()

    # -- choose -------------------------------------------------------------------------------

    def choose(self, loop: LoopRuntime, request: ChooseRequest) -> dict[str, Any]:
        ids = self._validate_choose(loop, request)
        shared, lines = _featurise(request)
        excluded = set(request.excluded)
        baseline = request.baseline if request.baseline is not None else _first_allowed(ids, excluded)
        event_id = request.event_id if request.event_id is not None else uuid.uuid4().hex
        pmf = self._pmf(loop, shared, lines, ids, excluded, baseline)
        seed = seed_for(loop.loop_id, event_id)
        chosen = sample(pmf, seed)
        row = DecisionRow(
            loop_id=loop.loop_id, event_id=event_id, ts=utcnow(), context=request.context,
            actions=[{"id": action.id, "features": action.features} for action in request.actions],
            excluded=request.excluded,
            baseline=baseline, chosen=ids[chosen], probability=pmf[chosen], pmf=pmf,
            model_version=loop.policy.model_version, config_version=loop.config_version,
            learning_mode=loop.config.learning_mode, seed=seed, deferred=request.defer,
        )
        try:
            written = self._committer.submit(row)
        except Exception as exc:
            raise ApiError(503, "StoreUnavailable", "the decision could not be logged; retry") from exc
        if not written:
            raise conflict(
                "DuplicateEvent", f"event_id {event_id!r} was already used in this loop", "event_id"
            )
        ranking = sorted(
            ({"id": action_id, "probability": p} for action_id, p in zip(ids, pmf)),
            key=lambda item: -item["probability"],
        )
        return {
            "event_id": event_id, "action": ids[chosen], "probability": pmf[chosen],
            "model_version": loop.policy.model_version, "ranking": ranking,
        }

    def _validate_choose(self, loop: LoopRuntime, request: ChooseRequest) -> list[str]:
        if len(request.actions) > loop.config.max_actions:
            raise unprocessable(
                "TooManyActions",
                f"{len(request.actions)} actions given; this loop allows at most {loop.config.max_actions}",
                "actions",
            )
        if request.event_id is not None and "\x00" in request.event_id:
            raise bad_request("InvalidChooseRequest", "event_id contains a NUL character", "event_id")
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
        if request.slot is not None and loop.config.kind == "cb":
            raise unprocessable("NoSlots", "a `cb` loop has no slots; leave `slot` out", "slot")
        now = utcnow()
        with self._db.session() as session:
            decision = store.get_decision(loop.loop_id, event_id, session=session)
            if decision is None:
                raise _event_not_found(event_id)
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
        return {
            "event_id": decision.event_id, "ts": iso(decision.ts),
            "context": decision.context, "actions": decision.actions, "excluded": decision.excluded,
            "baseline": decision.baseline, "action": decision.chosen,
            "probability": decision.probability, "pmf": decision.pmf,
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


def _featurise(request: ChooseRequest) -> tuple[str | None, list[str]]:
    """VW text of the context and of every action (excluded ones too: all are logged and learned
    from later), validating every feature value in the same walk."""
    root = "context"
    try:
        shared = shared_line(request.context)
        lines = []
        for index, action in enumerate(request.actions):
            root = f"actions[{index}]"
            lines.append(action_line(action.id, action.features))
    except FeatureError as error:
        raise bad_request("InvalidChooseRequest", error.message(root), error.path(root)) from None
    return shared, lines


def _first_allowed(ids: list[str], excluded: set[str]) -> str:
    return next(action_id for action_id in ids if action_id not in excluded)


def _event_not_found(event_id: str) -> ApiError:
    return not_found("EventNotFound", f"no decision with event_id {event_id!r} in this loop", "event_id")
