"""What a tuning job reads and computes from the log: reward models, every action's scores, and
the policies trained with candidate weights (:mod:`bandits.jobs.tuning` runs the job).

- :func:`fit`: one VW regression per objective (:class:`~bandits.learning.vw.Regressor`) on the
  fit share, which is also kept in memory (VW text, logged action, propensity, outcomes) for
  :func:`train`.
- :class:`Parts`: the tune and holdout shares, each read and scored by a child process of its own
  (``python -m bandits.jobs.tuning_reading``; VW holds the GIL, so threads would not help), or
  here one after the other when the machine has one core or the database is an in-memory SQLite.
  The children start reading as soon as the job knows where their shares start, while this
  process fits the reward models, and score once they receive them (:meth:`Parts.score`). They
  keep their share's VW text, and later give the probabilities of trained policies at every event
  (:meth:`Parts.pmfs`).
- :func:`train`: the model the loop would learn with given weights: its own VW configuration and
  exploration, the scalar reward with those weights, the fit share in time order (as a rebuild
  learns the log).

Child protocol: pickles with an 8-byte length, on stdin (the work, then the reward models, then
requests: ``("pmfs", trained models)``, ``("scorer", a Scorer)``, ``("score", weight vectors)``,
or None to stop) and stdout (the scored share, then one answer per pmfs or score request);
progress of its reading on stderr, one count a line. The search's candidates are scored by the
children too (:meth:`Parts.score_many`): numpy's operations on the scorer's chunks hold the GIL,
so threads scored no faster than one process, while two processes score 1.9 times as many.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from itertools import chain, islice
from dataclasses import dataclass, field
from datetime import datetime
from queue import Empty, Queue
from typing import Any, BinaryIO

import numpy as np
import orjson

from bandits.learning.features import action_line, shared_line
from bandits.learning.rewards import cost, objective_values
from bandits.learning.vw import Learner, Policy, Regressor, predict_each
from bandits.loop_config import LoopConfig
from bandits.store.db import Database
from bandits.store.jobs import LoggedText, window_text_pages
from bandits.tuning import Score, Scorer, TuningArrays
from bandits.tuning.search import score_here

PROCESSES = min(os.cpu_count() or 1, 2)
SCORE_BATCH = 16  # weight vectors a child scores per message
HEARTBEAT_SECONDS = 1.0

Text = tuple[str | None, list[str], int]  # shared line, allowed actions' lines, logged index


@dataclass(frozen=True)
class Window:
    loop_id: int
    since: datetime
    until: datetime
    page_size: int
    objectives: list[str]

    def events(self, db: Database, after: tuple[datetime, str] | None,
               count: int) -> Iterator[LoggedText]:
        """``count`` decisions of the window after ``after`` (None: from its start), in order."""
        left = count
        for page in window_text_pages(db, self.loop_id, self.since, self.until, self.page_size,
                                      after=after):
            yield from page[:left]
            left -= min(len(page), left)
            if left == 0:
                return


class Lines:
    """The VW text of logged events, remembering action sets (most events offer the same) by
    their JSON text, so a list seen before is not even parsed."""

    def __init__(self, size: int = 1024) -> None:
        self._actions: dict[str, tuple[list[str], list[str]]] = {}
        self._size = size

    def __call__(self, event: LoggedText) -> Text:
        cached = self._actions.get(event.actions)
        if cached is None:
            actions = orjson.loads(event.actions)
            cached = ([a["id"] for a in actions],
                      [action_line(a["id"], a.get("features")) for a in actions])
            if len(self._actions) < self._size:
                self._actions[event.actions] = cached
        ids, lines = cached
        excluded = None
        if event.excluded not in (None, "[]"):
            excluded = set(orjson.loads(event.excluded) or ())
        if excluded:
            kept = [i for i, action_id in enumerate(ids) if action_id not in excluded]
            ids, lines = [ids[i] for i in kept], [lines[i] for i in kept]
        return shared_line(orjson.loads(event.context)), lines, ids.index(event.chosen)


@dataclass
class Share:
    """One share's events as lists (and their VW text), then :class:`TuningArrays`."""

    predictions: list[np.ndarray] = field(default_factory=list)
    logged: list[int] = field(default_factory=list)
    propensity: list[float] = field(default_factory=list)
    outcomes: list[list[float]] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    first: str | None = None

    def add(self, text: Text, probability: float, predictions: np.ndarray,
            outcomes: list[float]) -> None:
        self.predictions.append(predictions)
        self.logged.append(text[2])
        self.propensity.append(probability)
        self.outcomes.append(outcomes)
        self.texts.append(text)

    @property
    def width(self) -> int:
        return max(len(p) for p in self.predictions)

    def arrays(self) -> TuningArrays:
        width, objectives = self.width, self.predictions[0].shape[1]
        padded = np.zeros((len(self.predictions), width, objectives))
        allowed = np.zeros((len(self.predictions), width), dtype=bool)
        for row, values in enumerate(self.predictions):
            padded[row, :len(values)] = values
            allowed[row, :len(values)] = True
        return TuningArrays.of(padded, allowed, np.array(self.logged), np.array(self.propensity),
                               np.array(self.outcomes))

    def pmfs(self, models: list[tuple[dict[str, Any], bytes]]) -> list[np.ndarray]:
        """Each trained model's (A, n) probabilities at this share's events."""
        out = []
        for config_json, blob in models:
            policy = Policy(LoopConfig.model_validate(config_json), 0, blob)
            try:
                pmf = np.zeros((self.width, len(self.texts)), dtype=np.float32)
                for column, (shared, lines, _) in enumerate(self.texts):
                    pmf[:len(lines), column] = policy.predict(shared, lines)
            finally:
                policy.close()
            out.append(pmf)
        return out

    def without_texts(self) -> Share:
        return Share(self.predictions, self.logged, self.propensity, self.outcomes, [], self.first)


