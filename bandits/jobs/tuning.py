"""Weight-tuning jobs: check a spec against its loop, read the window once, tune.

The window is split by time (rank order) into fit / tune / holdout shares. One pass reads it in
keyset pages: on the fit share (at most ``fit_limit`` of its newest events) one VW regression per
objective learns the logged action's outcome (:class:`bandits.learning.vw.Regressor`, the loop's
features and ``vw_args``); on the tune and holdout shares those models score every allowed
action, and the arrays go to :func:`bandits.tuning.tune` (search, guardrails, Pareto front,
recommendation re-estimated on the holdout). The reward models never see the events they help
estimate (cross-fitting by time).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from bandits.errors import unprocessable
from bandits.jobs.evaluation import utc
from bandits.learning.features import action_line, shared_line
from bandits.learning.rewards import objective_values
from bandits.learning.vw import Regressor, VwArgsError
from bandits.loop_config import LoopConfig
from bandits.schemas import TuningRequest
from bandits.store import training
from bandits.store.db import Database
from bandits.store.jobs import LoggedEvent, count_window, window_pages, window_position
from bandits.tuning import Guardrail, Problem, TuningArrays, exploration_for, tune

KIND = "tuning"
MIN_SPLIT_EVENTS = 100
PAGE_SIZE = 1000
READ_SHARE = 0.7  # of the progress bar: reading and fitting; the rest is the search

Progress = Callable[[float], None]


def split_sizes(total: int, split: dict[str, float]) -> tuple[int, int, int]:
    """Events in the fit, tune and holdout shares of a window of ``total`` (by time)."""
    fit = int(total * split["fit"])
    tune_size = int(total * split["tune"])
    return fit, tune_size, total - fit - tune_size


def checked_spec(request: TuningRequest, loop_kind: str, config: LoopConfig,
                 count_events: Callable[[datetime, datetime], int]) -> dict[str, Any]:
    """The job's spec as stored (JSON), or a 422 naming what is wrong; nothing is written."""
    if loop_kind != "cb":
        raise unprocessable("NotYet", f"weight tuning is for cb loops; this loop is {loop_kind!r}",
                            "loop")
    names = [o.name for o in config.objectives]
    if len(names) < 2:
        raise unprocessable("NothingToTune", f"the loop has one objective ({names[0]}); weights "
                            "are tuned between two or more", "primary")
    if request.primary not in names:
        raise unprocessable("UnknownObjective", f"primary {request.primary!r} is not an objective "
                            f"of the loop ({', '.join(names)})", "primary")
    seen: set[str] = set()
    for index, guardrail in enumerate(request.guardrails):
        target = f"guardrails[{index}].objective"
        if guardrail.objective not in names:
            raise unprocessable("UnknownObjective", f"{target} {guardrail.objective!r} is not an "
                                f"objective of the loop ({', '.join(names)})", target)
        if guardrail.objective == request.primary:
            raise unprocessable("GuardrailOnPrimary", f"{target}: {guardrail.objective!r} is the "
                                "primary objective; a guardrail protects another one", target)
        if guardrail.objective in seen:
            raise unprocessable("InvalidTuning", f"{target}: {guardrail.objective!r} has two "
                                "guardrails", target)
        seen.add(guardrail.objective)
    split = request.split.model_dump()
    if abs(sum(split.values()) - 1.0) > 1e-9:
        raise unprocessable("InvalidSplit", f"split shares must sum to 1, they sum to "
                            f"{sum(split.values()):g}", "split")
    window = request.window
    if window.until <= window.since:
        raise unprocessable("InvalidWindow", "window.until must be after window.since", "window.until")
    total = count_events(window.since, window.until)
    sizes = dict(zip(("fit", "tune", "holdout"), split_sizes(total, split)))
    small = {name: size for name, size in sizes.items() if size < MIN_SPLIT_EVENTS}
    if small:
        raise unprocessable(
            "TooFewEvents", f"the window holds {total} decisions; split "
            f"{', '.join(f'{k} {v:g}' for k, v in split.items())} leaves "
            f"{', '.join(f'{name} {size}' for name, size in small.items())} (each share needs at "
            f"least {MIN_SPLIT_EVENTS}): widen the window", "window")
    try:
        Regressor(config.vw_args).close()
    except VwArgsError as exc:
        raise unprocessable("InvalidVwArgs", f"the loop's vw_args cannot fit a reward model: {exc}",
                            "vw_args") from None
    return {
        "window": {"since": utc(window.since).isoformat(), "until": utc(window.until).isoformat()},
        "primary": request.primary,
        "guardrails": [g.model_dump() for g in request.guardrails],
        "confidence": request.confidence, "budget": request.budget, "split": split,
        "fit_limit": request.fit_limit, "min_ess": request.min_ess, "seed": request.seed,
        "objectives": names, "current_weights": {o.name: o.weight for o in config.objectives},
    }


