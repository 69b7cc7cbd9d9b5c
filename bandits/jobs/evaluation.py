"""Evaluation jobs: check a spec against its loop, then stream the window into ``bandits.ope``.

Two passes over the window, in keyset pages (memory does not grow with the window):

1. a reward model for DM/DR, per objective, cross-fitted over two folds (a hash of the event
   id), so each event's prediction comes from the other fold's events (no event is corrected by
   a model that saw it): by default a ridge regression on hashed context × action features
   (:mod:`bandits.jobs.reward_model`), or (``reward_model: "action-mean"``) the mean outcome of
   each action id, without context;
2. per page, each candidate's PMF at every event (VW predicts where a candidate is a model),
   the logged propensity and outcomes, fed to one :class:`bandits.ope.Evaluation` per objective.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import numpy as np

from bandits.errors import unprocessable
from bandits.jobs import candidates as c
from bandits.jobs import slots
from bandits.jobs.reward_model import HashedRidge
from bandits.learning.rewards import objective_values, scalar_reward
from bandits.learning.sampling import seed_for
from bandits.learning.vw import VwArgsError, check_config
from bandits.loop_config import LoopConfig
from bandits.ope import Evaluation, make_estimator
from bandits.ope.errors import OPEInputError, UnknownEstimatorError
from bandits.schemas import EvaluationRequest
from bandits.store import training
from bandits.store.db import Database
from bandits.store.jobs import LoggedEvent, count_window, window_pages
from bandits.store.models import LoopConfigVersion, Model

KIND = "evaluation"
SCALAR = "reward"  # the scalarised reward, beside the objectives
FOLDS = 2
PAGE_SIZE = 1000

Progress = Callable[[float], None]


def checked_spec(request: EvaluationRequest, loop_kind: str, config: LoopConfig,
                 model_exists: Callable[[int], bool]) -> dict[str, Any]:
    """The job's spec as stored (JSON), or a 422 naming what is wrong; nothing is written."""
    window = request.window
    if window.until <= window.since:
        raise unprocessable("InvalidWindow", "window.until must be after window.since", "window.until")
    names = [o.name for o in config.objectives]
    # A loop may name an objective `reward` (the default config does): that objective, then.
    objectives = request.objectives or (names if SCALAR in names else [*names, SCALAR])
    for index, objective in enumerate(objectives):
        if objective not in names and objective != SCALAR:
            raise unprocessable("UnknownObjective", f"objectives[{index}] {objective!r} is not an "
                                f"objective of the loop ({', '.join(names)}) nor {SCALAR!r}",
                                f"objectives[{index}]")
    if len(set(objectives)) != len(objectives):
        raise unprocessable("InvalidEvaluation", "objectives repeat", "objectives")
    estimators = request.estimators
    if loop_kind != "cb" and "estimators" not in request.model_fields_set:
        estimators = slots.DEFAULT_ESTIMATORS[loop_kind]
    labels = []
    for index, spec in enumerate(estimators):
        try:
            estimator = make_estimator(spec)
        except OPEInputError as exc:
            code = "UnknownEstimator" if isinstance(exc, UnknownEstimatorError) else "InvalidEstimator"
            raise unprocessable(code, f"estimators[{index}]: {exc}", f"estimators[{index}]") from None
        if loop_kind != "cb":
            problem = slots.check_estimator(loop_kind, estimator)
            if problem is not None:
                raise unprocessable("UnsupportedEstimator", f"estimators[{index}]: {problem}",
                                    f"estimators[{index}]")
        elif estimator.kind != "bandit":
            raise unprocessable("UnknownEstimator", f"estimators[{index}]: {estimator.label} is a "
                                "slate estimator; a cb loop needs single-slot ones", f"estimators[{index}]")
        labels.append(estimator.label)
    if len(set(labels)) != len(labels):
        raise unprocessable("InvalidEvaluation", f"estimators repeat: {labels}", "estimators")
    candidates = [candidate.model_dump(exclude_none=True) for candidate in request.candidates]
    if not any(spec["kind"] == "logging" for spec in candidates):
        candidates.insert(0, {"kind": "logging"})
    for index, spec in enumerate(candidates):
        _check_candidate(spec, config, model_exists, f"candidates[{index}]")
    named = [c.candidate_name(spec) for spec in candidates]
    if len(set(named)) != len(named):
        raise unprocessable("InvalidEvaluation", f"candidate names repeat: {named}; give them "
                            "distinct `name`s", "candidates")
    return {
        "window": {"since": utc(window.since).isoformat(), "until": utc(window.until).isoformat()},
        "kind": loop_kind, "reward_model": request.reward_model,
        "candidates": candidates, "objectives": objectives, "estimators": estimators,
        "confidence": request.confidence, "bootstrap": request.bootstrap, "seed": request.seed,
    }


