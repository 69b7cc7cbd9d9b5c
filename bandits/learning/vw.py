"""The only module that imports ``vowpalwabbit``.

A :class:`Policy` holds one VW workspace for a loop and predicts PMFs over ADF examples. VW
workspaces are not thread-safe, so predictions take a lock (a predict over ten actions costs tens
of microseconds).
"""

from __future__ import annotations

import math
import os
import shlex
import tempfile
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import pylibvw
import vowpalwabbit

from bandits.learning.rewards import cost
from bandits.loop_config import Bag, Cover, Epsilon, LoopConfig, RND, Softmax, SquareCB

T = TypeVar("T")


class VwArgsError(ValueError):
    """VW refused the arguments; the message is VW's own."""


def exploration_args(config: LoopConfig) -> str:
    exploration = config.exploration
    if isinstance(exploration, SquareCB):
        return (
            f"--squarecb --gamma_scale {exploration.gamma_scale:g}"
            f" --gamma_exponent {exploration.gamma_exponent:g}"
        )
    if isinstance(exploration, Epsilon):
        return f"--epsilon {exploration.epsilon:g}"
    if isinstance(exploration, Softmax):
        return f"--softmax --lambda {exploration.lambda_:g}"
    if isinstance(exploration, Bag):
        return f"--bag {exploration.size} --epsilon {exploration.epsilon:g}"
    if isinstance(exploration, Cover):
        return f"--cover {exploration.size} --epsilon {exploration.epsilon:g}"
    if isinstance(exploration, RND):
        return f"--rnd {exploration.size} --epsilon {exploration.epsilon:g}"
    raise AssertionError(f"unhandled exploration {exploration!r}")


# The VW reduction for each decision kind (see bandits.learning.examples for their text formats).
KIND_ARGS = {"cb": "--cb_explore_adf", "ccb": "--ccb_explore_adf", "slates": "--slates"}


def vw_arguments(config: LoopConfig) -> str:
    """The full VW command line for a loop's model."""
    args = f"{KIND_ARGS[config.kind]} {exploration_args(config)} --quiet"
    return f"{args} {config.vw_args}" if config.vw_args else args


def _workspace(arguments: str) -> vowpalwabbit.Workspace:
    try:
        return vowpalwabbit.Workspace(arguments)
    except RuntimeError as exc:
        raise VwArgsError(str(exc).strip() or "VW refused the arguments") from None


def check_config(config: LoopConfig) -> None:
    """Raise :class:`VwArgsError` with VW's complaint when VW cannot build this loop's model."""
    workspace = _workspace(vw_arguments(config))
    workspace.finish()


def _load(arguments: str, blob: bytes | None) -> vowpalwabbit.Workspace:
    """A workspace with ``arguments``, starting from a saved model when ``blob`` is given."""
    if blob is None:
        return _workspace(arguments)
    fd, path = tempfile.mkstemp(prefix="bandits-model-", suffix=".vw")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(blob)
        return _workspace(f"{arguments} -i {path}")
    finally:
        os.unlink(path)


def _save(workspace: vowpalwabbit.Workspace) -> bytes:
    fd, path = tempfile.mkstemp(prefix="bandits-model-", suffix=".vw")
    os.close(fd)
    try:
        workspace.save(path)
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.unlink(path)


def _predict(workspace: vowpalwabbit.Workspace, shared: str | None, actions: list[str]) -> list[float]:
    text = "\n".join([shared, *actions] if shared is not None else actions)
    return _predicted(workspace, text, lambda first: list(first.get_action_scores()))


def _predict_slots(workspace: vowpalwabbit.Workspace, text: str) -> list[list[tuple[int, float]]]:
    return _predicted(workspace, text, lambda first: [list(slot) for slot in first.get_decision_scores()])


def _predicted(workspace: vowpalwabbit.Workspace, text: str, read: Callable[[Any], T]) -> T:
    """``read`` of the first example (where VW puts a multi-line prediction) once ``text`` is
    predicted.

    pylibvw directly: Workspace.predict wraps every line in a Python Example object, which costs
    five times the prediction itself. Same parse, same predict, same result.
    """
    examples = workspace._parse(text)
    try:
        pylibvw.vw.predict_multi(workspace, examples)
        return read(examples[0])
    finally:
        pylibvw.vw._finish_example_multi_ex(workspace, examples)


