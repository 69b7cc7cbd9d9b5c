"""Plays a :class:`~bandits.simulate.world.World` against a running service, over HTTP only.

For decision ``i`` of a run with seed ``seed`` a worker thread draws a context from
:func:`decision_rng` ``(seed, i)``, asks the service to choose (event id ``{prefix}-{i}``), draws the
served offer's outcomes and their delays from the same generator, and schedules the rewards: a
click (``{"click": 1}``) after a short delay, a conversion (``{"conversion": 1, "revenue": x}``)
later. Outcomes that did not happen are not reported, as a product would not report them; the
loop's objective defaults stand for them. Each reward has the id ``{event_id}/click`` or
``{event_id}/conversion``, so a retried post is stored once.

What decision ``i`` sees and draws depends only on the seed, ``i`` and the offer served, whatever
the concurrency.

A slate world (:class:`~bandits.simulate.slates.SlateWorld`) sends ``slots`` with choose and draws
each slot's outcomes and delays from the same generator. On a ``ccb`` page each slot's click and
conversion are sent as they happen, with ``slot`` (reward ids ``{event_id}/{slot}/click`` and
``{event_id}/{slot}/conversion``). On a ``slates`` page one reward covers the whole page: the
page's total clicks, conversions and revenue (all three, zeros included), sent once when the last
slot's outcomes are in (reward id ``{event_id}/page``), and only when something was clicked.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

from bandits.client import Client, ServiceError
from bandits.simulate.report import LearningCurve, describe_slate_world, describe_world
from bandits.simulate.scheduler import PendingReward, RewardScheduler, RewardStats
from bandits.simulate.slates import SlateWorld
from bandits.simulate.world import OBJECTIVES, World

# The weights of a loop that `bandits simulate --create-loop` makes: with revenue at 0.05 the best
# offer of a segment is its engagement offer about as often as its premium one.
DEFAULT_WEIGHTS = {"click": 1.0, "conversion": 1.0, "revenue": 0.05}
# User features crossed with the offer's features and with the action ids (`_action`): without
# such interactions the context could not change the ranking. The visit namespace is noise.
DEFAULT_VW_ARGS = "-q uo -q u_"
# Transport failures or server errors in a row after which a run gives up.
MAX_FAILURES_IN_A_ROW = 10


class SimulationError(Exception):
    """The run cannot start (or go on): the loop does not fit the world, the key is refused, ..."""


@dataclass(frozen=True)
class Delays:
    """Seconds until outcomes arrive, drawn uniformly: a click after ``click`` seconds from the
    decision, a conversion ``conversion`` seconds after the click; all divided by ``speed``."""

    click: tuple[float, float] = (0.0, 0.5)
    conversion: tuple[float, float] = (0.5, 1.5)
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError("speed must be a positive number")
        for low, high in (self.click, self.conversion):
            if not 0 <= low <= high:
                raise ValueError("delays need 0 <= low <= high")

    def draw(self, rng: np.random.Generator) -> tuple[float, float]:
        """(click delay, conversion delay), both from the decision."""
        click = rng.uniform(*self.click) / self.speed
        return click, click + rng.uniform(*self.conversion) / self.speed

    @property
    def longest(self) -> float:
        return (self.click[1] + self.conversion[1]) / self.speed


def decision_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of decision ``index``: the ``index``-th child of the run's seed sequence."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def loop_config(delays: Delays = Delays(), weights: Mapping[str, float] = DEFAULT_WEIGHTS,
                kind: str = "cb") -> dict[str, Any]:
    """A loop config for the world: its objectives, interactions, and a reward wait that has every
    outcome arrive in time (the longest delay, plus 20 % and two seconds for a busy machine).

    ``kind`` ``cb`` and ``ccb`` (per slot): click and conversion aggregate with ``max``, revenue
    with ``sum``. ``slates``: a page's reward holds its totals, and a product that sent a page's
    outcomes in several calls would want them added up: ``sum`` everywhere.

    Not ``earliest``: the driver reports only what happened, so with ``earliest`` everywhere the
    pages with a click would be learned at once and the others a reward wait later, and a model
    that learns the good news first learns a biased story (it served worse than uniform random
    in our tests).
    """
    if kind == "slates":
        aggregation = {name: "sum" for name in OBJECTIVES}
    else:
        aggregation = {name: "sum" if name == "revenue" else "max" for name in OBJECTIVES}
    config: dict[str, Any] = {} if kind == "cb" else {"kind": kind}
    return {
        **config,
        "objectives": [{"name": name, "weight": weights.get(name, 0.0),
                        "aggregation": aggregation[name]} for name in OBJECTIVES],
        "vw_args": DEFAULT_VW_ARGS,
        "reward_wait": math.ceil(delays.longest * 1.2 + 2),
    }


def loop_weights(loop: Mapping[str, Any], world: World | SlateWorld) -> dict[str, float]:
    """The weights of the world's objectives in ``loop`` (``GET /v1/loops/{loop}``), or a
    :class:`SimulationError` saying why the loop cannot take this world's decisions."""
    config = loop["config"]
    kind = world.kind if isinstance(world, SlateWorld) else "cb"
    if loop["kind"] != kind:
        raise SimulationError(
            f"loop {loop['name']!r} is of kind {loop['kind']!r}; the simulation needs {kind!r}")
    weights = {objective["name"]: float(objective["weight"]) for objective in config["objectives"]}
    missing = [name for name in OBJECTIVES if name not in weights]
    if missing:
        raise SimulationError(f"loop {loop['name']!r} has no objective {', '.join(missing)}; "
                              f"the simulation reports {', '.join(OBJECTIVES)}")
    if config["max_actions"] < len(world.offers):
        raise SimulationError(f"loop {loop['name']!r} takes at most {config['max_actions']} actions; "
                              f"the world has {len(world.offers)} offers")
    return {name: weights[name] for name in OBJECTIVES}


