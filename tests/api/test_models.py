"""Model snapshots over HTTP: list, download, import (a round trip), reset; admin keys only."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bandits.api import create_app
from bandits.config import load_settings
from bandits.services.loops import LoopService
from bandits.services.trainer import LoopTrainer
from bandits.store.models import Loop, LoopConfigVersion, Model
from tests.conftest import ADMIN, ADMIN_KEY
from tests.helpers import TWO_ACTIONS as ACTIONS, count_rows, play

LOOP = "learn"
MODELS = f"/v1/loops/{LOOP}/models"
OCTETS = "application/octet-stream"


@pytest.fixture
def loop(app) -> tuple[dict[str, str], int]:
    """Loop `learn` (click, learnable as soon as rewarded): its key's header and its id."""
    db = app.extensions["bandits"].db
    key = LoopService(db).create(LOOP, {
        "objectives": [{"name": "click", "aggregation": "earliest"}],
        "exploration": {"algorithm": "epsilon", "epsilon": 0.2},
    })["key"]
    with db.session() as session:
        loop_id = session.scalar(select(Loop.id).where(Loop.name == LOOP))
    return {"Authorization": f"Bearer {key}"}, loop_id


@pytest.fixture
def trainer(db, loop):
    trainer = LoopTrainer(db, loop[1], LOOP)
    yield trainer
    trainer.close()


def _served(client, auth, event_id: str) -> dict:
    reply = client.post(f"/v1/loops/{LOOP}/choose", json={
        "event_id": event_id, "context": {"user": {"u": "x"}}, "actions": ACTIONS}, headers=auth)
    assert reply.status_code == 201, reply.json
    return reply.json


def _pmf(reply: dict) -> dict[str, float]:
    return {ranked["id"]: ranked["probability"] for ranked in reply["ranking"]}


def _blob(db, loop_id: int, version: int) -> bytes:
    with db.session() as session:
        return session.get(Model, (loop_id, version)).blob


def _error(reply, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert reply.json["error"]["code"] == code, reply.json
    return reply.json["error"]


def _import(client, blob: bytes, content_type: str = OCTETS):
    return client.put(MODELS, data=blob, content_type=content_type, headers=ADMIN)


# -- list and download -------------------------------------------------------------------------


def test_a_loop_without_snapshots_serves_version_zero(client, loop):
    reply = client.get(MODELS, headers=ADMIN)
    assert reply.status_code == 200, reply.json
    assert reply.json == {"current": 0, "lineage": 1, "models": []}


def test_a_trainer_snapshot_is_listed_and_downloads_as_its_stored_bytes(client, db, loop, trainer):
    auth, loop_id = loop
    play(client, auth, 20)
    assert trainer.step() == 20
    blob = _blob(db, loop_id, 1)

    listed = client.get(MODELS, headers=ADMIN)
    assert listed.status_code == 200, listed.json
    assert listed.json["current"] == 1 and listed.json["lineage"] == 1
    [model] = listed.json["models"]
    created_at = model.pop("created_at")
    assert created_at.endswith(("Z", "+00:00"))
    assert model == {"version": 1, "lineage": 1, "config_version": 1, "events_learned": 20,
                     "total_learned": 20, "source": "trainer", "size_bytes": len(blob), "apprentice_agreement": None}
    assert "blob" not in listed.get_data(as_text=True)

    download = client.get(f"{MODELS}/1", headers=ADMIN)
    assert download.status_code == 200
    assert download.mimetype == OCTETS
    assert download.headers["Content-Disposition"] == f'attachment; filename="{LOOP}-v1.vw"'
    assert download.data == blob


def test_the_list_is_newest_first_and_limited(client, loop, trainer):
    auth, _ = loop
    for round_ in range(3):
        play(client, auth, 5, start=100 * round_)
        assert trainer.step() == 5
    listed = client.get(MODELS, headers=ADMIN).json
    assert [m["version"] for m in listed["models"]] == [3, 2, 1]
    assert [m["total_learned"] for m in listed["models"]] == [15, 10, 5]
    limited = client.get(f"{MODELS}?limit=2", headers=ADMIN)
    assert limited.status_code == 200, limited.json
    assert [m["version"] for m in limited.json["models"]] == [3, 2]
    assert limited.json["current"] == 3


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=-1", "limit=ten", "limit=",
                                   "limit=2.5", "limit=1%002", "limt=5"])
def test_an_invalid_limit_is_400(client, loop, query):
    reply = client.get(f"{MODELS}?{query}", headers=ADMIN)
    error = _error(reply, 400, "InvalidModelListRequest")
    assert error["target"] == query.split("=")[0]


@pytest.mark.parametrize("version, code", [
    ("7", "ModelNotFound"), ("0", "ModelNotFound"), ("99999999999999999999", "ModelNotFound"),
    ("one", "NotFound"), ("-1", "NotFound"), ("1.0", "NotFound"),
])
def test_an_unknown_version_is_404(client, loop, version, code):
    reply = client.get(f"{MODELS}/{version}", headers=ADMIN)
    error = _error(reply, 404, code)
    if code == "ModelNotFound":
        assert error["target"] == "version" and version in error["message"]


def test_an_unknown_loop_is_404_on_every_model_route(client, db):
    base = "/v1/loops/nope/models"
    _error(client.get(base, headers=ADMIN), 404, "LoopNotFound")
    _error(client.get(f"{base}/1", headers=ADMIN), 404, "LoopNotFound")
    _error(client.put(base, data=b"model", content_type=OCTETS, headers=ADMIN), 404, "LoopNotFound")
    _error(client.post(f"{base}/reset", headers=ADMIN), 404, "LoopNotFound")
    assert count_rows(db, LoopConfigVersion) == 0