class _Split:
    """One share's events as lists, then :class:`TuningArrays`."""

    def __init__(self) -> None:
        self.predictions: list[np.ndarray] = []
        self.logged: list[int] = []
        self.propensity: list[float] = []
        self.outcomes: list[list[float]] = []
        self.first: str | None = None
        self.last: str | None = None

    def add(self, event: LoggedEvent, predictions: np.ndarray, chosen: int, outcomes: list[float]) -> None:
        self.predictions.append(predictions)
        self.logged.append(chosen)
        self.propensity.append(event.probability)
        self.outcomes.append(outcomes)
        self.first = self.first or event.ts.isoformat()
        self.last = event.ts.isoformat()

    def arrays(self) -> TuningArrays:
        width = max(len(p) for p in self.predictions)
        objectives = self.predictions[0].shape[1]
        padded = np.zeros((len(self.predictions), width, objectives))
        allowed = np.zeros((len(self.predictions), width), dtype=bool)
        for row, values in enumerate(self.predictions):
            padded[row, :len(values)] = values
            allowed[row, :len(values)] = True
        return TuningArrays.of(padded, allowed, np.array(self.logged), np.array(self.propensity),
                               np.array(self.outcomes))


class _Lines:
    """The VW text of logged events, remembering action sets (most events offer the same)."""

    def __init__(self, size: int = 1024) -> None:
        self._actions: dict[bytes, tuple[list[str], list[str]]] = {}
        self._size = size

    def __call__(self, event: LoggedEvent) -> tuple[str | None, list[str], int]:
        """The event's shared line, its allowed actions' lines, the logged action's index among
        them."""
        key = orjson.dumps(event.actions)
        cached = self._actions.get(key)
        if cached is None:
            cached = ([a["id"] for a in event.actions],
                      [action_line(a["id"], a.get("features")) for a in event.actions])
            if len(self._actions) < self._size:
                self._actions[key] = cached
        ids, lines = cached
        if event.excluded:
            excluded = set(event.excluded)
            kept = [i for i, action_id in enumerate(ids) if action_id not in excluded]
            ids, lines = [ids[i] for i in kept], [lines[i] for i in kept]
        return shared_line(event.context), lines, ids.index(event.chosen)


