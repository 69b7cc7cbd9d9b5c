"""Action pools remembered: a page's candidates repeat from one choose request to the next.

A product usually sends the same actions, with the same features, for many requests in a row
(the articles of a home page, the offers of a campaign), while the context changes with every
user. The work that depends on the actions alone is done once per pool and remembered under the
pool's JSON (orjson's spelling of the parsed ``actions``, which spells every id, feature, order
and type exactly): checking them as the schema does, their ids and positions, their VW lines,
and their entry in the decision log, serialised. Only pools that passed every check are
remembered; a pool with a problem is not, and the request takes the full path, which words the
error as always. Long pools are not remembered. Nor, under orjson's spelling, are pools holding a
null (orjson writes NaN and infinities as null, so such a key could stand for a value that must
be refused); a body read from its bytes (:meth:`ActionPools.get_raw`) is keyed by the JSON that
came, in which a null is a null. The decision log stores each pool once per loop (table
``action_pools``), and each decision names its pool by ``digest``.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

import orjson

from bandits.learning.features import FeatureError, action_line
from bandits.schemas import choose_actions

POOL_KEY_BYTES = 64 * 1024  # longer pools are checked and featurised every time
POOL_CACHE_BYTES = 2 * 1024 * 1024  # keys held at most (a pool holds about 9 times its key)


@dataclass(frozen=True, slots=True)
class Pool:
    """What a choose request's actions alone decide, worked out once."""

    actions: list[Any]  # as parse_choose makes them
    ids: list[str]
    positions: dict[str, int]  # id -> index
    lines: list[str]  # VW text of each action (bandits.learning.features.action_line)
    logged: orjson.Fragment  # the decision log's `actions`, serialised
    digest: str  # its name in the log (bandits.store.models.ActionPool)
    serial: int  # this pool's number in the process (a key for VW's parse of its lines)


class ActionPools:
    """Pools by their JSON, for one process (thread-safe: dict operations only)."""

    def __init__(self, budget: int = POOL_CACHE_BYTES) -> None:
        self._pools: dict[bytes, Pool] = {}  # by orjson's spelling of the parsed actions
        self._raw: dict[bytes, Pool] = {}  # by the actions' JSON as sent
        self._budget = budget
        self._held = 0
        self.hits = 0
        self.misses = 0

    def get_raw(self, raw: bytes) -> Pool | None:
        """The pool of a body's ``actions`` as sent (their JSON bytes), or ``None`` as
        :meth:`get` (raw keys are kept apart from :meth:`get`'s: they are the bytes that came,
        which orjson parses, not orjson's spelling)."""
        pool = self._raw.get(raw)
        if pool is not None:
            self.hits += 1
            return pool
        self.misses += 1
        try:
            actions = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        pool = _pool(actions) if type(actions) is list else None
        if pool is not None and len(raw) <= POOL_KEY_BYTES:
            self._keep(self._raw, raw, pool)
        return pool

    def get(self, actions: Any) -> Pool | None:
        """The pool of ``actions`` (a parsed body's ``actions``), or ``None`` when anything in
        it is wrong (the full path then words the error)."""
        if type(actions) is not list:
            return None
        try:
            key = orjson.dumps(actions)
        except TypeError:  # not JSON (a caller's own objects, huge integers)
            return None
        pool = self._pools.get(key)
        if pool is not None:
            self.hits += 1
            return pool
        self.misses += 1
        pool = _pool(actions)
        if pool is not None and len(key) <= POOL_KEY_BYTES and b"null" not in key:
            self._keep(self._pools, key, pool)
        return pool

    def _keep(self, pools: dict[bytes, Pool], key: bytes, pool: Pool) -> None:
        if self._held + len(key) > self._budget:
            self._pools.clear()
            self._raw.clear()
            self._held = 0
        pools[key] = pool
        self._held += len(key)


def _pool(raw: list[Any]) -> Pool | None:
    actions = choose_actions(raw)
    if actions is None:
        return None
    positions: dict[str, int] = {}
    for index, action in enumerate(actions):
        if action.id in positions:
            return None
        positions[action.id] = index
    try:
        lines = [action_line(action.id, action.features) for action in actions]
    except FeatureError:
        return None
    logged = orjson.dumps(logged_actions(actions))
    digest = hashlib.sha256(logged).hexdigest()[:32]
    return Pool(actions, list(positions), positions, lines, orjson.Fragment(logged), digest,
                next(_serials))


_serials = itertools.count()


def logged_actions(actions: list[Any]) -> list[dict[str, Any]]:
    """The decision log's ``actions``: each action's id and features, and its slot (slates)."""
    return [
        {"id": a.id, "features": a.features} if a.slot is None
        else {"id": a.id, "features": a.features, "slot": a.slot}
        for a in actions
    ]
