"""What a tuning job reads from the decision log: each decision as the VW text the service
learns from (the JSON columns come back as text and are parsed by the reader, the actions only
when the same list was not seen before), its logged action among the allowed ones, its
propensity and its objectives' values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bandits.jobs.tuning_reading import Window, read_share
from bandits.learning.features import action_line, shared_line
from bandits.loop_config import LoopConfig
from bandits.store.jobs import window_pages
from bandits.store.models import Loop

CONTEXT = {"user": {"name": "Zoë | a:b", "tags": ["x y", "ü"], "age": 41.5, "vip": True},
           "visit": {"page": "home"}}
ACTIONS = [{"id": "a", "features": {"offer": {"kind": "pay: 1%"}}}, {"id": "b"},
           {"id": "c d", "features": {"offer": {"kind": "free"}}}]


def test_decisions_read_as_the_services_vw_text_without_excluded_actions(client, auth, db):
    bodies = [
        {"event_id": "e0", "context": CONTEXT, "actions": ACTIONS},
        {"event_id": "e1", "context": CONTEXT, "actions": ACTIONS, "excluded": ["a"]},
        {"event_id": "e2", "context": {"visit": {"page": "cart"}}, "actions": ACTIONS},
    ]
    chosen = []
    for body in bodies:
        reply = client.post("/v1/loops/shop/choose", json=body, headers=auth)
        assert reply.status_code == 201, reply.json
        chosen.append((reply.json["action"], reply.json["probability"]))
    reward = client.post("/v1/loops/shop/events/e1/rewards", json={"rewards": {"revenue": 7.5}},
                         headers=auth)
    assert reward.status_code in (200, 201, 202), reward.json
    with db.session() as session:
        loop = session.query(Loop).filter(Loop.name == "shop").one()
        loop_id, config = loop.id, LoopConfig.model_validate(loop.config)
    now = datetime.now(timezone.utc)
    window = Window(loop_id, now - timedelta(hours=1), now + timedelta(hours=1), 2,
                    ["click", "revenue"])
    pages = []
    read = read_share(db, config, window, None, 3, pages.append)
    assert pages == [2]  # progress after every page
    assert read.first is not None
    # The same documents as the decoding reader of evaluation jobs returns them.
    logged = [event for page in window_pages(db, loop_id, window.since, window.until)
              for event in page]
    lines = {a["id"]: action_line(a["id"], a.get("features")) for a in ACTIONS}
    for body, (action, probability), event, (text, logged_probability, outcomes) in zip(
            bodies, chosen, logged, read.events, strict=True):
        assert event.context == body["context"]
        allowed = [a["id"] for a in ACTIONS if a["id"] not in body.get("excluded", [])]
        assert text == (shared_line(event.context), [lines[i] for i in allowed],
                        allowed.index(action))
        assert logged_probability == probability
        assert outcomes == ([0.0, 7.5] if body["event_id"] == "e1" else [0.0, 0.0])
