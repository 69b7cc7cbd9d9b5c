r"""A synthetic world whose truth is known exactly: users in segments, offers, and outcomes.

A decision's context is a user of segment :math:`s` (drawn from the segment distribution
:math:`P(s)`) on a visit :math:`v` (a daypart and a weekend flag, drawn independently from
:math:`P(v)`; visits carry no signal, a learner has to learn to ignore them). Showing offer
:math:`a` to that user gives

* a click with probability :math:`c_{sa}`,
* given a click, a conversion with probability :math:`q_{sa}`,
* given a conversion, revenue :math:`\sim \mathrm{LogNormal}(\mu_{sa}, \sigma_a)` with mean
  :math:`m_{sa}`.

So the expected outcomes per decision are click :math:`c_{sa}`, conversion :math:`c_{sa} q_{sa}`,
revenue :math:`c_{sa} q_{sa} m_{sa}`. Contexts have finite support (segments × visits), so the value
of any policy :math:`\pi(a \mid s, x)` is an exact sum,
:math:`V_k(\pi) = \sum_{s, v} P(s) P(v) \sum_a \pi(a \mid s, x_{sv}) E_k[s, a]`, not an estimate.

:func:`generate` builds the truth from a seed so that each segment has an *engagement* offer that
beats every other offer on every objective except the segment's *premium* offer, which earns more
revenue with fewer clicks. The best offer for any non-negative weights is therefore one of those
two, and the engagement offers differ between segments: a context-aware policy beats every
constant one, and the best policy depends on the weights.

>>> world = generate(seed=1, segments=4, offers=8)
>>> weights = {"click": 1.0, "conversion": 1.0, "revenue": 0.1}
>>> scalarise(world.oracle_value(weights), weights) > scalarise(world.uniform_value(), weights)
True
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

OBJECTIVES = ("click", "conversion", "revenue")

# Context namespaces: VW names a namespace by its first letter ("u", "v"); actions use "o".
USER, VISIT, OFFER = "user", "visit", "offer"

COUNTRIES = ("AR", "BR", "MX", "US", "ES", "DE")
DEVICES = ("mobile", "desktop", "tablet")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
VERTICALS = ("loans", "cards", "insurance", "travel", "retail", "telecom")
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli")
DAYPARTS = {"morning": 0.25, "afternoon": 0.3, "evening": 0.3, "night": 0.15}
WEEKEND = 2 / 7

Policy = Callable[[int, dict[str, Any]], "Sequence[float] | Mapping[str, float]"]
"""A policy: (segment, context) → PMF over the offers, aligned with :meth:`World.actions` or by id."""


@dataclass(frozen=True)
class Segment:
    name: str
    probability: float
    features: dict[str, Any]


@dataclass(frozen=True)
class Offer:
    id: str
    features: dict[str, Any]


class World:
    """The truth. Arrays are indexed ``[segment, offer]``; build one with :func:`generate`.

    ``click``: P(click); ``conversion``: P(conversion | click); ``revenue_mean``: E[revenue |
    conversion]; ``revenue_sigma`` (per offer): the lognormal's sigma.
    """

    def __init__(self, segments: Sequence[Segment], offers: Sequence[Offer], click: np.ndarray,
                 conversion: np.ndarray, revenue_mean: np.ndarray, revenue_sigma: np.ndarray) -> None:
        self.segments = tuple(segments)
        self.offers = tuple(offers)
        self.click = np.asarray(click, dtype=float)
        self.conversion = np.asarray(conversion, dtype=float)
        self.revenue_mean = np.asarray(revenue_mean, dtype=float)
        self.revenue_sigma = np.asarray(revenue_sigma, dtype=float)
        shape = (len(self.segments), len(self.offers))
        for name in ("click", "conversion", "revenue_mean"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {shape}")
        if self.revenue_sigma.shape != (len(self.offers),):
            raise ValueError(f"revenue_sigma must have one value per offer ({len(self.offers)})")
        if abs(sum(segment.probability for segment in self.segments) - 1) > 1e-9:
            raise ValueError("the segments' probabilities must sum to 1")
        self._offer_index = {offer.id: index for index, offer in enumerate(self.offers)}
        self._segment_p = np.array([segment.probability for segment in self.segments])
        self._visits = [({"daypart": daypart, "weekend": weekend},
                         p * (WEEKEND if weekend else 1 - WEEKEND))
                        for daypart, p in DAYPARTS.items() for weekend in (False, True)]
        self._visit_p = np.array([p for _, p in self._visits])
        # (segment, offer, objective) → expected outcome per decision.
        converted = self.click * self.conversion
        self.expectations = np.stack([self.click, converted, converted * self.revenue_mean], axis=-1)

    # -- drawing ------------------------------------------------------------------------------
    def draw_context(self, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
        """A user's segment and the choose ``context`` (namespaces ``user`` and ``visit``)."""
        segment = int(rng.choice(len(self.segments), p=self._segment_p))
        visit = int(rng.choice(len(self._visits), p=self._visit_p))
        return segment, self.context(segment, visit)

    def draw_users(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` users at once: their segments and visit indices (see :meth:`visit`), drawn
        from the same distributions as :meth:`draw_context` (not the same stream of draws)."""
        return (rng.choice(len(self.segments), size=n, p=self._segment_p),
                rng.choice(len(self._visits), size=n, p=self._visit_p))

    def visit(self, index: int) -> dict[str, Any]:
        """The ``visit`` namespace of visit ``index``: ``{"daypart", "weekend"}``."""
        return dict(self._visits[index][0])

    def draw_outcome_matrix(self, segments: np.ndarray, offers: np.ndarray,
                            rng: np.random.Generator) -> np.ndarray:
        """Outcomes of showing ``offers[i]`` to ``segments[i]`` for every ``i``, drawn at once:
        shape ``(n, 3)``, columns in :data:`OBJECTIVES` order (the distributions of
        :meth:`draw_outcomes`, not its stream of draws)."""
        segments, offers = np.asarray(segments), np.asarray(offers)
        click_u, conversion_u = rng.random(segments.size), rng.random(segments.size)
        amount = rng.lognormal(*self._revenue_lognormal(segments, offers))
        clicked = click_u < self.click[segments, offers]
        converted = clicked & (conversion_u < self.conversion[segments, offers])
        return np.column_stack([clicked, converted, np.where(converted, amount, 0.0)]).astype(float)

    def _revenue_lognormal(self, segment, offer) -> tuple[Any, Any]:
        """(mu, sigma) of the revenue's lognormal for ``offer`` shown to ``segment`` (scalars or
        arrays): mu is set so that the mean is ``revenue_mean``."""
        sigma = self.revenue_sigma[offer]
        return np.log(self.revenue_mean[segment, offer]) - sigma**2 / 2, sigma

    def context(self, segment: int, visit: int) -> dict[str, Any]:
        return {USER: copy.deepcopy(self.segments[segment].features), VISIT: self.visit(visit)}

    def actions(self) -> list[dict[str, Any]]:
        """The offers as choose ``actions``: ``{"id", "features": {"offer": {...}}}``."""
        return [{"id": offer.id, "features": {OFFER: dict(offer.features)}} for offer in self.offers]

    def draw_outcomes(self, segment: int, offer: int | str,
                      rng: np.random.Generator) -> dict[str, float]:
        """``{"click": 0|1, "conversion": 0|1, "revenue": float}`` for showing ``offer``.

        Always consumes the same three draws from ``rng``, whatever happens.
        """
        a = self._index(offer)
        click_u, conversion_u = rng.random(2)
        amount = float(rng.lognormal(*self._revenue_lognormal(segment, a)))
        clicked = click_u < self.click[segment, a]
        converted = clicked and conversion_u < self.conversion[segment, a]
        return {"click": int(clicked), "conversion": int(converted),
                "revenue": amount if converted else 0.0}

    # -- exact values -------------------------------------------------------------------------
    def expected(self, segment: int, offer: int | str) -> dict[str, float]:
        """Expected outcomes per decision of showing ``offer`` to ``segment``, per objective."""
        return _by_objective(self.expectations[segment, self._index(offer)])

    def contexts(self) -> Iterator[tuple[int, dict[str, Any], float]]:
        """The whole context distribution: (segment, context, probability), summing to 1."""
        for (segment, s_p), (visit, v_p) in itertools.product(enumerate(self._segment_p),
                                                              enumerate(self._visit_p)):
            yield segment, self.context(segment, visit), float(s_p * v_p)

    def value(self, policy: Policy) -> dict[str, float]:
        """Exact expected outcomes per decision of ``policy``, per objective."""
        total = np.zeros(len(OBJECTIVES))
        for segment, context, probability in self.contexts():
            total += probability * (self.pmf(policy(segment, context)) @ self.expectations[segment])
        return _by_objective(total)

    def uniform_value(self) -> dict[str, float]:
        return self.value(self.uniform_policy())

    def oracle_value(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Exact value of the best offer per segment for the scalar reward Σ weight × outcome."""
        return self.value(self.oracle_policy(weights))

    def best_offers(self, weights: Mapping[str, float]) -> list[str]:
        """The oracle's offer id for each segment."""
        scores = self.expectations @ weight_vector(weights)
        return [self.offers[int(a)].id for a in scores.argmax(axis=1)]

    # -- policies -----------------------------------------------------------------------------
    def uniform_policy(self) -> Policy:
        pmf = np.full(len(self.offers), 1 / len(self.offers))
        return lambda segment, context: pmf

    def constant_policy(self, offer: int | str) -> Policy:
        pmf = np.eye(len(self.offers))[self._index(offer)]
        return lambda segment, context: pmf

    def oracle_policy(self, weights: Mapping[str, float]) -> Policy:
        best = [self._index(offer) for offer in self.best_offers(weights)]
        one_hot = np.eye(len(self.offers))
        return lambda segment, context: one_hot[best[segment]]

    def pmf(self, distribution: Sequence[float] | Mapping[str, float]) -> np.ndarray:
        """A policy's output as an array aligned with the offers; refused unless it is a PMF."""
        if isinstance(distribution, Mapping):
            unknown = set(distribution) - set(self._offer_index)
            if unknown:
                raise ValueError(f"the PMF names offers the world does not have: {sorted(unknown)}")
            pmf = np.zeros(len(self.offers))
            for offer, probability in distribution.items():
                pmf[self._offer_index[offer]] = probability
        else:
            pmf = np.asarray(distribution, dtype=float)
        if pmf.shape != (len(self.offers),):
            raise ValueError(
                f"a PMF needs one probability per offer ({len(self.offers)}), got shape {pmf.shape}")
        # The service's PMFs come from VW, which computes in float32.
        if not np.all(np.isfinite(pmf)) or pmf.min() < -1e-9 or abs(pmf.sum() - 1) > 1e-5:
            raise ValueError(
                f"not a probability distribution (sum {pmf.sum():.6g}, min {pmf.min():.3g})")
        return pmf

    def _index(self, offer: int | str) -> int:
        if isinstance(offer, str):
            try:
                return self._offer_index[offer]
            except KeyError:
                raise ValueError(f"no offer {offer!r} in this world") from None
        if not 0 <= offer < len(self.offers):
            raise ValueError(f"offer index {offer} out of range")
        return int(offer)


def weight_vector(weights: Mapping[str, float]) -> np.ndarray:
    """Weights by objective name → an array aligned with :data:`OBJECTIVES` (absent ones are 0)."""
    unknown = set(weights) - set(OBJECTIVES)
    if unknown:
        raise ValueError(f"unknown objectives {sorted(unknown)}; the world has {list(OBJECTIVES)}")
    return np.array([float(weights.get(name, 0.0)) for name in OBJECTIVES])


def scalarise(values: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Σ weight × value over the objectives."""
    return float(weight_vector(weights) @ np.array([values[name] for name in OBJECTIVES]))


def _by_objective(vector: np.ndarray) -> dict[str, float]:
    return {name: float(value) for name, value in zip(OBJECTIVES, vector)}


def generate(seed: int = 0, segments: int = 5, offers: int = 10, groups: int = 1) -> World:
    """A world drawn from ``seed`` (see the module docstring for its guarantees).

    Needs ``3 <= segments <= offers``: each segment has its own engagement offer, and with three
    segments or more no single offer can be the best for all of them.

    ``groups`` > 1 (the slate world's slots, see :mod:`bandits.simulate.slates`) splits the offers
    into that many equal runs of consecutive offers, each with its own engagement and premium
    offer per segment: the guarantees hold within each group. Each group needs at least
    ``segments`` offers. ``groups=1`` is the world described above.
    """
    if not 3 <= segments <= 60:
        raise ValueError("segments must be between 3 and 60")
    if not segments <= offers <= 1000:
        raise ValueError(f"offers must be between the number of segments ({segments}) and 1000")
    if groups < 1 or offers % groups or offers // groups < segments:
        raise ValueError(f"{groups} groups of offers need a multiple of {groups} offers, "
                         f"at least {segments} (the segments) per group")
    rng = np.random.default_rng(seed)
    n_s, n_o = segments, offers

    profiles = list(itertools.product(COUNTRIES, DEVICES, AGE_BANDS))
    # Distinct profiles, so that contexts tell segments apart.
    chosen = rng.choice(len(profiles), size=n_s, replace=False)
    share = 0.5 * rng.dirichlet(np.full(n_s, 3.0)) + 0.5 / n_s  # every segment gets at least 1/(2S)
    spend = rng.uniform(0.7, 1.4, size=n_s)
    segment_list = [
        Segment(f"s{s}", float(share[s]), {
            "country": profiles[p][0], "device": profiles[p][1], "age_band": profiles[p][2],
            "tenure_days": int(rng.integers(1, 2000)), "sessions_30d": int(rng.integers(1, 60)),
            "spend_index": round(float(spend[s]), 2),
        }) for s, p in enumerate(chosen)
    ]
    payout = rng.lognormal(np.log(20.0), 0.5, size=n_o).round(2)
    offer_list = [
        Offer(f"offer-{o:02d}", {"vertical": str(rng.choice(VERTICALS)), "payout": float(payout[o]),
                                 "brand": str(rng.choice(BRANDS))})
        for o in range(n_o)
    ]

    # Base rates from a low-rank affinity between segments and offers.
    user_taste, offer_taste = rng.normal(size=(n_s, 3)), rng.normal(size=(n_o, 3))
    affinity = np.clip(user_taste @ offer_taste.T / np.sqrt(3), -2.5, 2.5)
    click = _sigmoid(-2.8 + 0.6 * affinity)
    conversion = _sigmoid(-1.8 + 0.5 * affinity + 0.3 * rng.normal(size=(n_s, n_o)))
    revenue_mean = np.outer(spend, payout) * rng.lognormal(0.0, 0.2, size=(n_s, n_o))
    revenue_sigma = rng.uniform(0.3, 0.8, size=n_o)

    size = n_o // groups
    chosen_offers = [
        _dominate(rng, click, conversion, revenue_mean, np.arange(g * size, (g + 1) * size))
        for g in range(groups)
    ]
    world = World(segment_list, offer_list, click, conversion, revenue_mean, revenue_sigma)
    for group, (engagement, premium) in enumerate(chosen_offers):
        _check_dominance(world, engagement, premium, range(group * size, (group + 1) * size))
    return world


def _dominate(rng: np.random.Generator, click: np.ndarray, conversion: np.ndarray,
              revenue_mean: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gives each segment an engagement and a premium offer among the offers ``group`` (in place);
    returns them."""
    n_s, n_o, n_g = click.shape[0], click.shape[1], len(group)
    # Engagement offers are distinct across segments; premium offers too, and apart from them
    # when there are offers enough.
    order = group[rng.permutation(n_g)]
    engagement = order[:n_s]
    premium = order[n_s:2 * n_s] if n_g >= 2 * n_s else np.roll(engagement, -1)
    for s in range(n_s):
        e, p = engagement[s], premium[s]
        rest = np.zeros(n_o, dtype=bool)
        rest[group] = True
        rest[[e, p]] = False
        not_e = rest.copy()
        not_e[p] = True
        # The engagement offer: more clicks, conversions and revenue than any other offer ...
        click[s, e] = _lift(click[s, not_e].max(), rng.uniform(1.6, 2.0))
        conversion[s, e] = _lift(conversion[s, not_e].max(), rng.uniform(1.3, 1.6))
        revenue_mean[s, e] = max(revenue_mean[s, e], revenue_mean[s, rest].max())
        # ... except the premium offer: fewer clicks and conversions, but 1.4 to 2 times the
        # engagement offer's revenue per decision.
        shrink = rng.uniform(0.5, 0.7)
        click[s, p], conversion[s, p] = shrink * click[s, e], shrink * conversion[s, e]
        revenue_mean[s, p] = rng.uniform(1.4, 2.0) * revenue_mean[s, e] / shrink**2
    return engagement, premium


def _check_dominance(world: World, engagement: np.ndarray, premium: np.ndarray,
                     group: range) -> None:
    """The guarantee the module docstring makes; a failure here is a bug in :func:`generate`."""
    for s, (e, p) in enumerate(zip(engagement, premium)):
        rest = [o for o in group if o not in (e, p)]
        if not (np.all(world.expectations[s, e] > world.expectations[s, rest])
                and world.expectations[s, p, 2] > world.expectations[s, e, 2]):
            raise RuntimeError(f"generate() broke its guarantee for segment {s}; please report the seed")


def _lift(probability: float, factor: float) -> float:
    """``factor`` times ``probability``, but at most halfway to 1: always above it, below 1."""
    return min(factor * probability, (1 + probability) / 2)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def tradeoff() -> World:
    """A small world with a sharp trade-off, for weight tuning (tests, demos, benchmarks).

    Three equally likely segments, four offers. Offer ``i`` (i < 3) engages segment ``i``: half
    of its users click. ``offer-03`` is premium: fewer clicks everywhere but more revenue. Its
    revenue gain per click lost is 12 in segments 0 and 2 and 1.6 in segment 1, so as revenue's
    weight grows the best policy first shows it to segments 0 and 2 (clicks -10 % and -20 % there,
    revenue x1.3 and x1.6), and only at 7.5 times that weight to segment 1 as well (clicks -50 %,
    revenue x1.2).
    Revenue is less noisy than in :func:`generate` (a third of clicks convert, sigma 0.3).
    """
    segments = [
        Segment("s0", 1 / 3, {"country": "AR", "device": "mobile", "age_band": "18-24"}),
        Segment("s1", 1 / 3, {"country": "DE", "device": "desktop", "age_band": "45-54"}),
        Segment("s2", 1 / 3, {"country": "US", "device": "tablet", "age_band": "25-34"}),
    ]
    offers = [Offer(f"offer-{o:02d}", {"vertical": vertical, "payout": payout})
              for o, (vertical, payout) in enumerate(
                  [("loans", 10.0), ("cards", 10.0), ("travel", 10.0), ("premium", 30.0)])]
    click = np.array([[0.50, 0.20, 0.20, 0.45],
                      [0.20, 0.50, 0.20, 0.25],
                      [0.20, 0.20, 0.50, 0.40]])
    conversion = np.array([[0.40, 0.20, 0.20, 0.35],
                           [0.20, 0.40, 0.20, 0.35],
                           [0.20, 0.20, 0.40, 0.35]])
    # Revenue per decision: 2.0 for an engagement offer; premium 2.6, 2.4, 3.2; others 0.4.
    premium = np.array([2.6, 2.4, 3.2]) / (click[:, 3] * conversion[:, 3])
    revenue_mean = np.full((3, 4), 10.0)
    revenue_mean[:, 3] = premium
    return World(segments, offers, click, conversion, revenue_mean, np.full(4, 0.3))