def run_tuning(db: Database, loop_id: int, config: LoopConfig, spec: dict[str, Any],
               progress: Progress = lambda fraction: None, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Tune the loop's weights on the spec's window; the job's result (JSON-ready)."""
    since = datetime.fromisoformat(spec["window"]["since"])
    until = datetime.fromisoformat(spec["window"]["until"])
    with db.session() as session:
        total = count_window(loop_id, since, until, session=session)
        learned = training.lineage_total_learned(
            loop_id, training.current_lineage(loop_id, session=session), session=session)
    fit_n, tune_n, holdout_n = split_sizes(total, spec["split"])
    if min(fit_n, tune_n, holdout_n) < MIN_SPLIT_EVENTS:
        raise ValueError(f"the window now holds {total} decisions: too few for the split "
                         f"(fit {fit_n}, tune {tune_n}, holdout {holdout_n})")
    names: list[str] = spec["objectives"]
    if [o.name for o in config.objectives] != names:
        raise ValueError("the loop's objectives changed since the tuning was submitted")
    skip = max(fit_n - spec["fit_limit"], 0)
    with db.session() as session:  # the fit share's older decisions are not read at all
        start = window_position(loop_id, since, until, skip - 1, session=session) if skip else None
    lines_of = _Lines()
    models = [Regressor(config.vw_args) for _ in names]
    learn_scale = None
    fit_sum, fit_square, fitted = np.zeros(len(names)), np.zeros(len(names)), 0
    shares = {"tune": _Split(), "holdout": _Split()}
    try:
        rank = skip
        for page in window_pages(db, loop_id, since, until, page_size, after=start):
            for event in page:
                values = objective_values(config, event.outcomes)
                outcomes = [values[name] for name in names]
                shared, lines, chosen = lines_of(event)
                if rank < fit_n:
                    if learn_scale is None:  # VW learns outcomes of about unit size
                        learn_scale = _learn_scales(page, config, names)
                    for model, value, scale in zip(models, outcomes, learn_scale):
                        model.learn(shared, lines, chosen, value / scale)
                    fit_sum += outcomes
                    fit_square += np.square(outcomes)
                    fitted += 1
                else:
                    predictions = np.array([model.predict(shared, lines) for model in models]).T
                    predictions *= learn_scale
                    share = shares["tune" if rank < fit_n + tune_n else "holdout"]
                    share.add(event, predictions, chosen, outcomes)
                rank += 1
            progress(READ_SHARE * (rank - skip) / (total - skip))
    finally:
        for model in models:
            model.close()
    tune_arrays, holdout_arrays = shares["tune"].arrays(), shares["holdout"].arrays()
    fit_mean = fit_sum / fitted
    fit_std = np.sqrt(np.maximum(fit_square / fitted - fit_mean ** 2, 0.0))
    scales = np.where(np.abs(fit_mean) > 1e-12, np.abs(fit_mean), np.where(fit_std > 0, fit_std, 1.0))
    exploration, note = exploration_for(config.exploration, learned or total)
    problem = Problem(
        objectives=tuple(names), primary=spec["primary"],
        guardrails=tuple(Guardrail(g["objective"], g["max_drop"]) for g in spec["guardrails"]),
        current=np.array([spec["current_weights"][name] for name in names]),
        scales=scales, alpha=1.0 - spec["confidence"], min_ess=spec["min_ess"] * tune_arrays.n)
    result = tune(problem, exploration, tune_arrays, holdout_arrays, spec["budget"], spec["seed"],
                  lambda fraction: progress(READ_SHARE + (1 - READ_SHARE) * fraction))
    result["run"] = {
        "events": {"window": total, "fit": fit_n, "fit_used": fitted, "tune": tune_arrays.n,
                   "holdout": holdout_arrays.n},
        "tune_from": shares["tune"].first, "holdout_from": shares["holdout"].first,
        "exploration": {"algorithm": exploration.algorithm, "parameter": exploration.parameter,
                        "note": note},
        "reward_models": _quality(tune_arrays, names, fit_mean),
    }
    return result


def _learn_scales(page: list[LoggedEvent], config: LoopConfig, names: list[str]) -> np.ndarray:
    """Per objective, the mean absolute outcome of the first page (1 where all are 0)."""
    values = np.array([[objective_values(config, e.outcomes)[n] for n in names] for e in page])
    scale = np.abs(values).mean(axis=0)
    return np.where(scale > 0, scale, 1.0)


def _quality(arrays: TuningArrays, names: list[str], fit_mean: np.ndarray) -> dict[str, Any]:
    """Per objective, on the tune share: the reward model's mean squared error on the logged
    actions, and that of the fit share's mean (R² compares them)."""
    predicted = arrays.logged_predictions()
    out = {}
    for k, name in enumerate(names):
        mse = float(np.mean((arrays.outcomes[:, k] - predicted[:, k]) ** 2))
        baseline = float(np.mean((arrays.outcomes[:, k] - fit_mean[k]) ** 2))
        out[name] = {"mse": mse, "constant_mse": baseline,
                     "r2": 1.0 - mse / baseline if baseline > 0 else None}
    return out