@dataclass
class Fitted:
    """The reward models (saved VW models), the factor outcomes were divided by for learning,
    the fit share's outcome means and spreads (the normalising scales), and its events."""

    blobs: list[bytes]
    learn_scale: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    count: int
    events: list[tuple[Text, float, np.ndarray]] = field(default_factory=list, repr=False)

    def scales(self) -> np.ndarray:
        spread = np.where(self.std > 0, self.std, 1.0)
        return np.where(np.abs(self.mean) > 1e-12, np.abs(self.mean), spread)

    def for_children(self) -> Fitted:
        return Fitted(self.blobs, self.learn_scale, self.mean, self.std, self.count)


def _outcomes(config: LoopConfig, event: LoggedText, names: list[str]) -> list[float]:
    values = objective_values(config, event.outcomes)
    return [values[name] for name in names]


def _decisions(db: Database, config: LoopConfig, window: Window, after, count: int,
               progress: Callable[[int], None]) -> Iterator[tuple[LoggedText, Text, list[float]]]:
    """``count`` decisions after ``after``: each with its VW text and its objectives' values;
    ``progress`` hears the count after every page."""
    lines_of = Lines()
    for done, event in enumerate(window.events(db, after, count), start=1):
        yield event, lines_of(event), _outcomes(config, event, window.objectives)
        if done % window.page_size == 0:
            progress(done)


def fit(db: Database, config: LoopConfig, window: Window, after, count: int,
        progress: Callable[[int], None]) -> Fitted:
    """One VW regression per objective on ``count`` decisions after ``after``; outcomes are
    divided by the first page's mean absolute value (VW learns outcomes of about unit size), and
    the step size follows its mean number of actions (:class:`Regressor`)."""
    stream = _decisions(db, config, window, after, count, progress)
    first = list(islice(stream, window.page_size))
    scale = np.abs(np.array([outcomes for _, _, outcomes in first])).mean(axis=0)
    learn_scale = np.where(scale > 0, scale, 1.0)
    actions = float(np.mean([len(text[1]) for _, text, _ in first])) if first else None
    models = [Regressor(config.vw_args, actions=actions) for _ in window.objectives]
    events: list[tuple[Text, float, np.ndarray]] = []
    scales = learn_scale.tolist()  # Python floats: no array operations per decision
    try:
        for event, text, values in chain(first, stream):
            shared, logged = text[0], text[1][text[2]]
            for model, value, divisor in zip(models, values, scales):
                model.learn(shared, logged, value / divisor)
            events.append((text, event.probability, np.array(values)))
        blobs = [model.save() for model in models]
    finally:
        for model in models:
            model.close()
    values = np.array([outcomes for _, _, outcomes in events])
    return Fitted(blobs, learn_scale, values.mean(axis=0), values.std(axis=0), len(events), events)


