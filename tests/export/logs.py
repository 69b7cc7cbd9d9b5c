"""Decision logs made through the real service (Flask test client, real VW), one per loop kind,
and what the database holds about them, to compare exports against."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from bandits.services.loops import LoopService
from bandits.store.decisions import logged_actions_of
from bandits.store.models import Decision, Loop, Outcome

# click counts once (max), revenue adds up (sum) with weight 0.1: costs are -(click + 0.1 revenue).
OBJECTIVES = [{"name": "click", "aggregation": "max"},
              {"name": "revenue", "weight": 0.1, "aggregation": "sum"}]
WEIGHTS = {"click": 1.0, "revenue": 0.1}

# Features that exercise the featuriser: nested objects, lists, booleans, numbers, VW syntax
# and Unicode in names and values, a top-level scalar.
CONTEXTS = [
    {"user": {"country": "AR", "age": 31, "segments": ["new", "mobile"], "vip": True}},
    {"user": {"country": "UY", "device": {"os": "ios", "version": 17.4}, "vip": False},
     "page": {"path": "/a b|c:d", "ñandú": "sí"}, "hour": 9},
    {},
]
POOL = [{"id": f"a{i}", "features": {"offer": {"vertical": f"v{i % 3}", "payout": i + 0.5}}}
        for i in range(5)] + [{"id": "plain id"}]
CCB_SLOTS = [
    {"id": "hero", "baseline": "a0", "features": {"place": {"position": 0, "size": "big"}}},
    {"id": "side", "baseline": "a1", "excluded": ["a4"]},
    {"id": "foot", "baseline": "a2", "excluded": ["a0", "a3"], "features": {"place": {"position": 2}}},
]
SLATE_ACTIONS = ([{"id": f"t{i}", "slot": "top", "features": {"offer": {"n": i}}} for i in range(4)]
                 + [{"id": f"b{i}", "slot": "bottom"} for i in range(3)])
SLATES_SLOTS = [{"id": "top", "baseline": "t0", "excluded": ["t3"], "features": {"place": {"row": 1}}},
                {"id": "bottom", "baseline": "b2"}]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_loop(app, name: str, kind: str) -> dict[str, str]:
    created = LoopService(app.extensions["bandits"].db).create(
        name, {"kind": kind, "objectives": OBJECTIVES, "exploration": {"algorithm": "epsilon", "epsilon": 0.3}})
    return bearer(created["key"])


def _post(client, path: str, headers, body: dict | None = None, status: int = 202) -> dict:
    reply = client.post(path, json=body, headers=headers) if body is not None else client.post(path, headers=headers)
    assert reply.status_code == status, reply.json
    return reply.json


def log_decisions(client, name: str, kind: str, headers, n: int = 12) -> None:
    """``n`` decisions ``e0``...; rewards for most (ccb: per slot, sometimes twice), none for
    some; ``e1`` deferred and never activated, ``e2`` deferred and activated."""
    for i in range(n):
        body: dict = {"event_id": f"e{i}", "context": CONTEXTS[i % len(CONTEXTS)]}
        if kind == "cb":
            body.update(actions=POOL, excluded=["a3"] if i % 2 else [], baseline="a1")
        elif kind == "ccb":
            body.update(actions=POOL, slots=CCB_SLOTS)
        else:
            body.update(actions=SLATE_ACTIONS, slots=SLATES_SLOTS)
        if i in (1, 2):
            body["defer"] = True
        _post(client, f"/v1/loops/{name}/choose", headers, body, 201)
        if i == 2:
            _post(client, f"/v1/loops/{name}/events/e2/activate", headers)
        if i % 4 == 3:
            continue  # no reward: the objectives' defaults
        rewards = {"click": i % 2, "revenue": float(i)}
        path = f"/v1/loops/{name}/events/e{i}/rewards"
        if kind == "ccb":
            for k, slot in enumerate(CCB_SLOTS[: 1 + i % 3]):
                _post(client, path, headers, {"rewards": {"click": (i + k) % 2, "revenue": float(k)},
                                              "slot": slot["id"]})
            _post(client, path, headers, {"rewards": {"revenue": 2.0}, "slot": "hero"})
        else:
            _post(client, path, headers, {"rewards": rewards})
            _post(client, path, headers, {"rewards": {"revenue": 1.5}})


@dataclass
class Logged:
    """A decision as the database holds it, with its rewards recomputed from the raw outcomes."""

    event_id: str
    chosen: str
    probability: float
    pmf: list[float]
    action_ids: list[str]
    excluded: list[str]
    unactivated: bool
    slots: list[dict] | None
    reward: float  # cb, slates: the decision's; ccb: the sum over slots
    slot_rewards: dict[str, float] = field(default_factory=dict)


def _reward(outcomes: list[tuple[str, float]]) -> float:
    click = max((v for o, v in outcomes if o == "click"), default=0.0)
    revenue = sum(v for o, v in outcomes if o == "revenue")
    return WEIGHTS["click"] * click + WEIGHTS["revenue"] * revenue


def stored(db, name: str, kind: str) -> list[Logged]:
    """The loop's decisions in time order, from the tables."""
    with db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == name))
        decisions = session.scalars(select(Decision).where(Decision.loop_id == loop_id)
                                    .order_by(Decision.ts, Decision.event_id)).all()
        actions = {d.event_id: logged_actions_of(d, session=session) for d in decisions}
        outcomes = session.execute(select(Outcome.event_id, Outcome.slot, Outcome.objective, Outcome.value)
                                   .where(Outcome.loop_id == loop_id)).all()
    by_event: dict[tuple[str, str | None], list[tuple[str, float]]] = {}
    for event_id, slot, objective, value in outcomes:
        by_event.setdefault((event_id, slot), []).append((objective, value))
    logged = []
    for d in decisions:
        slot_rewards = {s["id"]: _reward(by_event.get((d.event_id, s["id"]), [])) for s in d.slots or []}
        reward = (sum(slot_rewards.values()) if kind == "ccb"
                  else _reward(by_event.get((d.event_id, None), [])))
        logged.append(Logged(d.event_id, d.chosen, d.probability, list(d.pmf), [a["id"] for a in actions[d.event_id]],
                             list(d.excluded), d.deferred and d.activated_at is None, d.slots, reward,
                             slot_rewards))
    return logged