@dataclass
class Summary:
    requested: int
    served: int
    failed: Counter
    rewards: RewardStats
    weights: dict[str, float]
    realised: dict[str, float]
    policy: dict[str, float]
    uniform: dict[str, float]
    oracle: dict[str, float]
    seconds: float
    decision_seconds: float
    stopped: str | None = None
    interrupted: bool = False
    table: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.served == self.requested and not self.failed and not self.rewards.failed
                and self.rewards.pending == 0)

    def lines(self) -> list[str]:
        rate = self.served / self.decision_seconds if self.decision_seconds > 0 else 0.0
        failed = ", ".join(f"{count} {code}" for code, count in self.failed.most_common()) or "0"
        reward_failed = ", ".join(f"{n} {code}" for code, n in self.rewards.failed.most_common()) or "0"
        lines = [
            f"decisions: {self.served} of {self.requested} served in {self.decision_seconds:.1f} s "
            f"({rate:.1f}/s); failed: {failed}",
            f"rewards: {self.rewards.sent} of {self.rewards.scheduled} sent "
            f"({self.rewards.outcomes} outcomes stored, {self.rewards.duplicates} duplicates, "
            f"{self.rewards.late} late); "
            f"failed: {reward_failed}; pending: {self.rewards.pending}; "
            f"all done after {self.seconds:.1f} s",
        ]
        if self.interrupted:
            lines.append("interrupted: pending rewards were sent at once")
        if self.stopped:
            lines.append(f"stopped early: {self.stopped}")
        return lines + self.table


def _print(line: str) -> None:
    print(line, flush=True)


class _Run:
    """One run: hands out decision indices to the worker threads, plays each decision, counts
    failures and stops the run when it should."""

    def __init__(self, client: Client, world: World | SlateWorld, decisions: int, seed: int,
                 delays: Delays, prefix: str, curve: LearningCurve,
                 scheduler: RewardScheduler) -> None:
        self.client, self.world, self.decisions, self.seed = client, world, decisions, seed
        self.delays, self.prefix, self.curve, self.scheduler = delays, prefix, curve, scheduler
        self.actions = world.actions()
        self.slots = world.slot_requests() if isinstance(world, SlateWorld) else None
        self.stop = threading.Event()
        self.failed: Counter = Counter()
        self.stopped: str | None = None
        self.crash: BaseException | None = None
        self._next = 0
        self._failures_in_a_row = 0
        self._lock = threading.Lock()

    def work(self) -> None:
        """A worker thread: decisions until there are none left or the run stops."""
        try:
            decide = self.decide if self.slots is None else self.decide_slate
            while (index := self._next_index()) is not None:
                decide(index)
        except BaseException as exc:  # a bug: stop the run, re-raise it once the rewards are out
            self.crash = self.crash or exc
            self.stop.set()

    def _choose(self, context: dict, event_id: str, **extra) -> dict | None:
        """The service's reply, or None after noting a failure."""
        try:
            reply = self.client.choose(context, self.actions, event_id=event_id, **extra)
        except ServiceError as exc:
            # A refusal (4xx) would repeat for every decision: stop. Server errors may pass.
            self._failure(exc.code, f"choose {event_id}: {exc}", fatal=exc.status < 500)
            return None
        except requests.RequestException as exc:
            self._failure(type(exc).__name__, f"choose {event_id}: {exc}", fatal=False)
            return None
        with self._lock:
            self._failures_in_a_row = 0
        return reply

    def decide(self, index: int) -> None:
        rng = decision_rng(self.seed, index)
        segment, context = self.world.draw_context(rng)
        event_id = f"{self.prefix}-{index}"
        reply = self._choose(context, event_id)
        if reply is None:
            return
        outcomes = self.world.draw_outcomes(segment, reply["action"], rng)
        click_delay, conversion_delay = self.delays.draw(rng)
        now = time.monotonic()
        if outcomes["click"]:
            self.scheduler.schedule(now + click_delay,
                                    PendingReward(event_id, {"click": 1}, f"{event_id}/click"))
        if outcomes["conversion"]:
            converted = {"conversion": 1, "revenue": outcomes["revenue"]}
            self.scheduler.schedule(now + conversion_delay,
                                    PendingReward(event_id, converted, f"{event_id}/conversion"))
        pmf = {ranked["id"]: ranked["probability"] for ranked in reply["ranking"]}
        self.curve.add(segment, outcomes, pmf, reply["model_version"])

    def decide_slate(self, index: int) -> None:
        """A decision on a slate world: choose with ``slots``, then each slot's outcomes."""
        world = self.world
        assert isinstance(world, SlateWorld)
        rng = decision_rng(self.seed, index)
        segment, context = world.draw_context(rng)
        event_id = f"{self.prefix}-{index}"
        reply = self._choose(context, event_id, slots=self.slots)
        if reply is None:
            return
        served = reply["slots"]
        slot_ids = [slot.id for slot in world.slots]
        if [slot["id"] for slot in served] != slot_ids:
            raise RuntimeError(f"choose {event_id}: the reply's slots are not the page's: {served}")
        drawn = world.draw_outcomes(segment, [slot["action"] for slot in served], rng)
        delays = [self.delays.draw(rng) for _ in slot_ids]
        now = time.monotonic()
        if world.kind == "ccb":
            for slot_id, outcomes, (click_delay, conversion_delay) in zip(slot_ids, drawn, delays):
                if outcomes["click"]:
                    self.scheduler.schedule(now + click_delay, PendingReward(
                        event_id, {"click": 1}, f"{event_id}/{slot_id}/click", slot=slot_id))
                if outcomes["conversion"]:
                    converted = {"conversion": 1, "revenue": outcomes["revenue"]}
                    self.scheduler.schedule(now + conversion_delay, PendingReward(
                        event_id, converted, f"{event_id}/{slot_id}/conversion", slot=slot_id))
        page = {name: sum(outcomes[name] for outcomes in drawn) for name in OBJECTIVES}
        if world.kind == "slates" and page["click"]:
            # The page's session ends when its last slot's conversion would have come.
            self.scheduler.schedule(now + max(conversion for _, conversion in delays),
                                    PendingReward(event_id, dict(page), f"{event_id}/page"))
        pmfs = [{ranked["id"]: ranked["probability"] for ranked in slot["ranking"]}
                for slot in served]
        self.curve.record(page, world.served_expected(segment, pmfs), reply["model_version"])

    def _next_index(self) -> int | None:
        with self._lock:
            if self.stop.is_set() or self._next >= self.decisions:
                return None
            self._next += 1
            return self._next - 1

    def _failure(self, code: str, message: str, fatal: bool) -> None:
        with self._lock:
            self.failed[code] += 1
            self._failures_in_a_row += 1
            if fatal or self._failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                self.stopped = self.stopped or message
                self.stop.set()


