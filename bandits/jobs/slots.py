"""Evaluation jobs of ``ccb`` and ``slates`` loops: per-slot candidates and the estimators.

Each logged decision keeps, per slot (``decisions.slots``), its id, features, baseline,
exclusions, the chosen action, its probability and the PMF over the pool (``actions``). A
candidate gives, per slot, a PMF over the pool:

* ``ccb``: slot :math:`k`'s PMF is **conditional on the logged earlier slots** (their actions
  are out of its reach), like the logged probability. Estimated per slot by single-slot
  estimators (:class:`bandits.ope.PerSlotEvaluation`: the value of slot :math:`k` with the
  earlier slots as the logger filled them) and, for the page total (the sum of the slot
  rewards), by ``rips`` (cascade assumption, prefix weights of the conditional probabilities).
* ``slates``: slots are drawn independently, each from its own actions, so the per-slot
  probabilities are marginals; the slate reward is estimated by ``pi`` and ``snpi``.

A ``vw`` candidate (:class:`SlotReplay`) replays a VW configuration over the window in time
order: it predicts an event's PMFs as a ``model`` snapshot does, then learns the event as the
trainer would.

Events with fewer slots than the longest are padded: the missing slots have probability 1 under
logger and target and reward 0, which leaves PI and RIPS weights and values unchanged (and
:class:`~bandits.ope.PerSlotEvaluation` skips them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bandits.jobs import candidates as c
from bandits.learning.examples import (
    SlotExample, ccb_text, labelled_slots, labelled_text, slates_text, slot_line, slot_pmfs,
)
from bandits.learning.features import action_line, namespaces_text
from bandits.learning.rewards import objective_values, scalar_reward
from bandits.learning.vw import Learner, Policy
from bandits.loop_config import LoopConfig
from bandits.ope import Evaluation, PerSlotEvaluation, make_estimator
from bandits.store.jobs import LoggedEvent

SCALAR = "reward"

# Which estimators each kind accepts, and why the others are refused.
PER_SLOT_ESTIMATORS = ("ips", "ips-clipped", "snips")  # ccb, per slot
SLATE_ESTIMATORS = {"ccb": ("rips",), "slates": ("pi", "snpi")}
DEFAULT_ESTIMATORS = {"ccb": ["ips", "snips", "rips"], "slates": ["pi", "snpi"]}
WHY_NOT = {
    ("ccb", "iips"): "iips needs marginal slot probabilities and a ccb loop logs conditional ones",
    ("ccb", "pi"): "pi needs slots drawn independently and a ccb loop draws them conditionally",
    ("ccb", "snpi"): "snpi needs slots drawn independently and a ccb loop draws them conditionally",
    ("slates", "iips"): "iips needs per-slot rewards and a slates loop takes one reward per slate",
    ("slates", "rips"): "rips needs per-slot rewards and a slates loop takes one reward per slate",
}


def check_estimator(kind: str, estimator) -> str | None:
    """Why ``estimator`` cannot evaluate a ``kind`` loop, or None when it can."""
    name = estimator.name
    if estimator.kind == "bandit":
        if kind == "ccb" and name in PER_SLOT_ESTIMATORS:
            return None
        if kind == "ccb":
            return (f"{estimator.label} needs a reward model, which ccb evaluations do not "
                    "have yet; "
                    f"per slot use {', '.join(PER_SLOT_ESTIMATORS)}")
        return (f"{estimator.label} is a single-slot estimator; a slates loop needs "
                f"{', '.join(SLATE_ESTIMATORS['slates'])}")
    if name in SLATE_ESTIMATORS[kind]:
        return None
    return WHY_NOT.get((kind, name), f"{estimator.label} is not supported for {kind} loops")


# -- candidates ---------------------------------------------------------------------------------

def allowed_positions(kind: str, event: LoggedEvent) -> list[list[int]]:
    """Per slot, the pool positions it may take: ``ccb``, those it does not exclude and the
    logged earlier slots did not take; ``slates``, its own actions less its exclusions."""
    ids = [action["id"] for action in event.actions]
    taken: set[str] = set()
    result = []
    for slot in event.slots or []:
        excluded = set(slot.get("excluded") or [])
        if kind == "ccb":
            result.append([i for i, a in enumerate(ids) if a not in excluded and a not in taken])
            taken.add(slot["chosen"])
        else:
            result.append([i for i, action in enumerate(event.actions)
                           if action.get("slot") == slot["id"] and action["id"] not in excluded])
    return result


class SlotCandidate:
    """A target policy: :meth:`pmfs` for an event (per slot, a PMF over the pool), then
    :meth:`observe` the event (replay learns it)."""

    def pmfs(self, event: LoggedEvent, allowed: list[list[int]]) -> list[list[float]]:
        raise NotImplementedError

    def observe(self, event: LoggedEvent) -> None:
        """Called after :meth:`pmfs` with the same event."""

    def close(self) -> None:
        pass


class SlotLogging(SlotCandidate):
    def pmfs(self, event, allowed):
        return [list(slot["pmf"]) for slot in event.slots]


class SlotUniform(SlotCandidate):
    def pmfs(self, event, allowed):
        return [c._spread(len(event.actions), own, [1.0] * len(own)) for own in allowed]


def _preferred(ids: list[str], own: list[int], wanted: str | None) -> int:
    if wanted is not None and wanted in ids and ids.index(wanted) in own:
        return ids.index(wanted)
    return own[0]


class SlotBaseline(SlotCandidate):
    """Each slot's baseline (``ccb``: where a logged earlier slot took it, the slot's first
    remaining action)."""

    def pmfs(self, event, allowed):
        ids = [action["id"] for action in event.actions]
        return [c._one_hot(len(ids), _preferred(ids, own, slot.get("baseline")))
                for slot, own in zip(event.slots, allowed)]


class SlotConstant(SlotCandidate):
    """``action`` in every slot that may take it, the slot's baseline elsewhere."""

    def __init__(self, action: str) -> None:
        self.action = action

    def pmfs(self, event, allowed):
        ids = [action["id"] for action in event.actions]
        out = []
        for slot, own in zip(event.slots, allowed):
            position = _preferred(ids, own, self.action)
            if ids[position] != self.action:
                position = _preferred(ids, own, slot.get("baseline"))
            out.append(c._one_hot(len(ids), position))
        return out