def _check_candidate(spec: dict[str, Any], config: LoopConfig, model_exists, target: str) -> None:
    if spec["kind"] == "model" and spec["version"] != 0 and not model_exists(spec["version"]):
        raise unprocessable("ModelNotFound", f"{target}: the loop has no model version "
                            f"{spec['version']}", f"{target}.version")
    if spec["kind"] == "vw":
        try:
            check_config(c.replay_config(config, spec))
        except VwArgsError as exc:
            raise unprocessable("InvalidVwArgs", f"{target}: VW refused the arguments: {exc}",
                                f"{target}.vw_args") from None
        except ValueError as exc:  # pydantic: a reserved flag, a bad exploration
            raise unprocessable("InvalidVwArgs", f"{target}: {exc}", f"{target}") from None


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _allowed(event: LoggedEvent) -> list[int]:
    excluded = set(event.excluded)
    return [i for i, action in enumerate(event.actions) if action["id"] not in excluded]


class FoldMeans:
    """Cross-fitted per-action mean outcome, per objective (the DM/DR reward model)."""

    def __init__(self, objectives: list[str], loop_id: int) -> None:
        self.objectives = objectives
        self._loop_id = loop_id
        # objective -> action id -> [sum, count] per fold
        self._sums: dict[str, dict[str, np.ndarray]] = {o: {} for o in objectives}
        self._totals = {o: np.zeros((FOLDS, 2)) for o in objectives}

    def fold(self, event_id: str) -> int:
        return seed_for(self._loop_id, event_id) % FOLDS

    def fit(self, event: LoggedEvent, rewards: dict[str, float]) -> None:
        fold = self.fold(event.event_id)
        for objective in self.objectives:
            cell = self._sums[objective].setdefault(event.chosen, np.zeros((FOLDS, 2)))
            cell[fold] += (rewards[objective], 1.0)
            self._totals[objective][fold] += (rewards[objective], 1.0)

    def predict(self, objective: str, event_id: str, action_ids: list[str]) -> np.ndarray:
        """q̂ for each action, from the events of the other folds (their mean for an action
        they never took; 0 when they hold no event)."""
        fold = self.fold(event_id)
        total = self._totals[objective].sum(axis=0) - self._totals[objective][fold]
        default = total[0] / total[1] if total[1] > 0 else 0.0
        out = np.full(len(action_ids), default)
        sums = self._sums[objective]
        for index, action_id in enumerate(action_ids):
            cell = sums.get(action_id)
            if cell is not None:
                other = cell.sum(axis=0) - cell[fold]
                if other[1] > 0:
                    out[index] = other[0] / other[1]
        return out


def _rewards(config: LoopConfig, event: LoggedEvent) -> dict[str, float]:
    values = objective_values(config, event.outcomes)
    values.setdefault(SCALAR, scalar_reward(config, event.outcomes))
    return values


def _open_candidate(spec: dict[str, Any], config: LoopConfig, db: Database, loop_id: int) -> c.Candidate:
    kind = spec["kind"]
    if kind == "logging":
        return c.Logging()
    if kind == "uniform":
        return c.Uniform()
    if kind == "baseline":
        return c.Baseline()
    if kind == "constant":
        return c.Constant(spec["action"])
    if kind == "vw":
        return c.Replay(c.replay_config(config, spec))
    assert kind == "model"
    return c.Snapshot(*_snapshot(spec, config, db, loop_id))


def _snapshot(spec: dict[str, Any], config: LoopConfig, db: Database,
              loop_id: int) -> tuple[LoopConfig, int, bytes | None]:
    """A model version's (config of its lineage, version, blob)."""
    if spec["version"] == 0:
        return config, 0, None
    with db.session() as session:
        blob = training.model_blob(loop_id, spec["version"], session=session)
        model = session.get(Model, (loop_id, spec["version"]))
        lineage = session.get(LoopConfigVersion, (loop_id, model.lineage)) if model else None
    if blob is None or model is None:
        raise ValueError(f"model version {spec['version']} no longer exists")
    return (LoopConfig.model_validate(lineage.config) if lineage else config, spec["version"], blob)