def _learn_text(workspace: vowpalwabbit.Workspace, text: str) -> None:
    examples = workspace._parse(text)
    try:
        pylibvw.vw.learn_multi(workspace, examples)
    finally:
        pylibvw.vw._finish_example_multi_ex(workspace, examples)


def _learn_adf(workspace: vowpalwabbit.Workspace, shared: str | None, actions: list[str],
               chosen: int, cost: float, probability: float) -> None:
    """Learn one ADF example: the ``chosen`` action's line carries the label."""
    labelled = list(actions)
    labelled[chosen] = f"0:{cost!r}:{probability!r} {actions[chosen]}"
    _learn_text(workspace, "\n".join([shared, *labelled] if shared is not None else labelled))


def check_model(config: LoopConfig, blob: bytes) -> None:
    """Raise :class:`VwArgsError` when ``blob`` is not a model for this loop: VW cannot load it
    with the loop's arguments, or it brings reductions of its own (a model of another kind, or
    with another exploration), which VW would otherwise add silently."""
    arguments = vw_arguments(config)
    loaded = _load(arguments, blob)
    try:
        fresh = _workspace(arguments)
        try:
            theirs, ours = loaded.get_enabled_learners(), fresh.get_enabled_learners()
        finally:
            fresh.finish()
    finally:
        loaded.finish()
    if theirs != ours:
        raise VwArgsError(
            f"the file is a model for other VW reductions ({', '.join(theirs)}) than this "
            f"{config.kind} loop's ({', '.join(ours)}); import a model made with the loop's "
            f"kind and exploration ({arguments})"
        )


class Policy:
    """A loop's model: predicts the PMF for one decision."""

    def __init__(self, config: LoopConfig, model_version: int = 0, blob: bytes | None = None) -> None:
        self.arguments = self.arguments_for(config)
        self.model_version = model_version
        self._workspace = _load(self.arguments, blob)
        self._lock = threading.Lock()
        self._kept = _KeptActions(self._workspace)

    @staticmethod
    def arguments_for(config: LoopConfig) -> str:
        return vw_arguments(config)

    def predict(self, shared: str | None, actions: list[str]) -> list[float]:
        """PMF aligned with ``actions`` (VW text lines, see :mod:`bandits.learning.features`)."""
        with self._lock:
            return _predict(self._workspace, shared, actions)

    def predict_slots(self, text: str) -> list[list[tuple[int, float]]]:
        """For a multi-slot example (``ccb`` or ``slates`` text, see
        :mod:`bandits.learning.examples`): per slot, (action index, probability) pairs, the
        action VW drew (with the slot's seed) first. Indices are into the pool for ``ccb``, into
        the slot's own actions for ``slates``."""
        with self._lock:
            return _predict_slots(self._workspace, text)

    def predict_ccb(self, pool: Hashable, actions: Callable[[], str], text: str
                    ) -> list[list[tuple[int, float]]]:
        """:meth:`predict_slots` for a ``ccb`` example whose action lines are left out of
        ``text`` (its shared line, then its slot lines): they are those of ``pool``, a key for
        one set of action lines, which ``actions()`` writes. The actions' VW examples are kept
        from one prediction to the next (see :class:`_KeptActions`). Same prediction as
        ``predict_slots`` over the whole text."""
        with self._lock:
            return self._kept.predict(pool, actions, text)

    def close(self) -> None:
        with self._lock:
            self._kept.release()
            self._workspace.finish()

    def __del__(self) -> None:
        # A replaced model's policy is dropped, not closed: its kept examples go back to its
        # workspace before the workspace is freed (VW frees only the examples it got back).
        kept = getattr(self, "_kept", None)
        if kept is not None:
            kept.release()


KEPT_ACTION_EXAMPLES = 256  # per policy; a parsed VW example takes about 30 KB (measured)


