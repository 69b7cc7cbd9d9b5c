"""Kept action examples (bandits.learning.vw.Policy.predict_ccb): VW's parse of a ccb pool's
action lines is reused from one prediction to the next. Every prediction must equal the one over
the whole text parsed afresh, on a new model and on a trained one, whatever the slots, their
exclusions and the order pools come in; no example may be lost from the workspace."""

from __future__ import annotations

import gc
import random

import pytest

from bandits.learning import vw as vw_module
from bandits.learning.examples import SlotExample, ccb_actions_text, ccb_text
from bandits.learning.vw import Policy
from bandits.loop_config import LoopConfig

EXPLORATIONS = [
    {},  # squarecb, the default
    {"exploration": {"algorithm": "epsilon", "epsilon": 0.3}},
    {"exploration": {"algorithm": "bag", "size": 3, "epsilon": 0.1}},
]


def _config(extra: dict) -> LoopConfig:
    return LoopConfig.model_validate({"kind": "ccb", "objectives": [{"name": "click"}], **extra})


def _pool(rng: random.Random, size: int, name: str) -> list[str]:
    return [
        f"|_action id={name}-{i} |offer vertical={rng.choice('abcd')} payout:{rng.random() * 9:.3f}"
        for i in range(size)
    ]


def _slots(rng: random.Random, pool: int, event: int) -> list[SlotExample]:
    count = rng.randint(1, min(pool, 4))
    slots = []
    for k in range(count):
        allowed = None
        if rng.random() < 0.3:  # some exclusions, always leaving one action per slot
            allowed = tuple(sorted(rng.sample(range(pool), rng.randint(count, pool))))
        slots.append(SlotExample(f"|_slot id=s{k} |slot position:{k}", allowed, seed=f"{event}.{k}"))
    return slots


def _trained(config: LoopConfig, pools: list[list[str]], rng: random.Random) -> bytes:
    learner = vw_module.Learner(config)
    for step in range(200):
        pool = pools[step % len(pools)]
        chosen = rng.sample(range(len(pool)), 2)
        labelled = [
            SlotExample(f"|_slot id=s{k} |slot position:{k}", chosen=c, probability=0.2,
                        cost=-float(c % 3))
            for k, c in enumerate(chosen)
        ]
        learner.learn_text(ccb_text("|user age:30 country=ar", pool, labelled))
    blob = learner.snapshot()
    learner.close()
    return blob


@pytest.mark.parametrize("extra", EXPLORATIONS, ids=["squarecb", "epsilon", "bag"])
@pytest.mark.parametrize("trained", [False, True], ids=["new", "trained"])
def test_kept_actions_predict_what_a_fresh_parse_predicts(extra, trained):
    rng = random.Random(7)
    config = _config(extra)
    pools = [_pool(rng, size, f"p{n}") for n, size in enumerate([20, 3, 60, 7, 20, 120])]
    blob = _trained(config, pools, rng) if trained else None
    kept, fresh = Policy(config, 1, blob), Policy(config, 1, blob)
    for event in range(600):
        number = rng.choice(range(len(pools))) if event % 5 else event // 5 % len(pools)
        lines = pools[number]
        slots = _slots(rng, len(lines), event)
        shared = "" if event % 7 == 0 else f"|user age:{event % 80} country={rng.choice('xyz')}"
        expected = fresh.predict_slots(ccb_text(shared, lines, slots))
        got = kept.predict_ccb(number, lambda: ccb_actions_text(lines), ccb_text(shared, [], slots))
        assert got == expected, f"event {event}, pool {number}"
    # 230 actions in all, more than a policy keeps: pools were given back and parsed again
    assert kept._kept._held <= vw_module.KEPT_ACTION_EXAMPLES
    kept.close()
    fresh.close()


def test_a_pool_too_large_to_keep_is_predicted_and_not_kept(monkeypatch):
    monkeypatch.setattr(vw_module, "KEPT_ACTION_EXAMPLES", 10)
    rng = random.Random(3)
    config = _config({})
    policy, fresh = Policy(config), Policy(config)
    lines = _pool(rng, 12, "big")
    for event in range(5):
        slots = _slots(rng, len(lines), event)
        assert policy.predict_ccb("big", lambda: ccb_actions_text(lines), ccb_text("", [], slots)) \
            == fresh.predict_slots(ccb_text("", lines, slots))
    assert policy._kept._held == 0 and not policy._kept._pools


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def test_dropped_and_closed_policies_give_their_examples_back():
    """Each kept example holds about 30 KB of the workspace's; a policy replaced by a newer
    model is dropped, not closed, so it gives them back when it is collected. Without that, 80
    policies keeping 200 examples each would leave about 480 MB behind."""
    rng = random.Random(5)
    config = _config({})
    pools = [_pool(rng, 50, f"p{n}") for n in range(4)]

    def use(policy: Policy) -> None:
        for number, lines in enumerate(pools):
            policy.predict_ccb(number, lambda: ccb_actions_text(lines),
                               ccb_text("|u a", [], _slots(rng, len(lines), number)))

    for _ in range(5):  # warm up the allocator
        use(Policy(config))
    gc.collect()
    before = _rss_mb()
    for index in range(80):
        policy = Policy(config)
        use(policy)
        if index % 2:
            policy.close()
        del policy
    gc.collect()
    assert _rss_mb() - before < 100


def test_a_failed_prediction_does_not_keep_the_pool():
    """VW refuses more slots than actions (the service answers 422 before asking it)."""
    config = _config({})
    policy, fresh = Policy(config), Policy(config)
    lines = _pool(random.Random(1), 2, "p")

    def slots(count: int) -> list[SlotExample]:
        return [SlotExample(f"|_slot id=s{k}", seed=f"1.{k}") for k in range(count)]

    assert policy.predict_ccb("p", lambda: ccb_actions_text(lines), ccb_text("", [], slots(2)))
    assert "p" in policy._kept._pools
    with pytest.raises(RuntimeError):
        policy.predict_ccb("p", lambda: ccb_actions_text(lines), ccb_text("", [], slots(3)))
    assert "p" not in policy._kept._pools and policy._kept._held == 0
    for count in (1, 2):
        assert policy.predict_ccb("p", lambda: ccb_actions_text(lines),
                                  ccb_text("", [], slots(count))) \
            == fresh.predict_slots(ccb_text("", lines, slots(count)))
