"""The synthetic world: exact values agree with its own draws, the oracle wins, seeds reproduce."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from bandits.simulate import world as world_module
from bandits.simulate.driver import DEFAULT_WEIGHTS
from bandits.simulate.world import OBJECTIVES, World, generate, scalarise

# Monte Carlo draws per policy; the estimate must lie within TOLERANCE_SE standard errors of the
# exact value (a correct world fails this with probability about 1e-4 per comparison; the seed
# is fixed, so the test is deterministic).
DRAWS = 40_000
TOLERANCE_SE = 4.0


def _weekend_payout_policy(world):
    """A stochastic policy that reads the context: half on the segment's most clicked offer, half a
    softmax over payout, towards high payouts on weekends and low ones on weekdays."""
    payout = np.array([offer.features["payout"] for offer in world.offers])
    most_clicked = world.click.argmax(axis=1)

    def policy(segment, context):
        sign = 1.0 if context["visit"]["weekend"] else -1.0
        softmax = np.exp(sign * payout / 10)
        pmf = 0.5 * softmax / softmax.sum()
        pmf[most_clicked[segment]] += 0.5
        return pmf

    return policy


def _monte_carlo(world, policy, rng):
    outcomes = np.empty((DRAWS, len(OBJECTIVES)))
    for n in range(DRAWS):
        segment, context = world.draw_context(rng)
        offer = int(rng.choice(len(world.offers), p=world.pmf(policy(segment, context))))
        drawn = world.draw_outcomes(segment, offer, rng)
        outcomes[n] = [drawn[name] for name in OBJECTIVES]
    return outcomes.mean(axis=0), outcomes.std(axis=0, ddof=1) / np.sqrt(DRAWS)


@pytest.mark.parametrize("name", ["uniform", "oracle", "context"])
def test_exact_values_match_monte_carlo_from_the_worlds_own_draws(name):
    world = generate(seed=3, segments=5, offers=10)
    policy = {
        "uniform": world.uniform_policy(),
        "oracle": world.oracle_policy(DEFAULT_WEIGHTS),
        "context": _weekend_payout_policy(world),
    }[name]
    exact = world.value(policy)
    mean, standard_error = _monte_carlo(world, policy, np.random.default_rng(11))
    for k, objective in enumerate(OBJECTIVES):
        assert abs(mean[k] - exact[objective]) <= TOLERANCE_SE * standard_error[k], (
            objective, mean[k], exact[objective], standard_error[k])


def test_outcomes_follow_the_stated_probabilities_and_revenue_mean():
    # Every click converts here, so every click shows revenue: its mean is checked to about 1 %.
    world = generate(seed=0, segments=3, offers=3)
    certain = World(world.segments, world.offers, click=np.full((3, 3), 0.3), conversion=np.ones((3, 3)),
                    revenue_mean=np.full((3, 3), 25.0), revenue_sigma=np.array([0.8, 0.8, 0.8]))
    rng = np.random.default_rng(5)
    draws = [certain.draw_outcomes(1, 2, rng) for _ in range(DRAWS)]
    clicks = np.array([d["click"] for d in draws])
    revenue = np.array([d["revenue"] for d in draws if d["conversion"]])
    assert np.all(clicks == [d["conversion"] for d in draws])
    assert abs(clicks.mean() - 0.3) <= TOLERANCE_SE * np.sqrt(0.3 * 0.7 / DRAWS)
    assert abs(revenue.mean() - 25.0) <= TOLERANCE_SE * revenue.std(ddof=1) / np.sqrt(len(revenue))
    assert certain.expected(1, 2) == pytest.approx({"click": 0.3, "conversion": 0.3, "revenue": 7.5})


def test_values_are_the_sums_over_segments_and_offers():
    world = generate(seed=5, segments=4, offers=7)
    shares = np.array([segment.probability for segment in world.segments])
    assert shares.sum() == pytest.approx(1.0)
    assert sum(p for _, _, p in world.contexts()) == pytest.approx(1.0)
    constants = []
    for offer in world.offers:
        value = world.value(world.constant_policy(offer.id))
        by_hand = {k: sum(shares[s] * world.expected(s, offer.id)[k] for s in range(4))
                   for k in OBJECTIVES}
        assert value == pytest.approx(by_hand, rel=1e-12)
        constants.append(value)
    uniform = world.uniform_value()
    for objective in OBJECTIVES:
        assert uniform[objective] == pytest.approx(np.mean([v[objective] for v in constants]), rel=1e-12)
    # Expected outcomes per decision: click, click x conversion, click x conversion x revenue mean.
    expected = world.expected(1, 2)
    assert expected["conversion"] == pytest.approx(world.click[1, 2] * world.conversion[1, 2])
    assert expected["revenue"] == pytest.approx(expected["conversion"] * world.revenue_mean[1, 2])


WEIGHTS = [DEFAULT_WEIGHTS, {"click": 1.0}, {"conversion": 1.0}, {"revenue": 1.0},
           {"click": 1.0, "revenue": 0.01}, {"click": 0.2, "conversion": 3.0, "revenue": 0.5}]


@pytest.mark.parametrize("seed", range(8))
def test_the_oracle_beats_uniform_and_every_constant_policy(seed):
    world = generate(seed=seed, segments=3 + seed % 4, offers=6 + seed)
    for weights in WEIGHTS:
        oracle = scalarise(world.oracle_value(weights), weights)
        best_constant = max(scalarise(world.value(world.constant_policy(offer.id)), weights)
                            for offer in world.offers)
        assert oracle > best_constant >= scalarise(world.uniform_value(), weights) - 1e-12
        # The best offer depends on the user: no single offer is the best for every segment.
        assert len(set(world.best_offers(weights))) > 1


def test_the_best_offer_depends_on_the_weights():
    changed = sum(generate(seed=seed).best_offers({"click": 1.0}) != generate(seed=seed).best_offers(
        {"revenue": 1.0}) for seed in range(10))
    assert changed == 10


def test_a_seed_gives_the_same_world_and_the_same_draws():
    first, again, other = generate(seed=42), generate(seed=42), generate(seed=43)
    for array in ("click", "conversion", "revenue_mean", "revenue_sigma"):
        np.testing.assert_array_equal(getattr(first, array), getattr(again, array))
    assert first.actions() == again.actions() and first.segments == again.segments
    assert not np.array_equal(first.click, other.click)

    def draws(world, seed):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(50):
            segment, context = world.draw_context(rng)
            out.append((segment, context, world.draw_outcomes(segment, segment % 3, rng)))
        return out

    assert draws(first, 1) == draws(again, 1)
    assert draws(first, 1) != draws(first, 2)


def test_contexts_and_actions_are_in_the_apis_format():
    world = generate(seed=0, segments=5, offers=10)
    segment, context = world.draw_context(np.random.default_rng(0))
    assert set(context) == {"user", "visit"}
    assert set(context["user"]) == {"country", "device", "age_band",
                                    "tenure_days", "sessions_30d", "spend_index"}
    actions = world.actions()
    assert len({action["id"] for action in actions}) == 10
    assert all(set(action["features"]["offer"]) == {"vertical", "payout", "brand"} for action in actions)
    # Segments are told apart by their features.
    assert len({tuple(sorted(s.features.items())) for s in world.segments}) == 5
    context["user"]["country"] = "changed"  # callers get copies, never the truth itself
    assert world.segments[segment].features["country"] != "changed"


def test_policies_must_return_a_pmf():
    world = generate(seed=0)
    with pytest.raises(ValueError, match="not a probability distribution"):
        world.value(lambda segment, context: np.full(10, 0.2))
    with pytest.raises(ValueError, match="one probability per offer"):
        world.value(lambda segment, context: [1.0])
    with pytest.raises(ValueError, match="does not have"):
        world.value(lambda segment, context: {"offer-99": 1.0})
    by_id = world.value(lambda segment, context: {"offer-03": 1.0})
    assert by_id == world.value(world.constant_policy(3))
    with pytest.raises(ValueError, match="between"):
        generate(seed=0, segments=6, offers=5)


def test_docstring_examples_run():
    assert doctest.testmod(world_module).failed == 0