class _KeptActions:
    """The parsed VW examples of a few ``ccb`` action pools, kept by a :class:`Policy`.

    A product sends the same actions for many requests, and VW's parse of their lines costs
    about a third of a ``ccb`` prediction over 20 actions. ``--ccb_explore_adf`` gives the action
    examples back as it found them (it adds each slot's features to the shared example, and
    every change it makes to an action example it undoes), so the same examples serve the next
    prediction: only the shared and slot lines are parsed each time, and only they go back to
    the workspace afterwards. tests/learning/test_vw_kept.py checks the predictions against
    fresh parses. Pools are kept up to KEPT_ACTION_EXAMPLES examples, the oldest dropped first;
    a dropped pool's examples go back to the workspace (a last prediction, so that VW finishes
    them as it finishes every example). Callers hold the policy's lock.
    """

    def __init__(self, workspace: vowpalwabbit.Workspace) -> None:
        self._workspace = workspace
        self._pools: dict[Hashable, list[Any]] = {}
        self._held = 0

    def predict(self, pool: Hashable, actions: Callable[[], str], text: str
                ) -> list[list[tuple[int, float]]]:
        workspace = self._workspace
        kept = self._pools.get(pool)
        fresh = kept is None
        if kept is None:
            kept = workspace._parse(actions())
        try:
            head = workspace._parse(text)
        except BaseException:
            if fresh:
                self._give_back(kept)
            raise
        examples = [head[0], *kept, *head[1:]]
        try:
            pylibvw.vw.predict_multi(workspace, examples)
            scores = [list(slot) for slot in head[0].get_decision_scores()]
        except BaseException:
            # VW stopped part way: the actions may not be as it found them; they are not kept
            if not fresh:
                self._forget(pool)
            pylibvw.vw._finish_example_multi_ex(workspace, examples)
            raise
        if fresh and len(kept) > KEPT_ACTION_EXAMPLES:  # too many to keep
            pylibvw.vw._finish_example_multi_ex(workspace, examples)
            return scores
        if fresh:
            while self._pools and self._held + len(kept) > KEPT_ACTION_EXAMPLES:
                self._give_back(self._forget(next(iter(self._pools))))
            self._pools[pool] = kept
            self._held += len(kept)
        pylibvw.vw._finish_example_multi_ex(workspace, head)
        return scores

    def release(self) -> None:
        """Give every kept example back to the workspace."""
        while self._pools:
            self._give_back(self._forget(next(iter(self._pools))))

    def _forget(self, pool: Hashable) -> list[Any]:
        kept = self._pools.pop(pool)
        self._held -= len(kept)
        return kept

    def _give_back(self, kept: list[Any]) -> None:
        """Return action examples to the workspace: VW finishes examples after a prediction."""
        head = self._workspace._parse("ccb shared |\nccb slot 'seed=0 |")
        examples = [head[0], *kept, *head[1:]]
        try:
            pylibvw.vw.predict_multi(self._workspace, examples)
        finally:
            pylibvw.vw._finish_example_multi_ex(self._workspace, examples)


class Learner:
    """The trainer's VW workspace: learns logged decisions one by one, saves snapshots."""

    def __init__(self, config: LoopConfig, blob: bytes | None = None) -> None:
        self.arguments = vw_arguments(config)
        self._workspace = _load(self.arguments, blob)

    def learn(
        self, shared: str | None, actions: list[str], chosen: int, cost: float, probability: float
    ) -> None:
        """Learn one decision: ``actions`` are the VW lines of the actions that were offered,
        ``chosen`` the index among them of the one shown, with its cost and logged probability."""
        _learn_adf(self._workspace, shared, actions, chosen, cost, probability)

    def learn_text(self, text: str) -> None:
        """Learn one labelled multi-slot example (see :mod:`bandits.learning.examples`)."""
        _learn_text(self._workspace, text)

    def predict(self, shared: str | None, actions: list[str]) -> list[float]:
        return _predict(self._workspace, shared, actions)

    def predict_slots(self, text: str) -> list[list[tuple[int, float]]]:
        return _predict_slots(self._workspace, text)

    def snapshot(self) -> bytes:
        return _save(self._workspace)

    def close(self) -> None:
        self._workspace.finish()


STEP_SIZE_OPTIONS = ("-l", "--learning_rate", "--power_t", "--initial_t",
                     "--decay_learning_rate")


