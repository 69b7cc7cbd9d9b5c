"""Request and reply bodies (pydantic): validation and the OpenAPI document's schemas. The choose
body is checked by msgspec first (:func:`parse_choose`), against the same schema."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, ValidationError

from bandits.errors import ApiError
from bandits.loop_config import LOOP_NAME, LoopConfig

Id = Field(min_length=1, max_length=256)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionIn(_Body):
    id: str = Field(min_length=1, max_length=256, description="The action's id, unique in the request.")
    features: dict[str, Any] = Field(
        default_factory=dict, description="Namespaces of features (see docs/features.md)."
    )
    slot: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="`slates` loops only, and required there: the id of the slot this action may fill.",
    )


class SlotIn(_Body):
    id: str = Field(min_length=1, max_length=256, description="The slot's id, unique in the request.")
    features: dict[str, Any] = Field(
        default_factory=dict, description="Namespaces of the slot's own features (position, size...)."
    )
    baseline: str = Field(
        min_length=1, max_length=256,
        description="The action the product would show in this slot by default (apprentice mode "
        "serves it); in the pool (`ccb`) or among the slot's actions (`slates`).",
    )
    excluded: list[str] = Field(
        default_factory=list, description="Ids of actions this slot must not take (probability 0)."
    )


class ChooseRequest(_Body):
    event_id: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="Your id for this decision; generated when absent. Same id, same draw.",
    )
    context: dict[str, Any] = Field(default_factory=dict, description="Namespaces of context features.")
    actions: list[ActionIn] = Field(min_length=1, description="The candidates.")
    excluded: list[str] = Field(
        default_factory=list, description="Ids of actions that must not be chosen (probability 0)."
    )
    baseline: str | None = Field(
        default=None, description="The action the product would show by default (first action if absent)."
    )
    defer: StrictBool = Field(default=False, description="Learn only once activated.")
    slots: list[SlotIn] | None = Field(
        default=None, min_length=1, max_length=256,
        description="`ccb` and `slates` loops only, and required there: the slots to fill, in order. "
        "(`excluded` and `baseline` above are for `cb`; slots have their own.)",
    )


# The choose body once more, for msgspec: the same fields, types, defaults and limits as
# ChooseRequest, ActionIn and SlotIn (tests/test_schemas.py holds them to it). Under load pydantic's
# validation of a choose body took 7 % (cb) to 14 % (ccb) of the gunicorn workers' Python time;
# msgspec checks the same body in a quarter of it. It only accepts: a body it refuses is handed to
# pydantic, whose first problem is the error the client gets, worded as everywhere else.
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _ActionFast(msgspec.Struct, forbid_unknown_fields=True):
    id: _Text
    features: dict[str, Any] = {}
    slot: _Text | None = None


class _SlotFast(msgspec.Struct, forbid_unknown_fields=True):
    id: _Text
    baseline: _Text
    features: dict[str, Any] = {}
    excluded: list[str] = []


class _ChooseRestFast(msgspec.Struct, forbid_unknown_fields=True):
    """The choose body with its actions left as they came (bandits.services.pools checks them)."""

    actions: Any
    event_id: _Text | None = None
    context: dict[str, Any] = {}
    excluded: list[str] = []
    baseline: str | None = None
    defer: bool = False
    slots: Annotated[list[_SlotFast], msgspec.Meta(min_length=1, max_length=256)] | None = None


_ActionsFast = Annotated[list[_ActionFast], msgspec.Meta(min_length=1)]


class _ChooseFast(_ChooseRestFast):
    """The choose body, actions checked too."""

    actions: _ActionsFast


def choose_without_actions(body: Any) -> Any | None:
    """Every field of a choose body but ``actions`` checked as :class:`ChooseRequest` checks them
    (``actions`` is kept as it came); ``None`` when msgspec refuses one, for :func:`parse_choose`
    to word the error."""
    try:
        return msgspec.convert(body, _ChooseRestFast)
    except msgspec.ValidationError:
        return None


def choose_actions(actions: Any) -> list[Any] | None:
    """A choose body's ``actions`` checked as :class:`ChooseRequest` checks them, or ``None``."""
    try:
        return msgspec.convert(actions, _ActionsFast)
    except msgspec.ValidationError:
        return None


