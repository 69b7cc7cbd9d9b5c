"""The slate world: exact values agree with its own draws, the oracle is the best slate, seeds
reproduce, requests are in the api's format."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest

from bandits.simulate import slates as slates_module
from bandits.simulate.driver import DEFAULT_WEIGHTS
from bandits.simulate.slates import SlateWorld, Slot, generate_slates
from bandits.simulate.world import OBJECTIVES, World, generate, scalarise

# As in test_world: Monte Carlo estimates must lie within TOLERANCE_SE standard errors of the exact
# values (a correct world fails one comparison with probability about 1e-4; seeds are fixed).
DRAWS = 30_000
TOLERANCE_SE = 4.0


def _softmax_conditional(world):
    """A sequential policy that reads the context and the slots above: a softmax over clicks and
    payout, sharper on weekends, never an offer a slot above took (ccb) nor one its slot cannot
    take (slates)."""
    payout = np.array([offer.features["payout"] for offer in world.offers])

    def conditional(segment, context, k, taken):
        sharpness = 3.0 if context["visit"]["weekend"] else 1.0
        score = sharpness * (20 * world.base.click[segment] + payout / 20) - 0.5 * k * payout / 20
        weights = np.exp(score - score.max()) * world.mask[k]
        weights[list(taken)] = 0.0
        return weights / weights.sum()

    return conditional


def _sample(pmf, rng):
    return int(rng.choice(len(pmf), p=pmf))


@pytest.mark.parametrize("kind, offers", [("ccb", 4), ("slates", 3)])
def test_exact_values_match_monte_carlo_of_sequential_slates(kind, offers):
    world = generate_slates(seed=3, kind=kind, segments=3, offers=offers, slots=3)
    conditional = _softmax_conditional(world)
    policy = world.sequential_policy(conditional)
    exact = world.value(policy)
    # Per slot, exactly: the marginals times the slot's expectations, over the contexts.
    exact_slot_clicks = sum(p * np.einsum("ka,ka->k", policy(s, x), world.expectations[s, :, :, 0])
                            for s, x, p in world.contexts())

    rng = np.random.default_rng(11)
    page = np.empty((DRAWS, len(OBJECTIVES)))
    slot_clicks = np.empty((DRAWS, len(world.slots)))
    served = np.empty((DRAWS, len(OBJECTIVES)))  # what the report computes from served PMFs
    for n in range(DRAWS):
        segment, context = world.draw_context(rng)
        taken: tuple[int, ...] = ()
        pmfs = []
        for k in range(len(world.slots)):
            pmf = conditional(segment, context, k, taken)
            pmfs.append(pmf)
            taken = (*taken, _sample(pmf, rng))
        drawn = world.draw_outcomes(segment, list(taken), rng)
        page[n] = [sum(d[name] for d in drawn) for name in OBJECTIVES]
        slot_clicks[n] = [d["click"] for d in drawn]
        served[n] = world.served_expected(segment, pmfs)

    for label, values, expected in (("page", page, [exact[k] for k in OBJECTIVES]),
                                    ("slot clicks", slot_clicks, exact_slot_clicks),
                                    ("served PMFs", served, [exact[k] for k in OBJECTIVES])):
        mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(DRAWS)
        assert np.all(np.abs(mean - expected) <= TOLERANCE_SE * se), (label, mean, expected, se)


def test_clicks_follow_examination_times_attractiveness():
    base = generate(seed=0, segments=3, offers=3)
    flat = World(base.segments, base.offers, click=np.full((3, 3), 0.5), conversion=np.ones((3, 3)),
                 revenue_mean=np.full((3, 3), 10.0), revenue_sigma=np.full(3, 0.5))
    slots = [Slot("top", {}, 0.9), Slot("middle", {}, 0.5), Slot("bottom", {}, 0.2)]
    world = SlateWorld("ccb", flat, slots)
    rng = np.random.default_rng(2)
    clicks = np.array([[d["click"] for d in world.draw_outcomes(1, [2, 0, 1], rng)]
                       for _ in range(DRAWS)])
    for k, examination in enumerate((0.9, 0.5, 0.2)):
        p = examination * 0.5
        assert abs(clicks[:, k].mean() - p) <= TOLERANCE_SE * np.sqrt(p * (1 - p) / DRAWS)
    assert world.expected(1, "bottom", 0) == pytest.approx(
        {"click": 0.1, "conversion": 0.1, "revenue": 1.0})
    # Outcomes of different slots are independent: P(top and bottom clicked) = product.
    both = (clicks[:, 0] * clicks[:, 2]).mean()
    assert abs(both - 0.45 * 0.1) <= TOLERANCE_SE * np.sqrt(0.045 * 0.955 / DRAWS)


@pytest.mark.parametrize("kind", ["ccb", "slates"])
def test_uniform_is_the_uniform_sequential_draw_and_values_are_sums(kind):
    world = generate_slates(seed=4, kind=kind, segments=4, offers=5 if kind == "ccb" else 4)

    def uniform(segment, context, k, taken):
        allowed = world.mask[k].copy()
        allowed[list(taken)] = False
        return allowed / allowed.sum()

    assert world.value(world.sequential_policy(uniform)) == pytest.approx(
        world.uniform_value(), rel=1e-12)
    # A constant slate is worth the sum of its slots' expectations, weighted by segment shares.
    slate = [own[-1] for own in world.slot_offers] if kind == "slates" else [4, 0, 2]
    shares = np.array([segment.probability for segment in world.segments])
    by_hand = {name: sum(shares[s] * world.expected(s, k, a)[name] for s in range(4)
                         for k, a in enumerate(slate)) for name in OBJECTIVES}
    assert world.value(world.constant_policy(slate)) == pytest.approx(by_hand, rel=1e-12)
    # The expectations are the base world's, scaled by examination, zero where a slot cannot go.
    s, a = 2, world.slot_offers[1][0]
    assert world.expectations[s, 1, a] == pytest.approx(
        world.examination[1] * world.base.expectations[s, a])
    if kind == "slates":
        assert not world.expectations[s, 0, a].any()


def _all_slates(world):
    if world.kind == "ccb":
        return list(itertools.permutations(range(len(world.offers)), len(world.slots)))
    return list(itertools.product(*world.slot_offers))


WEIGHTS = [DEFAULT_WEIGHTS, {"click": 1.0}, {"revenue": 1.0},
           {"click": 0.2, "conversion": 3.0, "revenue": 0.5}]


@pytest.mark.parametrize("kind, seed", [(k, seed) for k in ("ccb", "slates") for seed in range(4)])
def test_the_oracle_is_the_best_slate_for_every_segment_and_beats_every_constant_slate(kind, seed):
    segments = 3 + seed % 3
    world = generate_slates(seed=seed, kind=kind, segments=segments,
                            offers=6 if kind == "ccb" else segments)
    slates = _all_slates(world)
    for weights in WEIGHTS:
        w = np.array([weights.get(name, 0.0) for name in OBJECTIVES])
        # Brute force: every slate's scalar value per segment.
        worth = np.array([[sum(world.expectations[s, k, a] @ w for k, a in enumerate(slate))
                           for slate in slates] for s in range(len(world.segments))])
        oracle = world.best_slates(weights)
        for s, best in enumerate(oracle):
            mine = sum(world.expectations[s, k, world.base._index(a)] @ w
                       for k, a in enumerate(best))
            assert mine == pytest.approx(worth[s].max(), rel=1e-12)
        value = scalarise(world.oracle_value(weights), weights)
        shares = np.array([segment.probability for segment in world.segments])
        best_constant = (shares @ worth).max()
        assert value > best_constant + 1e-9  # the best slate depends on the user
        assert best_constant >= scalarise(world.uniform_value(), weights) - 1e-12


def test_a_seed_gives_the_same_page_and_the_same_draws():
    for kind in ("ccb", "slates"):
        first, again, other = (generate_slates(seed=s, kind=kind) for s in (42, 42, 43))
        np.testing.assert_array_equal(first.expectations, again.expectations)
        assert first.slots == again.slots and first.slot_offers == again.slot_offers
        assert first.actions() == again.actions() and first.slot_requests() == again.slot_requests()
        assert not np.array_equal(first.expectations, other.expectations)

        def draws(world, seed):
            rng = np.random.default_rng(seed)
            out = []
            for _ in range(30):
                segment, context = world.draw_context(rng)
                slate = [own[segment % len(own)] for own in world.slot_offers]
                if kind == "ccb":
                    slate = [(segment + k) % len(world.offers) for k in range(len(world.slots))]
                out.append((segment, context, world.draw_outcomes(segment, slate, rng)))
            return out

        assert draws(first, 1) == draws(again, 1) != draws(first, 2)
    # The ccb page's base world is the cb world of the same seed.
    np.testing.assert_array_equal(generate_slates(seed=5, kind="ccb").base.click,
                                  generate(seed=5).click)


def test_requests_are_in_the_apis_format():
    ccb = generate_slates(seed=0, kind="ccb", offers=10)
    assert [slot["id"] for slot in ccb.slot_requests()] == ["top", "middle", "bottom"]
    assert [slot["features"] for slot in ccb.slot_requests()] == [
        {"slot": {"position": k}} for k in (1, 2, 3)]
    assert len({slot["baseline"] for slot in ccb.slot_requests()}) == 3  # distinct on a ccb page
    assert all("slot" not in action for action in ccb.actions()) and len(ccb.actions()) == 10
    assert np.all(np.diff(ccb.examination) < 0) and 0.9 <= ccb.examination[0] <= 1

    page = generate_slates(seed=0, kind="slates", offers=5, slots=3)
    actions = page.actions()
    assert len(actions) == 15
    by_slot = {slot.id: [a["id"] for a in actions if a["slot"] == slot.id] for slot in page.slots}
    assert by_slot["top"] == [f"offer-{a:02d}" for a in range(5)]
    assert [len(ids) for ids in by_slot.values()] == [5, 5, 5]
    for slot in page.slot_requests():
        assert slot["baseline"] in by_slot[slot["id"]]
    # In every slot each segment has its own most clicked offer: the best offer depends on the user.
    for own in page.slot_offers:
        assert len(set(page.base.click[:, list(own)].argmax(axis=1))) == 5
    assert generate_slates(seed=0, kind="slates", slots=2).slot_requests()[1]["id"] == "middle"


def test_refusals():
    world = generate_slates(seed=0, kind="ccb", segments=3, offers=4)
    with pytest.raises(ValueError, match="at most once"):
        world.draw_outcomes(0, [1, 1, 2], np.random.default_rng(0))
    with pytest.raises(ValueError, match="fills 3 slots"):
        world.draw_outcomes(0, [1, 2], np.random.default_rng(0))
    with pytest.raises(ValueError, match="more than once"):
        world.value(lambda s, x: [np.eye(4)[0]] * 3)
    with pytest.raises(ValueError, match="a slot above took"):
        world.value(world.sequential_policy(lambda s, x, k, taken: np.full(4, 0.25)))
    page = generate_slates(seed=0, kind="slates", segments=3, offers=3)
    outside = page.slot_offers[1][0]
    with pytest.raises(ValueError, match="cannot show"):
        page.draw_outcomes(0, [outside, outside, page.slot_offers[2][0]], np.random.default_rng(0))
    with pytest.raises(ValueError, match="offers it cannot show"):
        page.value(lambda s, x: [np.eye(9)[outside]] * 3)
    with pytest.raises(ValueError, match="at least as many offers as slots"):
        generate_slates(seed=0, kind="ccb", segments=3, offers=2)
    with pytest.raises(ValueError, match="to 200 offers per slot"):
        generate_slates(seed=0, kind="slates", segments=4, offers=3)
    with pytest.raises(ValueError, match="decrease"):
        SlateWorld("ccb", generate(0, 3, 3), [Slot("a", {}, 0.5), Slot("b", {}, 0.7)])


def test_docstring_examples_run():
    assert doctest.testmod(slates_module).failed == 0


def test_every_slot_of_a_slates_page_has_an_engagement_and_a_premium_offer_per_segment():
    page = generate_slates(seed=6, kind="slates", segments=4, offers=9, slots=3)
    for own in page.slot_offers:
        own = list(own)
        expectations = page.base.expectations[:, own]  # [segment, offer of the slot, objective]
        engagement = expectations[:, :, 0].argmax(axis=1)
        premium = expectations[:, :, 2].argmax(axis=1)
        assert len(set(engagement)) == len(set(premium)) == 4 and not set(engagement) & set(premium)
        for s in range(4):
            others = [j for j in range(9) if j not in (engagement[s], premium[s])]
            assert np.all(expectations[s, engagement[s]] > expectations[s, others])
            assert expectations[s, premium[s], 2] > expectations[s, engagement[s], 2]