def without_step_size(vw_args: str) -> str:
    """``vw_args`` without the options that set VW's step size (``-l 0.05``, ``--power_t=0``)."""
    tokens, kept, skip = shlex.split(vw_args), [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in STEP_SIZE_OPTIONS:
            skip = True
        elif token.startswith(tuple(f"{option}=" for option in STEP_SIZE_OPTIONS)) or (
                token.startswith("-l") and not token.startswith("--") and len(token) > 2):
            continue  # --power_t=0, -l0.05
        else:
            kept.append(token)
    return shlex.join(kept)


VW_LEARNING_RATE = 0.5  # VW's default -l


class Regressor:
    """A regression of one outcome on (context, action), for reward models (weight tuning).

    ``--cb_adf --cb_type mtr``: VW regresses the outcome of the logged action on its features,
    and one predict scores every action. ``vw_args`` are the loop's (its interactions, its bits)
    without its step-size options (:func:`without_step_size`): a loop may learn slowly on
    purpose, but a reward model is fitted once, on rare actions too, with VW's default schedule.
    The outcome's sign flips through :func:`bandits.learning.rewards.cost` both ways.

    Learning takes the shared line and the logged action's line only (MTR learns that one
    alone; parsing the others cost two thirds of a fit over 10 actions). What the other lines
    changed: MTR weighs each event by (events seen / actions seen), 1/A for A actions, and under
    VW's adaptive, normalised updates a constant weight w acts as the step size times √w. So a
    regressor for events of ``actions`` actions (A, on average) learns with step size 0.5 √(1/A),
    which reproduces the full fit when every event has A actions: the predictions agree to 1e-7
    (a test), and over 50,000 decisions of the simulator's world with 5, 10 and 30 actions the
    models' errors against the truth agree to 4 digits. (Under other update rules the loop's
    ``vw_args`` might choose, e.g. ``--sgd``, the equivalence is only approximate.)
    """

    def __init__(self, vw_args: str = "", blob: bytes | None = None,
                 actions: float | None = None) -> None:
        """``blob``: a saved model to predict with; ``actions``: the mean number of actions of
        the events it will learn (sets the step size; None: VW's default)."""
        step = ("" if actions is None
                else f" -l {VW_LEARNING_RATE / math.sqrt(max(actions, 1.0))!r}")
        self.arguments = (f"--cb_adf --cb_type mtr --quiet{step} "
                          f"{without_step_size(vw_args)}").strip()
        self._workspace = _load(self.arguments, blob)

    def save(self) -> bytes:
        return _save(self._workspace)

    def learn(self, shared: str | None, action: str, value: float) -> None:
        """Learn that ``action`` (its line) had outcome ``value`` in the context ``shared``."""
        _learn_adf(self._workspace, shared, [action], 0, cost(float(value)), 1.0)

    def predict(self, shared: str | None, actions: list[str]) -> list[float]:
        """The predicted outcome of each action, aligned with ``actions``."""
        return predict_each([self], shared, actions)[0]

    def close(self) -> None:
        self._workspace.finish()


def predict_each(regressors: list[Regressor], shared: str | None,
                 actions: list[str]) -> list[list[float]]:
    """``[r.predict(shared, actions) for r in regressors]`` with one parse: regressors built with
    the same arguments hash and lay out an example alike, so the first one's parse serves all
    (a test checks the predictions are the same). Scoring with three reward models spent half
    its time parsing."""
    if not regressors:
        return []
    first = regressors[0]
    if any(r.arguments != first.arguments for r in regressors):
        raise ValueError("predict_each needs regressors with the same VW arguments")
    text = "\n".join([shared, *actions] if shared is not None else actions)
    examples = first._workspace._parse(text)
    try:
        out = []
        for regressor in regressors:
            pylibvw.vw.predict_multi(regressor._workspace, examples)
            out.append([cost(score) for score in examples[0].get_action_scores()])
        return out
    finally:
        pylibvw.vw._finish_example_multi_ex(first._workspace, examples)


def namespace_feature_counts(lines: list[str]) -> list[dict[str, int]]:
    """For each VW text line, how many features VW parsed into each namespace (first letter).

    Used to check that featurised text means to VW what it means to us.
    """
    workspace = _workspace("--cb_explore_adf --quiet")
    try:
        counts = []
        examples = workspace.parse(lines)
        for example in examples:
            per_namespace = {}
            for index in range(example.num_namespaces()):
                per_namespace[chr(example.namespace(index))] = example.num_features_in(index)
            counts.append(per_namespace)
        workspace.finish_example(examples)
        return counts
    finally:
        workspace.finish()