def run(client: Client, world: World | SlateWorld, decisions: int, concurrency: int = 4,
        seed: int = 0, delays: Delays = Delays(), report_every: int = 100,
        event_prefix: str | None = None, write: Callable[[str], None] = _print) -> Summary:
    """Drive ``decisions`` decisions with ``concurrency`` threads; returns once every reward is sent.

    ``world``: a :class:`~bandits.simulate.world.World` for a ``cb`` loop, or a
    :class:`~bandits.simulate.slates.SlateWorld` for a loop of its kind. Writes the world's
    description, a header, a learning-curve line every ``report_every`` decisions and then the
    summary's lines through ``write``. Ctrl-C stops choosing and posts the
    pending rewards at once.
    """
    try:
        weights = loop_weights(client.loop_config(), world)
    except ServiceError as exc:
        raise SimulationError(f"cannot read loop {client.loop!r}: {exc.code}: {exc.message}") from None
    describe = describe_slate_world if isinstance(world, SlateWorld) else describe_world
    for line in describe(world, weights):  # type: ignore[arg-type]
        write(line)
    curve = LearningCurve(world, weights, report_every, write)
    scheduler = RewardScheduler(client.reward, senders=concurrency)
    state = _Run(client, world, decisions, seed, delays, event_prefix or f"sim-{seed}", curve, scheduler)
    write(curve.header())
    started = time.monotonic()
    workers = [threading.Thread(target=state.work, name=f"simulate-{n}", daemon=True)
               for n in range(concurrency)]
    for worker in workers:
        worker.start()
    interrupted = False
    try:
        for worker in workers:
            while worker.is_alive():
                worker.join(0.1)  # a timed join lets Ctrl-C through
    except KeyboardInterrupt:
        interrupted = True
        state.stop.set()
        scheduler.flush_now()
        for worker in workers:
            worker.join()
    decision_seconds = time.monotonic() - started
    try:
        rewards = scheduler.close(flush_now=interrupted)
    except KeyboardInterrupt:
        interrupted = True
        rewards = scheduler.close(flush_now=True)
    if state.crash is not None:
        raise state.crash
    summary = Summary(
        requested=decisions, served=curve.decisions, failed=state.failed, rewards=rewards,
        weights=weights, realised=curve.realised_mean(), policy=curve.policy_mean(),
        uniform=curve.uniform, oracle=curve.oracle, seconds=time.monotonic() - started,
        decision_seconds=decision_seconds, stopped=state.stopped, interrupted=interrupted,
        table=curve.summary_table(),
    )
    for line in summary.lines():
        write(line)
    return summary
