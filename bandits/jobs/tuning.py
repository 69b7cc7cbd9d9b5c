"""Weight-tuning jobs: check a spec against its loop, read the window, tune, confirm.

The window is split by time (rank order) into fit / tune / holdout shares
(:mod:`bandits.jobs.tuning_reading` reads them): on the fit share (at most ``fit_limit`` of its
newest decisions; the older ones are not read) one VW regression per objective learns the logged
action's outcome; the tune and holdout shares are read by two child processes whose copies of
those models score every allowed action. :func:`bandits.tuning.tune` searches weights on the tune
share with those scores, then confirms its best candidates with the policy the loop would
actually learn with them (its own VW model trained on the fit share with the scalar reward of
those weights), chooses among the confirmed ones and re-estimates the choice on the holdout. The
reward models and the trained policies never see the events they are judged on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from bandits.errors import unprocessable
from bandits.jobs import tuning_reading as reading
from bandits.jobs.evaluation import utc
from bandits.learning.vw import Regressor, VwArgsError
from bandits.loop_config import LoopConfig
from bandits.schemas import TuningRequest
from bandits.store import training
from bandits.store.db import Database
from bandits.store.jobs import count_window, window_position
from bandits.tuning import Guardrail, Problem, TuningArrays, exploration_for, tune

KIND = "tuning"
MIN_SPLIT_EVENTS = 100
PAGE_SIZE = 1000
READ_SHARE, SEARCH_SHARE = 0.6, 0.3  # of the progress bar; the rest: confirming with trained models
CONFIRM = 3  # distinct policies among the search's best, confirmed by training the loop's model

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
    with db.session() as session:  # where each part starts; the fit share's older part is not read
        starts = [window_position(loop_id, since, until, rank - 1, session=session) if rank else None
                  for rank in (skip, fit_n, fit_n + tune_n)]
    window = reading.Window(loop_id, since, until, page_size, names)
    read = fit_n - skip + tune_n + holdout_n
    # The children read the tune and holdout shares while this process fits the reward models.
    parts = reading.Parts(db, config, window, [(starts[1], tune_n), (starts[2], holdout_n)])
    try:
        fitted = reading.fit(db, config, window, starts[0], fit_n - skip,
                             lambda done: progress(READ_SHARE * (done + parts.done) / read))
        parts.score(fitted, lambda done: progress(READ_SHARE * (fit_n - skip + done) / read))
        tune_arrays, holdout_arrays = (share.arrays() for share in parts.shares)

        def confirm(weights: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
            # Training and the children's predictions take a while: keep the job's claim.
            def heartbeat() -> None:
                progress(READ_SHARE + SEARCH_SHARE)

            models = [reading.train(config, fitted, w, heartbeat) for w in weights]
            tune_pmfs, holdout_pmfs = parts.pmfs(models, heartbeat)
            return list(zip(tune_pmfs, holdout_pmfs))

        exploration, note = exploration_for(config.exploration, learned or total)
        problem = Problem(
            objectives=tuple(names), primary=spec["primary"],
            guardrails=tuple(Guardrail(g["objective"], g["max_drop"]) for g in spec["guardrails"]),
            current=np.array([spec["current_weights"][name] for name in names]),
            scales=fitted.scales(), alpha=1.0 - spec["confidence"],
            min_ess=spec["min_ess"] * tune_arrays.n)
        result = tune(problem, exploration, tune_arrays, holdout_arrays, spec["budget"], spec["seed"],
                      lambda fraction: progress(READ_SHARE + SEARCH_SHARE * fraction),
                      confirm=confirm, confirm_count=spec.get("confirm", CONFIRM),
                      score_many=parts.score_many)
    finally:
        parts.close()
    result["run"] = {
        "events": {"window": total, "fit": fit_n, "fit_used": fitted.count, "tune": tune_arrays.n,
                   "holdout": holdout_arrays.n},
        "tune_from": parts.shares[0].first, "holdout_from": parts.shares[1].first,
        "exploration": {"algorithm": exploration.algorithm, "parameter": exploration.parameter,
                        "note": note},
        "reward_models": _quality(tune_arrays, names, fitted.mean),
    }
    return result


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