def _lines(event: LoggedEvent) -> tuple[str, list[str], list[str]]:
    """An event's VW pieces: the context's namespaces, each action's line, each slot's line."""
    return (namespaces_text(event.context or {}),
            [action_line(action["id"], action.get("features")) for action in event.actions],
            [slot_line(slot["id"], slot.get("features")) for slot in event.slots])


def _predicted(kind: str, predict_slots: Callable[[str], list[list[tuple[int, float]]]],
               event: LoggedEvent, allowed: list[list[int]],
               lines: tuple[str, list[str], list[str]]) -> list[list[float]]:
    """VW's per-slot PMFs for an event (see :class:`SlotSnapshot`)."""
    ids = [action["id"] for action in event.actions]
    shared, action_lines, slot_lines = lines
    if kind == "slates":
        examples = [SlotExample(line, tuple(own)) for line, own in zip(slot_lines, allowed)]
        scores = predict_slots(slates_text(shared, action_lines, examples))
        return [pmf for _, pmf in slot_pmfs("slates", examples, scores, len(ids))]
    slots = event.slots
    out = []
    for k, slot in enumerate(slots):
        earlier = [SlotExample(slot_lines[j], (ids.index(slots[j]["chosen"]),)) for j in range(k)]
        excluded = set(slot.get("excluded") or [])
        own = tuple(i for i, a in enumerate(ids) if a not in excluded) if excluded else None
        examples = [*earlier, SlotExample(slot_lines[k], own)]
        scores = predict_slots(ccb_text(shared, action_lines, examples))
        out.append(slot_pmfs("ccb", examples, scores, len(ids))[k][1])
    return out


class SlotSnapshot(SlotCandidate):
    """A frozen model: VW's per-slot PMFs.

    ``ccb``: slot :math:`k` is predicted from an example holding slots :math:`0..k`, where each
    earlier slot's include list is just its logged action. VW must place it there and leaves it
    out of slot :math:`k` (VW removes the actions of earlier slots from later ones), so slot
    :math:`k`'s PMF is conditional on the logged earlier slots, as the logged probability is.
    :math:`L` predictions per event. ``slates``: one prediction of the whole slate (slots are
    independent)."""

    def __init__(self, kind: str, config: LoopConfig, version: int, blob: bytes | None) -> None:
        self.kind = kind
        self._policy = Policy(config, version, blob)

    def pmfs(self, event, allowed):
        return _predicted(self.kind, self._policy.predict_slots, event, allowed, _lines(event))

    def close(self):
        self._policy.close()