def train(config: LoopConfig, fitted: Fitted, weights: np.ndarray,
          heartbeat: Callable[[], None] = lambda: None) -> tuple[dict[str, Any], bytes]:
    """The loop's model learned with ``weights`` on the fit share: (its config, its VW model).
    ``heartbeat`` is called every 10,000 decisions (the job's claim)."""
    changed = config.model_copy(update={"objectives": [
        o.model_copy(update={"weight": float(w)}) for o, w in zip(config.objectives, weights)]})
    learner = Learner(changed)
    try:
        for done, ((shared, lines, chosen), probability, outcomes) in enumerate(fitted.events, start=1):
            learner.learn(shared, lines, chosen, cost(float(weights @ outcomes)), probability)
            if done % 10_000 == 0:
                heartbeat()
        return changed.to_json(), learner.snapshot()
    finally:
        learner.close()


@dataclass
class Read:
    """A share as read: per decision its VW text, propensity and outcomes; when it starts."""

    events: list[tuple[Text, float, list[float]]]
    first: str | None


def read_share(db: Database, config: LoopConfig, window: Window, after, count: int,
               progress: Callable[[int], None]) -> Read:
    """``count`` decisions after ``after``, as VW text with their propensities and outcomes."""
    events: list[tuple[Text, float, list[float]]] = []
    first = None
    for event, text, outcomes in _decisions(db, config, window, after, count, progress):
        first = first or event.ts.isoformat()
        events.append((text, event.probability, outcomes))
    return Read(events, first)


def score_share(read: Read, config: LoopConfig, fitted: Fitted) -> Share:
    """Every allowed action of a share's decisions, scored by the reward models."""
    models = [Regressor(config.vw_args, blob) for blob in fitted.blobs]
    share = Share(first=read.first)
    try:
        for text, probability, outcomes in read.events:
            predictions = np.array(predict_each(models, text[0], text[1])).T
            share.add(text, probability, predictions * fitted.learn_scale, outcomes)
    finally:
        for model in models:
            model.close()
    return share


class Parts:
    """The tune and holdout shares (``parts``: where each starts and how many decisions): read
    from construction on, scored by :meth:`score`; then the probabilities of trained policies at
    their events."""

    def __init__(self, db: Database, config: LoopConfig, window: Window,
                 parts: list[tuple[Any, int]]) -> None:
        url = db.settings.database_url
        self._local = (db, config, window, parts)
        self._children: list[_Child] = []
        self.shares: list[Share] = []
        if PROCESSES < 2 or (url.startswith("sqlite") and (":memory:" in url or url == "sqlite://")):
            return
        try:
            self._children = [_Child((url, config.to_json(), window, after, count))
                              for after, count in parts]
        except BaseException:
            self.close()
            raise

    @property
    def done(self) -> int:
        """Decisions the children have read so far."""
        return sum(child.done for child in self._children)

    def score(self, fitted: Fitted, progress: Callable[[int], None]) -> None:
        """Score every share with the reward models (reading here what no child read);
        ``progress`` hears the decisions read, every second while the children work."""
        if not self._children:
            db, config, window, parts = self._local
            for index, (after, count) in enumerate(parts):
                offset = sum(c for _, c in parts[:index])
                read = read_share(db, config, window, after, count,
                                  lambda done: progress(offset + done))
                self.shares.append(score_share(read, config, fitted))
            return
        for child in self._children:
            child.send(fitted.for_children())
        self.shares = [child.receive(lambda: progress(self.done)) for child in self._children]

    def pmfs(self, models: list[tuple[dict[str, Any], bytes]],
             heartbeat: Callable[[], None] = lambda: None) -> list[list[np.ndarray]]:
        """Per share, each model's (A, n) probabilities at the share's events; ``heartbeat``
        every second while children work."""
        if not self._children:
            return [share.pmfs(models) for share in self.shares]
        for child in self._children:
            child.send(("pmfs", models))
        return [child.receive(heartbeat) for child in self._children]

    def score_many(self, scorer: Scorer, weights: list[np.ndarray]) -> Iterator[Score]:
        """``scorer.score`` of each weight vector, in order (a
        :data:`~bandits.tuning.ScoreMany` for the search): by the children, idle once their
        shares are scored, each sent the scorer and then batches of :data:`SCORE_BATCH` weight
        vectors, at most two batches ahead."""
        if not self._children:
            yield from score_here(scorer, weights)
            return
        children = self._children
        for child in children:
            child.send(("scorer", scorer))
        batches = [weights[i:i + SCORE_BATCH] for i in range(0, len(weights), SCORE_BATCH)]
        sent = received = 0
        try:
            while received < len(batches):
                while sent < len(batches) and sent < received + 2 * len(children):
                    children[sent % len(children)].send(("score", batches[sent]))
                    sent += 1
                scores = children[received % len(children)].receive(lambda: None)
                received += 1
                yield from scores
        finally:  # abandoned early: take the answers still coming, so the next ones line up
            for index in range(received, sent):
                children[index % len(children)].receive(lambda: None)

    def close(self) -> None:
        for child in self._children:
            child.stop()
        self._children = []


