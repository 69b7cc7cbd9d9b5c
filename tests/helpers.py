"""Small builders shared by the tests."""

from __future__ import annotations

from sqlalchemy import func, select

from bandits.store.models import Decision, Outcome


def actions(n: int = 3) -> list[dict]:
    return [{"id": f"a{i}", "features": {"offer": {"vertical": f"v{i % 2}", "payout": i + 0.5}}}
            for i in range(n)]


def choose_body(**overrides) -> dict:
    body = {"context": {"user": {"country": "AR", "age": 31}}, "actions": actions()}
    body.update(overrides)
    return body


def count_rows(db, model=Decision) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def count_outcomes(db) -> int:
    return count_rows(db, Outcome)


# Two actions, one of which always gets the click: a loop that learns finds it.
GOOD, BAD = "good", "bad"
TWO_ACTIONS = [{"id": BAD, "features": {"offer": {"kind": "x"}}},
               {"id": GOOD, "features": {"offer": {"kind": "y"}}}]


def play(client, headers, n: int, start: int = 0, loop: str = "learn", reward: bool = True) -> list[dict]:
    """``n`` decisions ``e<start>``... over :data:`TWO_ACTIONS` (clicked when the good action was
    shown, unless ``reward`` is false); the choose replies."""
    served = []
    for i in range(start, start + n):
        reply = client.post(f"/v1/loops/{loop}/choose", json={
            "event_id": f"e{i}", "context": {"user": {"u": "x"}}, "actions": TWO_ACTIONS}, headers=headers)
        assert reply.status_code == 201, reply.json
        served.append(reply.json)
        if reward:
            click = 1 if reply.json["action"] == GOOD else 0
            rewarded = client.post(f"/v1/loops/{loop}/events/e{i}/rewards",
                                   json={"rewards": {"click": click}}, headers=headers)
            assert rewarded.status_code == 202, rewarded.json
    return served
