"""The DM/DR reward model of ``cb`` evaluation jobs: a cross-fitted ridge regression on hashed
context × action features (:class:`bandits.ope.CrossFitRidge`).

An event's features are the VW text the service learns from (:mod:`bandits.learning.features`):
the context's namespaces and the action's line (its ``_action id=...`` and its namespaces).
:func:`hashed` maps them to a fixed-size vector of ``dims`` numbers (signed feature hashing,
blake2b, the same in every process): every context feature, every action feature, and every
(context feature, action feature) pair, so the model can learn that an action's reward
depends on the context. One regression over all actions (``n_actions=1`` for ``CrossFitRidge``:
the action lives in the features), one per objective, cross-fitted over two folds keyed by the
event id (a hash), so no event's correction comes from a model that saw it.

Memory: per objective, ``folds × (dims + 1)²`` floats (16 MB at 1,024 dims), whatever the
window; pages are featurised in chunks of at most :data:`CHUNK` events.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from bandits.learning.features import action_line, namespaces_text
from bandits.learning.sampling import seed_for
from bandits.ope import CrossFitRidge
from bandits.store.jobs import LoggedEvent

DIMS = 1024
FOLDS = 2
RIDGE = 1.0
CHUNK = 256


def parse(text: str | None) -> list[tuple[str, float]]:
    """``(namespace^name, value)`` of VW text ``|ns a b:2 |other c``."""
    out: list[tuple[str, float]] = []
    namespace = ""
    for token in (text or "").split():
        if token.startswith("|"):
            namespace = token[1:]
            continue
        name, colon, value = token.rpartition(":")
        if colon and name:
            try:
                out.append((f"{namespace}^{name}", float(value)))
                continue
            except ValueError:
                pass
        out.append((f"{namespace}^{token}", 1.0))
    return out


@lru_cache(maxsize=65536)
def _slot(name: str, dims: int) -> tuple[int, float]:
    digest = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
    return digest % dims, (1.0 if (digest >> 63) else -1.0)


def hashed(context: list[tuple[str, float]], action: list[tuple[str, float]],
           dims: int = DIMS) -> np.ndarray:
    """The vector of one (context, action): context, action and crossed features, hashed."""
    vector = np.zeros(dims)
    for name, value in context:
        index, sign = _slot("c\x00" + name, dims)
        vector[index] += sign * value
    for name, value in action:
        index, sign = _slot("a\x00" + name, dims)
        vector[index] += sign * value
        for other, weight in context:
            index, sign = _slot(f"x\x00{other}\x00{name}", dims)
            vector[index] += sign * value * weight
    return vector


def _parsed(event: LoggedEvent) -> tuple[list[tuple[str, float]], list[list[tuple[str, float]]]]:
    context = parse(namespaces_text(event.context or {}))
    return context, [parse(action_line(a["id"], a.get("features"))) for a in event.actions]


class HashedRidge:
    """Per objective, :class:`CrossFitRidge` on :func:`hashed` features (pass 1 :meth:`fit`
    per page, pass 2 :meth:`predict_page`)."""

    def __init__(self, objectives: list[str], loop_id: int, dims: int = DIMS,
                 ridge: float = RIDGE) -> None:
        self.objectives, self.dims, self._loop_id = objectives, dims, loop_id
        self._models = {o: CrossFitRidge(1, dims, n_folds=FOLDS, ridge=ridge, random_state=loop_id)
                        for o in objectives}

    def _key(self, event: LoggedEvent) -> int:
        return seed_for(self._loop_id, event.event_id) >> 2

    def fit(self, page: list[LoggedEvent], rewards: list[dict[str, float]]) -> None:
        for begin in range(0, len(page), CHUNK):
            events = page[begin:begin + CHUNK]
            matrix = np.empty((len(events), self.dims))
            for row, event in enumerate(events):
                context, actions = _parsed(event)
                chosen = [a["id"] for a in event.actions].index(event.chosen)
                matrix[row] = hashed(context, actions[chosen], self.dims)
            keys = np.array([self._key(event) for event in events], dtype=np.int64)
            zeros = np.zeros(len(events), dtype=np.intp)
            for objective, model in self._models.items():
                values = np.array([r[objective] for r in rewards[begin:begin + CHUNK]])
                model.fit(matrix, zeros, values, keys=keys)

    def predict_page(self, page: list[LoggedEvent]) -> list[dict[str, np.ndarray]]:
        """Per event, per objective, q̂ of each of its actions (out of fold)."""
        out: list[dict[str, np.ndarray]] = []
        for begin in range(0, len(page), CHUNK):
            events = page[begin:begin + CHUNK]
            rows, keys, sizes = [], [], []
            for event in events:
                context, actions = _parsed(event)
                rows.extend(hashed(context, action, self.dims) for action in actions)
                keys.extend([self._key(event)] * len(actions))
                sizes.append(len(actions))
            matrix, key_array = np.array(rows), np.array(keys, dtype=np.int64)
            predictions = {o: model.predict_all(matrix, keys=key_array)[:, 0]
                           for o, model in self._models.items()}
            start = 0
            for size in sizes:
                out.append({o: p[start:start + size] for o, p in predictions.items()})
                start += size
        return out