class _SlotRaw(msgspec.Struct, forbid_unknown_fields=True):
    id: _Text
    baseline: _Text
    features: msgspec.Raw = msgspec.Raw()
    excluded: list[str] = []


class _ChooseRaw(msgspec.Struct, forbid_unknown_fields=True):
    """The choose body read straight from its bytes: ``actions``, ``context`` and the slots'
    ``features`` are kept as JSON, for orjson to parse as the full path does (msgspec reads an
    integer beyond 64 bits exactly, orjson as a float)."""

    actions: msgspec.Raw
    event_id: _Text | None = None
    context: msgspec.Raw = msgspec.Raw()
    excluded: list[str] = []
    baseline: str | None = None
    defer: bool = False
    slots: Annotated[list[_SlotRaw], msgspec.Meta(min_length=1, max_length=256)] | None = None


_choose_raw = msgspec.json.Decoder(_ChooseRaw)


def _json_object(raw: msgspec.Raw) -> dict[str, Any]:
    """A JSON object kept raw (empty: the field was left out), parsed by orjson."""
    value = orjson.loads(memoryview(raw)) if len(raw) else {}
    if type(value) is not dict:
        raise ValueError("not an object")
    return value


def choose_raw(data: bytes) -> Any | None:
    """:func:`choose_without_actions` from the body's bytes, its ``actions`` left as the JSON
    that was sent (bytes); ``None`` when the body is not such a JSON object or a field is not
    as :class:`ChooseRequest` wants it (the full path then words the problem)."""
    try:
        raw = _choose_raw.decode(data)
        slots = None if raw.slots is None else [
            _SlotFast(id=slot.id, baseline=slot.baseline, features=_json_object(slot.features),
                      excluded=slot.excluded)
            for slot in raw.slots
        ]
        return _ChooseRestFast(
            actions=bytes(raw.actions), event_id=raw.event_id, context=_json_object(raw.context),
            excluded=raw.excluded, baseline=raw.baseline, defer=raw.defer, slots=slots,
        )
    except (msgspec.DecodeError, ValueError, RecursionError):  # orjson's errors are ValueErrors
        return None


def with_actions(rest: Any, actions: list[Any]) -> ChooseRequest:
    """The request :func:`parse_choose` would have made, from :func:`choose_without_actions`'
    fields and :func:`choose_actions`' actions."""
    return _ChooseFast(  # type: ignore[return-value]
        actions=actions, event_id=rest.event_id, context=rest.context, excluded=rest.excluded,
        baseline=rest.baseline, defer=rest.defer, slots=rest.slots,
    )


def parse_choose(body: Any, code: str) -> ChooseRequest:
    """A choose body (parsed JSON) checked as :class:`ChooseRequest`, with its attributes.

    Feature values are not walked here (the featuriser checks them as it writes them)."""
    try:
        return msgspec.convert(body, _ChooseFast)  # type: ignore[return-value]
    except msgspec.ValidationError:
        return parse(ChooseRequest, body, code, walk=False)


class RankedAction(BaseModel):
    id: str
    probability: float


class SlotReply(BaseModel):
    id: str
    action: str = Field(description="The action shown in this slot.")
    probability: float = Field(
        description="Its probability given the slots before it (the propensity to log)."
    )
    ranking: list[RankedAction] = Field(
        description="Every action the slot could have taken, most probable first (`ccb`: the whole "
        "pool, with probability 0 for actions taken by earlier slots or excluded)."
    )


class ChooseReply(BaseModel):
    event_id: str
    model_version: int
    action: str | None = Field(default=None, description="`cb`: the action chosen.")
    probability: float | None = Field(default=None, description="`cb`: its probability.")
    ranking: list[RankedAction] | None = Field(
        default=None, description="`cb`: every action, most probable first."
    )
    slots: list[SlotReply] | None = Field(
        default=None, description="`ccb` and `slates`: one entry per slot, in the request's order."
    )


