"""Request and reply bodies (pydantic): validation and the OpenAPI document's schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    defer: bool = Field(default=False, description="Learn only once activated.")


class RankedAction(BaseModel):
    id: str
    probability: float


class ChooseReply(BaseModel):
    event_id: str
    action: str
    probability: float
    model_version: int
    ranking: list[RankedAction]


class RewardRequest(_Body):
    rewards: dict[str, float | bool] = Field(
        min_length=1, description="Objective name → outcome value (booleans count as 1 and 0)."
    )
    slot: str | None = Field(default=None, min_length=1, max_length=256)
    reward_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="Dedupe key: accepted once."
    )


class RewardReply(BaseModel):
    event_id: str
    accepted: int
    duplicate: bool


class ActivateReply(BaseModel):
    event_id: str
    activated: bool


class OutcomeOut(BaseModel):
    objective: str
    value: float
    slot: str | None
    reward_id: str | None
    ts: str


class EventReply(BaseModel):
    event_id: str
    ts: str
    context: dict[str, Any]
    actions: list[dict[str, Any]]
    excluded: list[str]
    baseline: str | None
    action: str
    probability: float
    pmf: list[float]
    model_version: int
    config_version: int
    learning_mode: str
    deferred: bool
    activated_at: str | None
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


def parse(model: type[BaseModel], body: Any, code: str, status: int = 400) -> Any:
    """Validate ``body`` against ``model``; the first problem becomes an :class:`ApiError`."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        target = location(tuple(p for p in error["loc"] if not _is_union_tag(p)))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "is required"
        raise ApiError(status, code, f"{target or 'body'}: {message}", target or None) from None


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the chosen union member or discriminator value in the location.
    return isinstance(part, str) and (part in {"squarecb", "epsilon", "softmax", "bag", "cover", "rnd"}
                                      or part.startswith(("function-", "float", "bool")))
