"""The DSJSON export: VW reads every line of every kind under --strict_parse and learns it, and
the labels VW parses are the decisions and rewards the database holds. SQLite and Postgres."""

from __future__ import annotations

import json

import pytest
import vowpalwabbit
from vowpalwabbit import LabelType

from bandits.learning.features import action_line, namespaces_text
from tests.conftest import ADMIN
from tests.export.logs import CONTEXTS, POOL, create_loop, log_decisions, stored

REDUCTIONS = {"cb": "--cb_explore_adf", "ccb": "--ccb_explore_adf", "slates": "--slates"}


def _export(client, query: str = "") -> list[str]:
    reply = client.get(f"/v1/loops/loop/export?format=dsjson{query}", headers=ADMIN)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert reply.mimetype == "application/x-ndjson"
    assert reply.is_streamed
    return reply.get_data(as_text=True).splitlines()


def _check_cb(examples, expected) -> None:
    offered = [a for a in expected.action_ids if a not in expected.excluded]
    assert len(examples) == 1 + len(offered)  # shared + one per action offered
    labelled = [i for i, example in enumerate(examples[1:])
                if example.get_label(LabelType.CONTEXTUAL_BANDIT).costs]
    assert [offered[i] for i in labelled] == [expected.chosen]
    label = examples[1 + labelled[0]].get_label(LabelType.CONTEXTUAL_BANDIT).costs[0]
    assert label.cost == pytest.approx(-expected.reward, rel=1e-6, abs=1e-6)
    assert label.probability == pytest.approx(expected.probability, rel=1e-6)


def _check_ccb(examples, expected) -> None:
    slots = expected.slots
    assert len(examples) == 1 + len(expected.action_ids) + len(slots)
    for example, slot in zip(examples[-len(slots):], slots):
        label = example.get_label(LabelType.CONDITIONAL_CONTEXTUAL_BANDIT)
        assert label.outcome.cost == pytest.approx(-expected.slot_rewards[slot["id"]], abs=1e-6)
        chosen = label.outcome.action_probs[0]
        assert expected.action_ids[chosen.action] == slot["chosen"]
        assert chosen.score == pytest.approx(slot["probability"], rel=1e-6)
        allowed = [i for i, a in enumerate(expected.action_ids) if a not in slot["excluded"]]
        assert list(label.explicit_included_actions) == (allowed if slot["excluded"] else [])


def _check_slates(examples, expected) -> None:
    slots = expected.slots
    assert examples[0].get_label(LabelType.SLATES).cost == pytest.approx(-expected.reward, abs=1e-6)
    for example, slot in zip(examples[-len(slots):], slots):
        chosen = example.get_label(LabelType.SLATES).probabilities[0]
        assert chosen.score == pytest.approx(slot["probability"], rel=1e-6)


CHECKS = {"cb": _check_cb, "ccb": _check_ccb, "slates": _check_slates}


@pytest.mark.parametrize("kind", list(REDUCTIONS))
def test_vw_learns_every_line_and_reads_the_logged_costs_and_probabilities(app, client, db, kind):
    log_decisions(client, "loop", kind, create_loop(app, "loop", kind))
    lines = _export(client)
    logged = stored(db, "loop", kind)
    assert len(lines) == len(logged) == 12
    workspace = vowpalwabbit.Workspace(f"{REDUCTIONS[kind]} --dsjson --strict_parse --quiet")
    learned = 0
    try:
        for line, expected in zip(lines, logged):
            document = json.loads(line)
            assert document["EventId"] == expected.event_id
            assert document.get("_skipLearn", False) is expected.unactivated
            examples = workspace.parse(line)
            if not expected.unactivated:
                CHECKS[kind](examples, expected)
                learned += 1
            workspace.learn(examples)
            workspace.finish_example(examples)
    finally:
        workspace.finish()
    assert learned == len(logged) - 1  # e1 was deferred and never activated


@pytest.mark.parametrize("kind", list(REDUCTIONS))
def test_each_line_keeps_the_pmf_the_raw_outcomes_and_the_model_version(app, client, db, kind):
    log_decisions(client, "loop", kind, create_loop(app, "loop", kind))
    documents = [json.loads(line) for line in _export(client)]
    logged = {d.event_id: d for d in stored(db, "loop", kind)}
    for document in documents:
        expected = logged[document["EventId"]]
        assert document["VWState"] == {"m": "0"}
        assert document["Timestamp"].endswith("Z")
        if kind == "cb":
            offered = [a for a in expected.action_ids if a not in expected.excluded]
            pmf = [expected.pmf[expected.action_ids.index(a)] for a in offered]
            assert sorted(document["p"]) == pytest.approx(sorted(pmf))
            assert sum(document["p"]) == pytest.approx(1.0)
            assert document["p"][0] == pytest.approx(expected.probability)
            assert [a - 1 for a in document["a"]][0] == offered.index(expected.chosen)
        elif kind == "ccb":
            for outcome, slot in zip(document["_outcomes"], expected.slots):
                assert outcome["_id"] == slot["id"]
                assert outcome["_p"] == pytest.approx([slot["pmf"][i] for i in outcome["_a"]])
                assert sum(outcome["_p"]) == pytest.approx(1.0)
                assert all(o.keys() == {"objective", "v"} for o in outcome["_o"])
        else:
            for outcome in document["_outcomes"]:
                assert sum(outcome["_p"]) == pytest.approx(1.0)
        if kind != "ccb":
            raw = [(o["objective"], o["v"]) for o in document["o"]]
            assert sum(v for objective, v in raw if objective == "revenue") * 0.1 + max(
                (v for objective, v in raw if objective == "click"), default=0) == pytest.approx(expected.reward)


def test_features_hash_as_the_trainer_writes_them_but_for_the_id_namespaces(app, client):
    """VW's audit of an exported cb line and of the trainer's text for the same decision: the
    context's and the actions' own features are the same hashed features; the action id is in
    namespace `action`, not `_action` (VW's JSON parser skips keys that start with `_`)."""
    log_decisions(client, "loop", "cb", create_loop(app, "loop", "cb"), n=3)
    lines = _export(client)
    for line, context in zip(lines, CONTEXTS):
        document = json.loads(line)
        chosen = document["_labelIndex"]
        offered = [a for a in POOL if a["id"] != "a3"] if document["EventId"] == "e1" else POOL
        shared = namespaces_text(context)
        text = [f"shared {shared}" if shared else "shared |"] + [action_line(a["id"], a.get("features")) for a in offered]
        text[1 + chosen] = f"0:1:0.5 {text[1 + chosen]}"
        from_json = _audit("--dsjson", line)
        from_text = _audit("", text)
        assert [f.replace("action^id=", "_action^id=").split(":")[0] for f in from_json] == [
            f.split(":")[0] for f in from_text]
        assert [_hashless(f) for f in from_json if "action^id" not in f] == [
            _hashless(f) for f in from_text if "action^id" not in f]


def _audit(flags: str, example) -> list[str]:
    workspace = vowpalwabbit.Workspace(f"--cb_explore_adf --quiet --audit {flags}", enable_logging=True)
    try:
        examples = workspace.parse(example)
        workspace.predict(examples)
        workspace.finish_example(examples)
        log = workspace.get_log()
    finally:
        workspace.finish()
    return sorted(feature for line in log if line.startswith("\t") for feature in line.split())


def _hashless(feature: str) -> str:
    """``ns^name:hash:value:weight`` without the weight (the same before any learning)."""
    return ":".join(feature.split(":")[:3])
