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
