"""Candidate policies of an evaluation: each gives, per logged event, a PMF over its actions.

A candidate sees the event as the logger did (context, actions, exclusions, baseline) and
returns a distribution aligned with the logged ``actions``; excluded actions get probability 0.
``logging`` returns the logged PMF, so IPS and SNIPS reproduce the logged mean (the A/A check).
``vw`` replays a VW configuration over the window in time order: it predicts each event, then
learns it with the logged label (progressive validation), so its PMF at an event only depends
on the events before it.
"""

from __future__ import annotations

from typing import Any

from bandits.learning.features import action_line, shared_line
from bandits.learning.rewards import cost
from bandits.learning.sampling import normalise
from bandits.learning.vw import Learner, Policy
from bandits.loop_config import LoopConfig
from bandits.store.jobs import LoggedEvent


class Candidate:
    """A target policy: :meth:`pmf` for an event, then :meth:`observe` its scalar reward."""

    def pmf(self, event: LoggedEvent, allowed: list[int]) -> list[float]:
        raise NotImplementedError

    def observe(self, event: LoggedEvent, allowed: list[int], reward: float) -> None:
        """Called after :meth:`pmf` with the event's logged scalar reward (replay learns it)."""

    def close(self) -> None:
        pass


def _one_hot(size: int, index: int) -> list[float]:
    pmf = [0.0] * size
    pmf[index] = 1.0
    return pmf


def _spread(size: int, allowed: list[int], probabilities: list[float]) -> list[float]:
    pmf = [0.0] * size
    for position, probability in zip(allowed, normalise(probabilities)):
        pmf[position] = probability
    return pmf


def _baseline_index(event: LoggedEvent, ids: list[str], allowed: list[int]) -> int:
    if event.baseline is not None and event.baseline in ids:
        index = ids.index(event.baseline)
        if index in allowed:
            return index
    return allowed[0]  # what the service serves as baseline when none is given


class Logging(Candidate):
    def pmf(self, event, allowed):
        return list(event.pmf)


class Uniform(Candidate):
    def pmf(self, event, allowed):
        return _spread(len(event.actions), allowed, [1.0] * len(allowed))


class Baseline(Candidate):
    def pmf(self, event, allowed):
        ids = [action["id"] for action in event.actions]
        return _one_hot(len(ids), _baseline_index(event, ids, allowed))


class Constant(Candidate):
    """Always ``action``; where it was not offered (or excluded), the event's baseline."""

    def __init__(self, action: str) -> None:
        self.action = action

    def pmf(self, event, allowed):
        ids = [action["id"] for action in event.actions]
        if self.action in ids and ids.index(self.action) in allowed:
            return _one_hot(len(ids), ids.index(self.action))
        return _one_hot(len(ids), _baseline_index(event, ids, allowed))


def _lines(event: LoggedEvent, allowed: list[int]) -> tuple[str | None, list[str]]:
    actions = event.actions
    return shared_line(event.context), [
        action_line(actions[i]["id"], actions[i].get("features")) for i in allowed
    ]


class Snapshot(Candidate):
    """A frozen model version (0: the empty model) with the config of its lineage."""

    def __init__(self, config: LoopConfig, version: int, blob: bytes | None) -> None:
        self._policy = Policy(config, version, blob)

    def pmf(self, event, allowed):
        shared, lines = _lines(event, allowed)
        return _spread(len(event.actions), allowed, self._policy.predict(shared, lines))

    def close(self):
        self._policy.close()


class Replay(Candidate):
    """A VW configuration learned from scratch over the window: predict, then learn."""

    def __init__(self, config: LoopConfig) -> None:
        self._learner = Learner(config)
        self._lines: tuple[str | None, list[str]] | None = None

    def pmf(self, event, allowed):
        self._lines = _lines(event, allowed)
        return _spread(len(event.actions), allowed, self._learner.predict(*self._lines))

    def observe(self, event, allowed, reward):
        assert self._lines is not None
        shared, lines = self._lines
        ids = [event.actions[i]["id"] for i in allowed]
        self._learner.learn(shared, lines, ids.index(event.chosen), cost(reward), event.probability)

    def close(self):
        self._learner.close()


def candidate_name(spec: dict[str, Any]) -> str:
    """The name a candidate is reported under (its ``name``, or one made from its spec)."""
    if spec.get("name"):
        return spec["name"]
    kind = spec["kind"]
    if kind == "constant":
        return f"constant:{spec['action']}"
    if kind == "model":
        return f"model:{spec['version']}"
    if kind == "vw":
        return f"vw:{spec['vw_args']}"
    return kind


def replay_config(loop_config: LoopConfig, spec: dict[str, Any]) -> LoopConfig:
    """The loop's config with the candidate's ``vw_args`` (and ``exploration``, if given)."""
    changes: dict[str, Any] = {"vw_args": spec["vw_args"]}
    if spec.get("exploration") is not None:
        changes["exploration"] = spec["exploration"]
    return LoopConfig.model_validate({**loop_config.to_json(), **changes})
