"""A loop's configuration: the one config schema, validated with pydantic.

Stored as JSON in ``loops.config``; every change makes a new ``config_version``. Documented field by
field in docs/loops.md.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

OBJECTIVE_NAME = r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$"
LOOP_NAME = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(_Strict):
    name: str = Field(pattern=OBJECTIVE_NAME, description="Outcome name used in reward calls.")
    weight: float = Field(default=1.0, allow_inf_nan=False, description="Weight in the scalar reward.")
    aggregation: Literal["sum", "earliest", "max", "last"] = Field(
        default="sum", description="How several outcomes of this objective for one decision combine."
    )
    default: float = Field(
        default=0.0, allow_inf_nan=False, description="Value used when no outcome arrived in time."
    )


class SquareCB(_Strict):
    algorithm: Literal["squarecb"] = "squarecb"
    gamma_scale: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    gamma_exponent: float = Field(default=0.5, ge=0, allow_inf_nan=False)


class Epsilon(_Strict):
    algorithm: Literal["epsilon"]
    epsilon: float = Field(default=0.05, ge=0.0, le=1.0)


class Softmax(_Strict):
    algorithm: Literal["softmax"]
    lambda_: float = Field(default=10.0, alias="lambda", gt=0, allow_inf_nan=False)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Bag(_Strict):
    algorithm: Literal["bag"]
    size: int = Field(default=5, ge=2, le=64)
    epsilon: float = Field(default=0.0, ge=0.0, le=1.0)


class Cover(_Strict):
    algorithm: Literal["cover"]
    size: int = Field(default=3, ge=1, le=64)
    epsilon: float = Field(default=0.05, ge=0.0, le=1.0)


class RND(_Strict):
    algorithm: Literal["rnd"]
    size: int = Field(default=3, ge=1, le=64)
    epsilon: float = Field(default=0.0, ge=0.0, le=1.0)


Exploration = Annotated[
    Union[SquareCB, Epsilon, Softmax, Bag, Cover, RND], Field(discriminator="algorithm")
]

# Flags the service sets itself from the config; giving them in vw_args would contradict it.
RESERVED_VW_FLAGS = {
    "--cb_explore_adf", "--cb_adf", "--cb", "--cb_explore", "--ccb_explore_adf", "--slates",
    "--squarecb", "--epsilon", "--softmax", "--lambda", "--bag", "--cover", "--rnd", "--first",
    "--regcb", "--regcbopt", "--synthcover",
    "-d", "--data", "-f", "--final_regressor", "-i", "--initial_regressor", "-p", "--predictions",
    "-c", "--cache", "--cache_file", "--daemon", "--port", "--quiet", "--dsjson", "--json",
    "--save_resume", "--readable_model", "--invert_hash",
}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a string like ``"10m"``, ``"30s"``, ``"2h"``."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds or a duration like '10m'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("must be a number of seconds or a duration like '10m', '30s', '2h'")
    if not math.isfinite(seconds) or seconds < 0 or seconds > 30 * 86400:
        raise ValueError("must be between 0 seconds and 30 days")
    return seconds


class LoopConfig(_Strict):
    kind: Literal["cb", "ccb", "slates"] = Field(
        default="cb",
        description="Decision kind, fixed when the loop is created: `cb` picks one action; `ccb` "
        "fills an ordered list of slots from one shared pool of actions, without repeating one, "
        "with a reward per slot; `slates` fills each slot from its own actions, with one reward for "
        "the whole slate.",
    )
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(name="reward")], min_length=1, max_length=32
    )
    reward_wait: float = Field(
        default=600.0, description="Seconds after a decision during which outcomes count."
    )
    learning_mode: Literal["online", "apprentice", "logging_only"] = "online"
    exploration: Exploration = Field(default_factory=SquareCB)
    vw_args: str = Field(default="", max_length=2000, description="Extra VW flags, e.g. `-q ua`.")
    max_actions: int = Field(default=256, ge=1, le=10_000)
    model_publish_interval: float = Field(
        default=1.0, ge=0.1, le=3600.0, description="Seconds between the trainer's model snapshots."
    )
    apprentice_agreement: float = Field(
        default=0.9, ge=0.5, le=1.0,
        description="Apprentice mode switches to online once the model's own pick agrees with the "
        "baseline this often ...",
    )
    apprentice_events: int = Field(
        default=1000, ge=10, le=1_000_000, description="... over this many consecutive events."
    )

    @field_validator("reward_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("vw_args")
    @classmethod
    def _no_reserved_flags(cls, value: str) -> str:
        if "\x00" in value:  # VW ignores a lone NUL token, but Postgres cannot store one
            raise ValueError("contains a NUL character")
        for token in value.split():
            flag = token.split("=", 1)[0]
            if flag in RESERVED_VW_FLAGS:
                raise ValueError(
                    f"{flag} is set by the service from the loop config "
                    "(kind, exploration) and cannot be given in vw_args"
                )
        return value.strip()

    @field_validator("objectives")
    @classmethod
    def _unique_objectives(cls, objectives: list[Objective]) -> list[Objective]:
        names = [objective.name for objective in objectives]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"objective names must be unique; repeated: {', '.join(duplicates)}")
        return objectives

    def objective(self, name: str) -> Objective | None:
        return next((o for o in self.objectives if o.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# Changing any of these makes the current model meaningless: a new model lineage starts.
MODEL_FIELDS = ("kind", "exploration", "vw_args")


def model_invalidated(old: LoopConfig, new: LoopConfig) -> bool:
    return any(
        getattr(old, name) != getattr(new, name) for name in MODEL_FIELDS
    )
