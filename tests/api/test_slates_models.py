"""Model files and loop kinds: a model trained by a loop of one kind, imported into a loop of
another (PUT /v1/loops/{loop}/models). Real VW, SQLite and Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bandits.services.trainer import LoopTrainer
from bandits.store.models import Loop
from tests.conftest import ADMIN

BODIES = {
    "cb": {"actions": [{"id": f"a{i}", "features": {"offer": {"n": i}}} for i in range(4)]},
    "ccb": {"actions": [{"id": f"a{i}", "features": {"offer": {"n": i}}} for i in range(4)],
            "slots": [{"id": "hero", "baseline": "a0"}, {"id": "side", "baseline": "a1"}]},
    "slates": {"actions": [{"id": f"t{i}", "slot": "top"} for i in range(3)]
               + [{"id": f"b{i}", "slot": "bottom"} for i in range(2)],
               "slots": [{"id": "top", "baseline": "t0"}, {"id": "bottom", "baseline": "b0"}]},
}


def _trained_model(client, db, kind: str) -> bytes:
    """Version 1 of a `kind` loop that learned ten rewarded decisions."""
    name = f"trained-{kind}"
    created = client.post("/v1/loops", json={"name": name, "config": {
        "kind": kind, "objectives": [{"name": "click", "aggregation": "earliest"}]}}, headers=ADMIN)
    assert created.status_code == 201, created.json
    for i in range(10):
        reply = client.post(f"/v1/loops/{name}/choose", json={**BODIES[kind], "event_id": f"e{i}"},
                            headers=ADMIN)
        assert reply.status_code == 201, reply.json
        slots = [slot["id"] for slot in reply.json["slots"]] if kind == "ccb" else [None]
        for slot in slots:
            body = {"rewards": {"click": 1}, **({"slot": slot} if slot else {})}
            assert client.post(f"/v1/loops/{name}/events/e{i}/rewards", json=body,
                               headers=ADMIN).status_code == 202
    with db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == name))
    trainer = LoopTrainer(db, loop_id, name)
    try:
        assert trainer.step() == 10
    finally:
        trainer.close()
    model = client.get(f"/v1/loops/{name}/models/1", headers=ADMIN)
    assert model.status_code == 200
    return model.data


@pytest.mark.parametrize("kind", ["cb", "ccb", "slates"])
def test_a_model_imported_into_a_loop_of_its_own_kind_is_served(client, db, kind):
    blob = _trained_model(client, db, kind)
    assert client.post("/v1/loops", json={"name": "target", "config": {"kind": kind}},
                       headers=ADMIN).status_code == 201
    imported = client.put("/v1/loops/target/models", data=blob,
                          content_type="application/octet-stream", headers=ADMIN)
    assert imported.status_code == 201, imported.json
    reply = client.post("/v1/loops/target/choose", json={**BODIES[kind], "event_id": "after"},
                        headers=ADMIN)
    assert reply.status_code == 201, reply.get_data(as_text=True)
    assert reply.json["model_version"] == 1


@pytest.mark.parametrize("source, target", [("ccb", "cb"), ("slates", "cb"), ("slates", "ccb")])
def test_a_model_of_another_kind_is_refused_on_import(client, db, source, target):
    blob = _trained_model(client, db, source)
    assert client.post("/v1/loops", json={"name": "target", "config": {"kind": target}},
                       headers=ADMIN).status_code == 201

    imported = client.put("/v1/loops/target/models", data=blob,
                          content_type="application/octet-stream", headers=ADMIN)
    reply = client.post("/v1/loops/target/choose", json={**BODIES[target], "event_id": "after"},
                        headers=ADMIN)

    assert reply.status_code != 500, reply.get_data(as_text=True)
    assert imported.status_code == 422, imported.json
    assert imported.json["error"]["code"] == "InvalidModel"
    assert reply.status_code == 201