class RewardRequest(_Body):
    # Strict: a string such as "yes" or "1" is a client mistake, not an outcome.
    rewards: dict[str, StrictFloat | StrictBool] = Field(
        min_length=1, description="Objective name → outcome value (booleans count as 1 and 0)."
    )
    slot: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="`ccb` loops only, and required there: the slot whose outcome this is.",
    )
    reward_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="Dedupe key: accepted once."
    )


class RewardReply(BaseModel):
    event_id: str
    accepted: int
    duplicate: bool
    late: bool = Field(description="Arrived after the reward window: stored, not learned.")


class ActivateReply(BaseModel):
    event_id: str
    activated: bool


class OutcomeOut(BaseModel):
    objective: str
    value: float
    slot: str | None
    reward_id: str | None
    ts: str
    late: bool


class EventReply(BaseModel):
    event_id: str
    ts: str
    context: dict[str, Any]
    actions: list[dict[str, Any]]
    excluded: list[str]
    baseline: str | None
    action: str = Field(description="The action chosen (`ccb`, `slates`: the first slot's).")
    probability: float = Field(description="Its probability (`ccb`, `slates`: the first slot's).")
    pmf: list[float] = Field(description="The distribution over `actions` (`ccb`, `slates`: the first slot's).")
    slots: list[dict[str, Any]] | None = Field(
        description="`ccb`, `slates`: per slot its id, features, baseline and exclusions as sent, and "
        "the action chosen, its probability and the slot's distribution over `actions`."
    )
    model_version: int
    config_version: int
    learning_mode: str
    deferred: bool
    activated_at: str | None
    learned_at: str | None = Field(description="When the trainer learned it (null until then).")
    learned_version: int | None = Field(description="The first model version that learned it.")
    outcomes: list[OutcomeOut]


class LoopCreate(_Body):
    name: str = Field(pattern=LOOP_NAME, description="Lower-case letters, digits, `-` and `_`.")
    # Validated by the service (422 InvalidLoopConfig / InvalidVwArgs), described by LoopConfig.
    config: dict[str, Any] = Field(default_factory=dict, description="A LoopConfig (defaults apply).")


class LoopOut(BaseModel):
    name: str
    kind: str
    config: LoopConfig
    config_version: int
    created_at: str
    updated_at: str


class LoopCreated(LoopOut):
    key: str = Field(description="The loop's first API key; shown once, never again.")


class LoopPatched(LoopOut):
    model_reset: bool = Field(description="True when the change started a new model lineage.")


class KeyCreated(BaseModel):
    key: str
    loop: str | None


class ModelListQuery(_Body):
    limit: int = Field(
        default=100, ge=1, le=1000, description="At most this many snapshots, newest first."
    )


class ModelOut(BaseModel):
    version: int
    lineage: int = Field(description="The config version that started this model's line.")
    config_version: int = Field(description="The loop's config version when it was published.")
    events_learned: int = Field(description="Decisions learned since the previous snapshot.")
    total_learned: int = Field(description="Decisions learned by the lineage up to this snapshot.")
    source: str = Field(description="`trainer`, or `import` for a model uploaded with PUT.")
    created_at: str
    size_bytes: int
    apprentice_agreement: float | None = Field(
        description="Apprentice mode: how often the model's own pick was the baseline (last "
        "`apprentice_events` events); null otherwise."
    )


class ModelList(BaseModel):
    current: int = Field(description="The version the api serves now (0: the empty model).")
    lineage: int = Field(description="The current lineage.")
    models: list[ModelOut]


class ModelReset(BaseModel):
    lineage: int
    config_version: int
    current: Literal[0] = Field(
        description="The api serves the empty model until the trainer publishes."
    )


class _CandidateBase(_Body):
    name: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="The name results use (default: made from the kind, e.g. `constant:a1`).",
    )


class LoggingCandidate(_CandidateBase):
    kind: Literal["logging"]


class UniformCandidate(_CandidateBase):
    kind: Literal["uniform"]


class BaselineCandidate(_CandidateBase):
    kind: Literal["baseline"]


class ConstantCandidate(_CandidateBase):
    kind: Literal["constant"]
    action: str = Field(
        min_length=1, max_length=256,
        description="The action to take; where it was not offered or was excluded, the baseline.",
    )