class SlotReplay(SlotCandidate):
    """A VW configuration learned from scratch over the window, in time order: each event's
    PMFs are predicted as :class:`SlotSnapshot` predicts them, then the event is learned with
    its logged labels in the example the trainer builds (``ccb``: per-slot costs; ``slates``:
    the slate's cost; :func:`bandits.learning.examples.labelled_slots`), from every outcome the
    job reads (late ones too, which the trainer does not learn). Progressive validation: the
    PMFs at an event only depend on the events before it."""

    def __init__(self, kind: str, config: LoopConfig) -> None:
        self.kind = kind
        self._config = config
        self._learner = Learner(config)
        self._lines: tuple[str, list[str], list[str]] | None = None

    def pmfs(self, event, allowed):
        self._lines = _lines(event)
        return _predicted(self.kind, self._learner.predict_slots, event, allowed, self._lines)

    def observe(self, event):
        assert self._lines is not None, "observe follows pmfs"
        shared, action_lines, _ = self._lines
        ids = [action["id"] for action in event.actions]
        action_slots = [action.get("slot") for action in event.actions]
        outcomes = {None: event.outcomes, **(event.slot_outcomes or {})}
        examples = labelled_slots(self._config, ids, action_slots, event.slots, outcomes)
        self._learner.learn_text(
            labelled_text(self._config, shared, action_lines, examples, outcomes))
        self._lines = None

    def close(self):
        self._learner.close()


def open_candidate(kind: str, spec: dict[str, Any], config: LoopConfig,
                   snapshot: tuple[LoopConfig, int, bytes | None] | None) -> SlotCandidate:
    name = spec["kind"]
    if name == "logging":
        return SlotLogging()
    if name == "uniform":
        return SlotUniform()
    if name == "baseline":
        return SlotBaseline()
    if name == "constant":
        return SlotConstant(spec["action"])
    if name == "vw":
        return SlotReplay(kind, c.replay_config(config, spec))
    assert name == "model" and snapshot is not None, name
    return SlotSnapshot(kind, *snapshot)


# -- the estimates ------------------------------------------------------------------------------

def slot_rewards(config: LoopConfig, kind: str, event: LoggedEvent,
                 objectives: list[str]) -> dict[str, np.ndarray]:
    """Per objective: ``ccb``, each slot's value (from the outcomes naming it); ``slates``, the
    slate's value (shape ``(1,)``)."""
    def values(outcomes):
        out = objective_values(config, outcomes)
        out.setdefault(SCALAR, scalar_reward(config, outcomes))  # an objective named reward wins
        return out

    if kind == "slates":
        slate = values(event.outcomes)
        return {o: np.array([slate[o]]) for o in objectives}
    per_slot = [values((event.slot_outcomes or {}).get(slot["id"], [])) for slot in event.slots]
    return {o: np.array([v[o] for v in per_slot]) for o in objectives}