def _write(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "big") + data)
    stream.flush()


def _read(stream: BinaryIO) -> Any:
    size = stream.read(8)
    if len(size) < 8:
        raise EOFError("the other side closed")
    return pickle.loads(stream.read(int.from_bytes(size, "big")))


class _Child:
    def __init__(self, work: tuple) -> None:
        self.done = 0
        self.sent = 0
        self._errors: list[str] = []
        self._messages: Queue = Queue()
        self._process = subprocess.Popen([sys.executable, "-m", "bandits.jobs.tuning_reading"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        self._readers = [threading.Thread(target=self._read_messages, daemon=True),
                         threading.Thread(target=self._read_progress, daemon=True)]
        for reader in self._readers:
            reader.start()
        self.send(work)

    def send(self, value: Any) -> None:
        assert self._process.stdin is not None
        _write(self._process.stdin, value)
        self.sent += 1

    def _read_messages(self) -> None:
        assert self._process.stdout is not None
        try:
            while True:
                self._messages.put(_read(self._process.stdout))
        except (EOFError, OSError, ValueError):
            self._messages.put(EOFError)

    def _read_progress(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            text = line.decode(errors="replace").strip()
            if text.isdigit():
                self.done = int(text)
            elif text:
                self._errors.append(text)

    def receive(self, heartbeat: Callable[[], None]) -> Any:
        """The child's next answer; ``heartbeat`` every second meanwhile (the job's claim)."""
        while True:
            try:
                message = self._messages.get(timeout=HEARTBEAT_SECONDS)
            except Empty:
                heartbeat()
                continue
            if message is EOFError:
                self._process.wait()
                for reader in self._readers:
                    reader.join()
                raise RuntimeError("scoring with the reward models failed: "
                                   + (self._errors[-1] if self._errors else f"exit {self._process.returncode}"))
            return message

    def stop(self) -> None:
        if self.sent < 2:  # still reading, with no models to score with: nothing to wait for
            self._process.kill()
        if self._process.stdin is not None and not self._process.stdin.closed:
            try:
                _write(self._process.stdin, None)
                self._process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for reader in self._readers:
            reader.join()
        for pipe in (self._process.stdout, self._process.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


def _child_main() -> None:
    """A scoring child: read its share, score it with the reward models it is sent, then answer
    requests for trained policies' PMFs."""
    from bandits.config import load_settings

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    url, config_json, window, after, count = _read(stdin)
    config = LoopConfig.model_validate(config_json)
    db = Database(load_settings(database_url=url), pool_size=1)
    try:
        read = read_share(db, config, window, after, count,
                          lambda done: print(done, file=sys.stderr, flush=True))
        db.dispose()  # nothing more to read
        if (fitted := _read(stdin)) is None:  # the job stopped before its models were fitted
            return
        share = score_share(read, config, fitted)
        del read
        _write(stdout, share.without_texts())
        scorer = None
        while (message := _read(stdin)) is not None:
            kind, body = message
            if kind == "pmfs":
                _write(stdout, share.pmfs(body))
            elif kind == "scorer":  # the tune share's, for the search (Parts.score_many)
                scorer = body
            else:
                _write(stdout, [scorer.score(weights) for weights in body])
    except EOFError:
        pass
    except Exception as exc:  # the parent reports the last line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        db.dispose()


if __name__ == "__main__":  # run the importable module's copy, whose classes pickle by name
    from bandits.jobs.tuning_reading import _child_main as child_main

    child_main()