class ModelCandidate(_CandidateBase):
    kind: Literal["model"]
    version: int = Field(ge=0, le=2**31 - 1, description="A model snapshot (0: the empty model).")


class VwCandidate(_CandidateBase):
    kind: Literal["vw"]
    vw_args: str = Field(
        max_length=2000,
        description="Extra VW flags replacing the loop's `vw_args`; the model is learned from "
        "scratch over the window in time order (predict, then learn each event).",
    )
    exploration: dict[str, Any] | None = Field(
        default=None, description="An exploration replacing the loop's (see LoopConfig)."
    )


CandidateIn = Annotated[
    LoggingCandidate | UniformCandidate | BaselineCandidate | ConstantCandidate | ModelCandidate
    | VwCandidate,
    Field(discriminator="kind"),
]


class Window(_Body):
    since: AwareDatetime = Field(description="First moment (inclusive), ISO 8601 with a zone.")
    until: AwareDatetime = Field(description="Last moment (exclusive), ISO 8601 with a zone.")


class EvaluationRequest(_Body):
    window: Window
    candidates: list[CandidateIn] = Field(
        min_length=1, max_length=32,
        description="Target policies; the logging policy is always added (lifts are against it).",
    )
    objectives: list[str] | None = Field(
        default=None, min_length=1, max_length=33,
        description="Objectives to evaluate, and/or `reward` (the scalarised reward with the "
        "loop's current weights); default: every objective and `reward`.",
    )
    estimators: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["ips", "snips", "dr"], min_length=1, max_length=16,
        description="Estimators by name or `{\"name\": ..., params}` (docs/ope.md). cb: single-slot "
        "ones (default ips, snips, dr); ccb: ips, ips-clipped, snips per slot and rips for the "
        "total (default ips, snips, rips); slates: pi, snpi (default both).",
    )
    reward_model: Literal["ridge", "action-mean"] = Field(
        default="ridge",
        description="The DM/DR reward model of cb jobs: a cross-fitted ridge regression on hashed "
        "context x action features, or each action's mean outcome (no context).",
    )
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0, description="Interval level.")
    bootstrap: int = Field(default=0, ge=0, le=10_000, description="Bootstrap resamples (0: none).")
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the bootstrap.")


class GuardrailIn(_Body):
    objective: str = Field(min_length=1, max_length=64, description="An objective of the loop.")
    max_drop: float = Field(
        gt=0.0, le=1.0,
        description="The largest relative drop allowed against the logging policy's mean (0.02: "
        "2 %), judged on the lower confidence bound of the paired DR lift; for an objective with "
        "a negative weight (harmful), the largest relative rise.",
    )


class TuningSplit(_Body):
    fit: float = Field(default=0.6, gt=0.0, lt=1.0, description="Oldest share: fits the reward models.")
    tune: float = Field(default=0.2, gt=0.0, lt=1.0, description="Next share: scores the candidates.")
    holdout: float = Field(default=0.2, gt=0.0, lt=1.0,
                           description="Newest share: re-estimates the recommendation, untouched before.")