class SlotEvaluations:
    """Per objective, the estimators' accumulators for one window."""

    def __init__(self, kind: str, slots: int, spec: dict[str, Any], names: list[str]) -> None:
        self.kind, self.slots, self.names = kind, slots, names
        estimators = [make_estimator(e) for e in spec["estimators"]]
        single = [e for e in estimators if e.kind == "bandit"]
        slate = [e for e in estimators if e.kind == "slate"]
        bootstrap = spec["bootstrap"]
        seed = spec["seed"] if bootstrap else None
        self.per_slot = {o: PerSlotEvaluation(slots, single, names, n_bootstrap=bootstrap,
                                              random_state=seed)
                         for o in spec["objectives"]} if single else {}
        self.total = {o: Evaluation(slate, names, n_bootstrap=bootstrap, random_state=seed)
                      for o in spec["objectives"]} if slate else {}
        self.objectives = spec["objectives"]
        self.sums = {o: np.zeros(slots + 1) for o in self.objectives}  # per slot, then total
        self.shown = np.zeros(slots)
        self.n = 0

    def feed(self, config: LoopConfig, page: list[LoggedEvent], start: int,
             policies: dict[str, SlotCandidate]) -> None:
        n, width = len(page), self.slots
        shown = np.zeros((n, width), dtype=bool)
        propensity = np.ones((n, width))
        rewards = {o: np.zeros((n, width)) for o in self.objectives}
        slate_reward = {o: np.zeros(n) for o in self.objectives}
        target = {name: np.ones((n, width)) for name in policies}
        unsupported = {name: np.zeros((n, width)) for name in policies}
        for row, event in enumerate(page):
            slots = event.slots or []
            count = len(slots)
            shown[row, :count] = True
            propensity[row, :count] = [slot["probability"] for slot in slots]
            values = slot_rewards(config, self.kind, event, self.objectives)
            for o in self.objectives:
                if self.kind == "ccb":
                    rewards[o][row, :count] = values[o]
                    slate_reward[o][row] = values[o].sum()
                else:
                    slate_reward[o][row] = values[o][0]
            allowed = allowed_positions(self.kind, event)
            ids = [action["id"] for action in event.actions]
            for name, policy in policies.items():
                pmfs = policy.pmfs(event, allowed)
                policy.observe(event)
                for k, (slot, pmf) in enumerate(zip(slots, pmfs)):
                    chosen = ids.index(slot["chosen"])
                    # The logger's own probability, exactly: its weights are all 1.
                    target[name][row, k] = (slot["probability"] if isinstance(policy, SlotLogging)
                                            else pmf[chosen])
                    unsupported[name][row, k] = float(sum(
                        p for p, logged in zip(pmf, slot["pmf"]) if logged <= 0.0))
        self.n += n
        self.shown += shown.sum(axis=0)
        for o in self.objectives:
            self.sums[o][:width] += rewards[o].sum(axis=0)
            self.sums[o][width] += slate_reward[o].sum()
            if o in self.per_slot:
                self.per_slot[o].update(
                    shown=shown, reward=rewards[o], propensity=propensity,
                    candidates={name: {"target_probability": np.clip(target[name], 0.0, 1.0),
                                       "unsupported_mass": np.clip(unsupported[name], 0.0, 1.0)}
                                for name in policies})
            if o in self.total:
                slate = {"propensity": propensity, "reward": slate_reward[o]}
                if self.kind == "ccb":
                    slate["slot_reward"] = rewards[o]
                self.total[o].update(
                    start=start, **slate,
                    candidates={name: {
                        "target_probability": np.clip(target[name], 0.0, 1.0),
                        "unsupported_mass": np.clip(
                            1.0 - np.prod(1.0 - np.clip(unsupported[name], 0.0, 1.0), axis=1),
                            0.0, 1.0),
                    } for name in policies})

    def result(self, spec: dict[str, Any], cells) -> dict[str, Any]:
        alpha = 1.0 - spec["confidence"]
        candidates: dict[str, dict[str, Any]] = {name: {} for name in self.names}
        logged: dict[str, Any] = {}
        for o in self.objectives:
            if self.kind == "ccb":
                logged[o] = {"slots": {str(k): (float(self.sums[o][k] / self.shown[k])
                                                if self.shown[k] else None)
                                       for k in range(self.slots)},
                             "total": float(self.sums[o][self.slots] / self.n)}
            else:
                logged[o] = float(self.sums[o][self.slots] / self.n)
            for name in self.names:
                candidates[name][o] = {"slots": {}, "total": {}} if self.kind == "ccb" else {}
            if o in self.per_slot:
                for k, report in enumerate(self.per_slot[o].result(alpha=alpha)):
                    if report is None:
                        continue
                    for name, by_estimator in cells(report.to_dict()).items():
                        candidates[name][o]["slots"][str(k)] = by_estimator
            if o in self.total:
                report = self.total[o].result(alpha=alpha).to_dict()
                for name, by_estimator in cells(report).items():
                    if self.kind == "ccb":
                        candidates[name][o]["total"] = by_estimator
                    else:
                        candidates[name][o] = by_estimator
        return {"n": self.n, "kind": self.kind, "slots": self.slots,
                "slot_events": {str(k): int(v) for k, v in enumerate(self.shown)},
                "confidence": spec["confidence"], "logged_mean": logged, "candidates": candidates}
