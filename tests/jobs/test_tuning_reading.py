"""What a tuning job reads from the decision log: each decision as the VW text the service
learns from (the JSON columns come back as text and are parsed by the reader, the actions only
when the same list was not seen before), its logged action among the allowed ones, its
propensity and its objectives' values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

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


def test_the_children_score_the_search_in_order_as_this_process_would(app, db, monkeypatch):
    """Parts.score_many: the tune share's scorer sent to both children, batches of candidates
    scored there, answers in order and equal to scoring here; a search abandoned halfway leaves
    the children's answers lined up for the next request."""
    from bandits.jobs import tuning_reading
    from bandits.services.loops import LoopService
    from bandits.simulate.logged import write_log
    from bandits.simulate.world import tradeoff
    from bandits.tuning import Exploration, Scorer

    weights = {"click": 1.0, "conversion": 0.0, "revenue": 0.0}
    objectives = [{"name": k, "weight": w} for k, w in weights.items()]
    LoopService(db).create("t", {"objectives": objectives,
                                 "exploration": {"algorithm": "epsilon", "epsilon": 0.2}})
    with db.session() as session:
        loop = session.query(Loop).filter(Loop.name == "t").one()
        loop_id, config = loop.id, LoopConfig.model_validate(loop.config)
    write_log(db, loop_id, tradeoff(), 900, weights=weights, epsilon=0.2, seed=3)
    now = datetime.now(timezone.utc)
    window = Window(loop_id, now - timedelta(days=1), now + timedelta(hours=1), 100, list(weights))
    monkeypatch.setattr(tuning_reading, "SCORE_BATCH", 3)  # many batches, two ahead per child
    fitted = tuning_reading.fit(db, config, window, None, 300, lambda done: None)
    with db.session() as session:
        from bandits.store.jobs import window_position
        starts = [window_position(loop_id, window.since, window.until, rank - 1, session=session)
                  for rank in (300, 600)]
    parts = tuning_reading.Parts(db, config, window, [(starts[0], 300), (starts[1], 300)])
    try:
        parts.score(fitted, lambda done: None)
        assert len(parts._children) == 2  # a file database: the children did the work
        scorer = Scorer(parts.shares[0].arrays(), Exploration("epsilon", 0.2))
        scorer.set_reference(np.array([1.0, 0.0, 0.0]))
        candidates = [np.array([1.0, c, 10 * c]) for c in np.linspace(0, 1, 20)]
        here = [scorer.score(w) for w in candidates]
        there = list(parts.score_many(scorer, candidates))
        assert len(there) == len(here)
        for ours, theirs in zip(here, there):
            np.testing.assert_array_equal(ours.value, theirs.value)
            np.testing.assert_array_equal(ours.lift_standard_error, theirs.lift_standard_error)
            np.testing.assert_array_equal(ours.versus_reference, theirs.versus_reference)
        abandoned = parts.score_many(scorer, candidates)
        next(abandoned)
        abandoned.close()
        model = tuning_reading.train(config, fitted, np.array([1.0, 0.0, 0.0]))
        tune_pmfs, holdout_pmfs = parts.pmfs([model])
        assert tune_pmfs[0].shape == (len(tradeoff().offers), 300)
        np.testing.assert_allclose(tune_pmfs[0].sum(axis=0), 1.0, rtol=1e-5)
    finally:
        parts.close()