# -- import ------------------------------------------------------------------------------------


def test_a_downloaded_model_imports_as_a_new_version_that_is_served_and_trained_on(
    client, db, loop, trainer
):
    auth, loop_id = loop
    play(client, auth, 40)
    assert trainer.step() == 40
    before = _served(client, auth, "before")
    assert before["model_version"] == 1
    downloaded = client.get(f"{MODELS}/1", headers=ADMIN).data

    reply = _import(client, downloaded)

    assert reply.status_code == 201, reply.json
    imported = dict(reply.json)
    assert imported.pop("created_at")
    assert imported == {"version": 2, "lineage": 1, "config_version": 1, "events_learned": 0,
                        "total_learned": 40, "source": "import", "size_bytes": len(downloaded), "apprentice_agreement": None}
    assert _blob(db, loop_id, 2) == downloaded
    after = _served(client, auth, "after")
    assert after["model_version"] == 2
    assert _pmf(after) == pytest.approx(_pmf(before))  # the same model
    listed = client.get(MODELS, headers=ADMIN).json
    assert listed["current"] == 2
    assert [m["source"] for m in listed["models"]] == ["import", "trainer"]

    # The trainer continues from the imported snapshot.
    play(client, auth, 5, start=500)
    assert trainer.step() == 5
    newest = client.get(MODELS, headers=ADMIN).json["models"][0]
    assert (newest["version"], newest["lineage"], newest["source"]) == (3, 1, "trainer")
    assert (newest["events_learned"], newest["total_learned"]) == (5, 45)


def test_a_model_vw_cannot_load_is_422_quoting_vw_and_stores_nothing(client, db, loop):
    reply = _import(client, b"this is not a VW model")
    error = _error(reply, 422, "InvalidModel")
    assert "Bad model format" in error["message"]
    assert count_rows(db, Model) == 0
    assert _served(client, loop[0], "e1")["model_version"] == 0


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_a_model_not_sent_as_octet_stream_is_415(client, db, loop, content_type):
    headers = dict(ADMIN)
    if content_type:
        headers["Content-Type"] = content_type
    reply = client.put(MODELS, data=b"\x07\x00\x00\x00", headers=headers)
    assert "application/octet-stream" in _error(reply, 415, "UnsupportedMediaType")["message"]
    assert count_rows(db, Model) == 0


def test_an_empty_model_is_400(client, db, loop):
    _error(_import(client, b""), 400, "EmptyModel")
    assert count_rows(db, Model) == 0


def test_a_model_over_the_body_limit_is_413(database_url, loop, db):
    settings = load_settings(database_url=database_url, admin_key=ADMIN_KEY, cache_seconds=0.0,
                             max_body_bytes=1024)
    small = create_app(settings, {"TESTING": True})
    try:
        reply = small.test_client().put(MODELS, data=b"\x00" * 2048, content_type=OCTETS,
                                        headers=ADMIN)
        assert "1024" in _error(reply, 413, "PayloadTooLarge")["message"]
    finally:
        small.extensions["bandits"].close()
    assert count_rows(db, Model) == 0


# -- reset -------------------------------------------------------------------------------------


def test_a_reset_serves_the_empty_model_until_the_trainer_publishes_in_the_new_lineage(
    client, loop, trainer
):
    auth, _ = loop
    play(client, auth, 20)
    assert trainer.step() == 20
    config = client.get(f"/v1/loops/{LOOP}", headers=ADMIN).json["config"]

    reply = client.post(f"{MODELS}/reset", headers=ADMIN)

    assert reply.status_code == 200, reply.json
    assert reply.json == {"lineage": 2, "config_version": 2, "current": 0}
    loop_now = client.get(f"/v1/loops/{LOOP}", headers=ADMIN).json
    assert loop_now["config_version"] == 2 and loop_now["config"] == config
    assert _served(client, auth, "after-reset")["model_version"] == 0
    listed = client.get(MODELS, headers=ADMIN).json
    assert (listed["current"], listed["lineage"]) == (0, 2)
    assert [m["version"] for m in listed["models"]] == [1]  # old snapshots stay downloadable

    play(client, auth, 6, start=300)
    assert trainer.step() == 6
    newest = client.get(MODELS, headers=ADMIN).json["models"][0]
    assert (newest["version"], newest["lineage"], newest["total_learned"]) == (2, 2, 6)
    assert _served(client, auth, "later")["model_version"] == 2


def test_an_old_model_can_be_restored_after_a_reset(client, loop, trainer):
    auth, _ = loop
    play(client, auth, 10)
    assert trainer.step() == 10
    old = client.get(f"{MODELS}/1", headers=ADMIN).data
    assert client.post(f"{MODELS}/reset", headers=ADMIN).status_code == 200

    reply = _import(client, old)

    assert reply.status_code == 201, reply.json
    assert (reply.json["version"], reply.json["lineage"], reply.json["config_version"]) == (2, 2, 2)
    assert reply.json["total_learned"] == 0  # nothing learned yet in this lineage
    assert _served(client, auth, "restored")["model_version"] == 2


# -- keys --------------------------------------------------------------------------------------


def test_a_loop_key_is_refused_on_every_model_route(client, db, loop, trainer):
    auth, _ = loop
    play(client, auth, 3)
    assert trainer.step() == 3
    replies = [
        client.get(MODELS, headers=auth),
        client.get(f"{MODELS}/1", headers=auth),
        client.put(MODELS, data=_blob(db, loop[1], 1), content_type=OCTETS, headers=auth),
        client.post(f"{MODELS}/reset", headers=auth),
    ]
    for reply in replies:
        assert "admin key" in _error(reply, 403, "Forbidden")["message"]
    assert count_rows(db, Model) == 1
    assert count_rows(db, LoopConfigVersion) == 1