class TuningRequest(_Body):
    window: Window
    primary: str = Field(min_length=1, max_length=64, description="The objective to maximise.")
    guardrails: list[GuardrailIn] = Field(
        default_factory=list, max_length=31,
        description="Objectives that must not drop by more than `max_drop` (docs/tuning.md).",
    )
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0,
                              description="Interval level (guardrails: Bonferroni over them).")
    budget: int = Field(default=200, ge=2, le=10_000, description="Weight candidates to score.")
    split: TuningSplit = Field(default_factory=TuningSplit,
                               description="Shares of the window by time; they must sum to 1.")
    fit_limit: int = Field(
        default=200_000, ge=100, le=100_000_000,
        description="Fit the reward models on at most this many of the fit share's newest events.",
    )
    min_ess: float = Field(
        default=0.01, ge=0.0, le=1.0,
        description="A candidate whose effective sample size is below this share of the tune "
        "split's events is not recommended.",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the quasi-random search.")


class ApplyRequest(_Body):
    rebuild: bool = Field(
        default=False,
        description="Also rebuild the model: a new lineage from the empty model that the trainer "
        "fills by relearning every retained decision with the new weights.",
    )


class ApplyReply(BaseModel):
    loop: str
    config_version: int = Field(description="The new config version (it records the tuning).")
    tuning: int
    weights: dict[str, float] = Field(description="The objectives' new weights.")
    model_reset: bool = Field(description="True when the model is being rebuilt.")
    relearning: int = Field(description="Decisions the trainer will learn again (rebuild).")


class JobOut(BaseModel):
    id: int
    kind: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float
    spec: dict[str, Any]
    result: dict[str, Any] | None = Field(description="When succeeded (see docs/ope.md).")
    error: str | None
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobList(BaseModel):
    jobs: list[JobOut]


class JobListQuery(_Body):
    limit: int = Field(default=100, ge=1, le=1000, description="At most this many, newest first.")


class ErrorDetail(BaseModel):
    code: str
    message: str
    target: str | None = None


class ErrorReply(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = None


def location(loc: tuple[Any, ...]) -> str:
    """``("actions", 3, "id")`` → ``actions[3].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def error_location(loc: tuple[Any, ...]) -> str:
    """:func:`location` of a pydantic error, without the union members pydantic names in it."""
    kept = (part for index, part in enumerate(loc) if not _is_union_member(loc, index))
    return location(tuple(kept))


# Nesting allowed in a request body: features nest a few levels; far deeper bodies would exhaust
# the recursion of the validators and the featuriser (a 500), so they are refused up front.
MAX_NESTING = 32


def refuse_nul_and_depth(body: Any, code: str, status: int = 400) -> None:
    """Refuse NUL anywhere in ``body`` (Postgres text and jsonb cannot hold it, VW cannot read it)
    and nesting deeper than :data:`MAX_NESTING`, naming where.

    Iterative, and scalars are checked in place, since a body may hold thousands of features.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(body, ())]
    while stack:
        container, loc = stack.pop()
        problem: tuple[tuple[Any, ...], str] | None = None
        if not isinstance(container, (dict, list)):
            if isinstance(container, str) and "\x00" in container:
                problem = loc, "contains a NUL character"
        elif len(loc) >= MAX_NESTING:
            problem = loc, f"is nested deeper than {MAX_NESTING} levels"
        elif isinstance(container, dict) and any("\x00" in key for key in container):
            problem = loc, "has a key containing a NUL character"
        else:
            items = container.items() if isinstance(container, dict) else enumerate(container)
            children = []
            for key, item in items:
                if isinstance(item, str):
                    if "\x00" in item:
                        problem = (*loc, key), "contains a NUL character"
                        break
                elif isinstance(item, (dict, list)):
                    children.append((item, (*loc, key)))
            stack.extend(reversed(children))
        if problem:
            target = location(problem[0]) or None
            raise ApiError(status, code, f"{target or 'body'} {problem[1]}", target)


def parse(
    model: type[BaseModel], body: Any, code: str, status: int = 400, walk: bool = True
) -> Any:
    """Validate ``body`` against ``model``; the first problem becomes an :class:`ApiError`.

    ``walk=False`` skips :func:`refuse_nul_and_depth` for a caller that checks every free-form
    value itself (choose: the featuriser validates features in the pass that writes them).
    """
    if walk:
        refuse_nul_and_depth(body, code, status)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        target = error_location(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "is required"
        raise ApiError(status, code, f"{target or 'body'}: {message}", target or None) from None


_EXPLORATION_TAGS = {"squarecb", "epsilon", "softmax", "bag", "cover", "rnd"}
_SCALAR_MEMBER = re.compile(r"^(float|int|bool|str|function-[a-z]+\[.*\])$")


def _is_union_member(loc: tuple[Any, ...], index: int) -> bool:
    # pydantic names the union member it tried: the tag right after a discriminated union field
    # (``exploration.epsilon.epsilon``), a scalar type at the end (``rewards.click.float``).
    part = loc[index]
    if not isinstance(part, str) or index == 0:
        return False
    if loc[index - 1] == "exploration" and part in _EXPLORATION_TAGS:
        return True
    return index == len(loc) - 1 and _SCALAR_MEMBER.match(part) is not None