def run_evaluation(db: Database, loop_id: int, config: LoopConfig, spec: dict[str, Any],
                   progress: Progress = lambda fraction: None, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Evaluate the spec's candidates on the window, reading ``page_size`` decisions at a time;
    the job's result (JSON-ready). The result does not depend on ``page_size``."""
    if spec.get("kind", "cb") != "cb":
        return _run_slots(db, loop_id, config, spec, progress, page_size)
    since, until, total = _window(db, loop_id, spec)
    objectives: list[str] = spec["objectives"]
    done, steps = 0, 2 * total

    ridge = spec.get("reward_model", "ridge") == "ridge"
    model: FoldMeans | HashedRidge = (HashedRidge(objectives, loop_id) if ridge
                                      else FoldMeans(objectives, loop_id))
    for page in window_pages(db, loop_id, since, until, page_size):
        if isinstance(model, HashedRidge):
            model.fit(page, [_rewards(config, event) for event in page])
        else:
            for event in page:
                model.fit(event, _rewards(config, event))
        done += len(page)
        progress(done / steps)

    names = [c.candidate_name(candidate) for candidate in spec["candidates"]]
    evaluations = {
        objective: Evaluation(spec["estimators"], candidates=names, n_bootstrap=spec["bootstrap"],
                              random_state=spec["seed"] if spec["bootstrap"] else None)
        for objective in objectives
    }
    with _opened(lambda candidate: _open_candidate(candidate, config, db, loop_id),
                 spec["candidates"]) as policies:
        by_name = dict(zip(names, policies))
        _second_pass(db, loop_id, since, until, page_size, progress, done, steps,
                     lambda page, start: _feed(page, start, config, model, by_name, evaluations))
    return _result(spec, evaluations, total)


def _window(db: Database, loop_id: int, spec: dict[str, Any]) -> tuple[datetime, datetime, int]:
    """The spec's window and how many decisions it holds; an empty window is an error."""
    since = datetime.fromisoformat(spec["window"]["since"])
    until = datetime.fromisoformat(spec["window"]["until"])
    with db.session() as session:
        total = count_window(loop_id, since, until, session=session)
    if total == 0:
        raise ValueError(f"no decisions between {since.isoformat()} and {until.isoformat()}")
    return since, until, total


@contextmanager
def _opened(open_one: Callable[[dict[str, Any]], Any], specs: list[dict[str, Any]]) -> Iterator[list[Any]]:
    """The candidates, opened in order; every one opened is closed at the end."""
    opened: list[Any] = []
    try:
        for spec in specs:
            opened.append(open_one(spec))
        yield opened
    finally:
        for policy in opened:
            policy.close()


def _second_pass(db: Database, loop_id: int, since: datetime, until: datetime, page_size: int,
                 progress: Progress, done: int, steps: int,
                 feed: Callable[[list[LoggedEvent], int], None]) -> None:
    """Feed the window to the estimators page by page (``feed(page, position of its first
    event)``), reporting progress after the first pass's ``done`` of ``steps``."""
    start = 0
    for page in window_pages(db, loop_id, since, until, page_size):
        feed(page, start)
        start += len(page)
        done += len(page)
        progress(done / steps)


def _feed(page: list[LoggedEvent], start: int, config: LoopConfig, model: FoldMeans | HashedRidge,
          policies: dict[str, c.Candidate], evaluations: dict[str, Evaluation]) -> None:
    n = len(page)
    propensity = np.array([event.probability for event in page])
    rewards = {o: np.empty(n) for o in evaluations}
    q_logged = {o: np.empty(n) for o in evaluations}
    arrays = {name: {"target_probability": np.empty(n), "unsupported_mass": np.empty(n),
                     **{f"q_target:{o}": np.empty(n) for o in evaluations}} for name in policies}
    ridge = model.predict_page(page) if isinstance(model, HashedRidge) else None
    for row, event in enumerate(page):
        allowed = _allowed(event)
        ids = [action["id"] for action in event.actions]
        chosen = ids.index(event.chosen)
        values = _rewards(config, event)
        unsupported = np.array([p <= 0.0 for p in event.pmf])
        predictions = (ridge[row] if ridge is not None else
                       {o: model.predict(o, event.event_id, ids) for o in evaluations})
        for objective in evaluations:
            rewards[objective][row] = values[objective]
            q_logged[objective][row] = predictions[objective][chosen]
        scalar = scalar_reward(config, event.outcomes)  # what the trainer learns
        for name, policy in policies.items():
            pmf = np.asarray(policy.pmf(event, allowed))
            policy.observe(event, allowed, scalar)
            target = arrays[name]
            # The logging policy's own probability, exactly: its weights are all 1.
            target["target_probability"][row] = (
                event.probability if isinstance(policy, c.Logging) else pmf[chosen])
            target["unsupported_mass"][row] = float(pmf[unsupported].sum())
            for objective in evaluations:
                target[f"q_target:{objective}"][row] = float(pmf @ predictions[objective])
    for objective, evaluation in evaluations.items():
        evaluation.update(
            reward=rewards[objective], propensity=propensity, q_logged=q_logged[objective],
            start=start,
            candidates={name: {"target_probability": target["target_probability"],
                               "unsupported_mass": target["unsupported_mass"],
                               "q_target": target[f"q_target:{objective}"]}
                        for name, target in arrays.items()})


def _run_slots(db: Database, loop_id: int, config: LoopConfig, spec: dict[str, Any],
               progress: Progress, page_size: int) -> dict[str, Any]:
    """``ccb`` and ``slates``: pass 1 counts the events and the most slots an event has, pass 2
    feeds the estimators (see :mod:`bandits.jobs.slots`)."""
    kind = spec["kind"]
    since, until, total = _window(db, loop_id, spec)
    done, steps, width = 0, 2 * total, 1
    for page in window_pages(db, loop_id, since, until, page_size):
        width = max(width, *(len(event.slots or []) for event in page))
        done += len(page)
        progress(done / steps)
    names = [c.candidate_name(candidate) for candidate in spec["candidates"]]
    evaluations = slots.SlotEvaluations(kind, width, spec, names)

    def open_one(candidate: dict[str, Any]) -> slots.SlotCandidate:
        snapshot = _snapshot(candidate, config, db, loop_id) if candidate["kind"] == "model" else None
        return slots.open_candidate(kind, candidate, config, snapshot)

    with _opened(open_one, spec["candidates"]) as policies:
        by_name = dict(zip(names, policies))
        _second_pass(db, loop_id, since, until, page_size, progress, done, steps,
                     lambda page, start: evaluations.feed(config, page, start, by_name))
    return evaluations.result(spec, _cells)


def _cells(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A report's estimates as ``{candidate: {estimator: cell}}`` (estimate, intervals, lift over
    logging, diagnostics)."""
    lifts = {(lift["candidate"], lift["estimator"]): lift for lift in report["lifts"]}
    cells: dict[str, dict[str, Any]] = {}
    for estimate in report["estimates"]:
        lift = lifts[(estimate["candidate"], estimate["estimator"])]
        cells.setdefault(estimate["candidate"], {})[estimate["estimator"]] = {
            "estimate": estimate["value"], "standard_error": estimate["standard_error"],
            "intervals": estimate["intervals"],
            "lift": {"value": lift["value"], "standard_error": lift["standard_error"],
                     "intervals": lift["intervals"]},
            "diagnostics": estimate["diagnostics"],
        }
    return cells


def _result(spec: dict[str, Any], evaluations: dict[str, Evaluation], total: int) -> dict[str, Any]:
    """Per candidate, per objective, per estimator: the estimate, its intervals, its lift over
    the logging policy and the weight diagnostics; and each objective's logged mean."""
    alpha = 1.0 - spec["confidence"]
    results: dict[str, dict[str, Any]] = {}
    logged_mean: dict[str, float] = {}
    for objective, evaluation in evaluations.items():
        report = evaluation.result(alpha=alpha).to_dict()
        lifts = {(lift["candidate"], lift["estimator"]): lift for lift in report["lifts"]}
        for estimate in report["estimates"]:
            lift = lifts[(estimate["candidate"], estimate["estimator"])]
            logged_mean[objective] = lift["baseline_value"]
            results.setdefault(estimate["candidate"], {}).setdefault(objective, {})[estimate["estimator"]] = {
                "estimate": estimate["value"], "standard_error": estimate["standard_error"],
                "intervals": estimate["intervals"],
                "lift": {"value": lift["value"], "standard_error": lift["standard_error"],
                         "intervals": lift["intervals"]},
                "diagnostics": estimate["diagnostics"],
            }
    return {"n": total, "confidence": spec["confidence"], "logged_mean": logged_mean,
            "candidates": results}
