r"""A slate world whose truth is known exactly: a page of slots, position effects, clicks per slot.

It is built on a :class:`~bandits.simulate.world.World` (the same segments, visits and offers; its
``click``, ``conversion`` and ``revenue_mean`` are an offer's *attractiveness* for a segment) and
adds a page of slots ``top``, ``middle``, ``bottom`` (by default three). Slot :math:`k` is
**examined** with probability :math:`e_k`, decreasing with the position (:math:`e_1` close to 1);
an offer in a slot that is not examined is not clicked. So showing offer :math:`a` in slot
:math:`k` to a user of segment :math:`s` gives, independently of the other slots,

* a click with probability :math:`e_k c_{sa}` (examination × attractiveness, the position-based
  click model),
* given a click, a conversion with probability :math:`q_{sa}`, and revenue as in the base world.

Its expected outcomes are :math:`e_k E[s, a]`, where :math:`E[s, a]` are the base world's
(click, conversion, revenue) per decision. Two kinds of page:

* ``ccb``: one shared pool of offers; the slots are filled in order without repeating an offer.
  Rewards come per slot.
* ``slates``: each slot has its own offers (every offer belongs to one slot, and within each
  slot every segment has its own engagement and premium offer, see :func:`generate_slates`); one
  reward for the whole page.

**Exact values.** A page's outcome is the sum of its slots' outcomes and a slot's outcome depends
only on the offer in it, so the value of any slate policy depends only on its per-slot *marginals*
:math:`P(\text{slot } k \text{ shows } a \mid s, x)`:

.. math:: V(\pi) = \sum_{s, v} P(s) P(v) \sum_k \sum_a P_\pi(k, a \mid s, x_{sv})\, e_k E[s, a],

a finite sum (contexts have finite support). For ``ccb`` this is the expected sum of the per-slot
rewards; for ``slates``, the expected page total, which is the slate's reward. A policy that fills
the slots in order (as the service does) has marginals computed exactly by enumerating every
prefix of the slate: :meth:`SlateWorld.sequential_policy` (``n (n-1) ... (n-K+1)`` prefixes, 720
for 10 offers and 3 slots).

The oracle, for weights :math:`w`: ``slates`` shows in each slot its own offer with the highest
:math:`w \cdot E[s, a]`; ``ccb`` shows the :math:`K` offers with the highest
:math:`w \cdot E[s, a]`, best on top (examination decreases with the position, so by the rearrangement inequality no other
assignment is worth more).

>>> world = generate_slates(seed=1, kind="ccb", segments=4, offers=8)
>>> weights = {"click": 1.0, "conversion": 1.0, "revenue": 0.1}
>>> scalarise(world.oracle_value(weights), weights) > scalarise(world.uniform_value(), weights)
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandits.simulate.world import OBJECTIVES, World, generate, scalarise, weight_vector

KINDS = ("ccb", "slates")
SLOT_IDS = ("top", "middle", "bottom", "fourth", "fifth")
# A slot's own features go in this namespace (VW letter "s"); its id is in "_slot" (see
# docs/features.md).
SLOT = "slot"
MAX_SLOTS = len(SLOT_IDS)

SlatePolicy = Callable[[int, dict[str, Any]], "Sequence[Sequence[float] | Mapping[str, float]]"]
"""A slate policy: (segment, context) → one PMF per slot, the slot's marginal over the pool."""

Conditional = Callable[[int, dict[str, Any], int, tuple[int, ...]],
                       "Sequence[float] | Mapping[str, float]"]
"""A sequential policy: (segment, context, slot index, pool positions the slots above took) →
the slot's PMF over the pool."""

__all__ = ["KINDS", "SLOT_IDS", "Slot", "SlateWorld", "generate_slates", "scalarise"]


@dataclass(frozen=True)
class Slot:
    id: str
    features: dict[str, Any]
    examination: float


class SlateWorld:
    """The truth of a page. ``base`` holds segments, offers and attractiveness (see the module
    docstring); ``slots`` their examination probabilities, in page order; ``slot_offers`` (for
    ``slates``) the pool positions each slot owns, every offer in exactly one slot (``ccb``:
    ``None``, every slot takes the whole pool).

    ``expectations[s, k, a]``: expected (click, conversion, revenue) of offer ``a`` in slot ``k``
    for segment ``s``; zero where the slot cannot take the offer.
    """

    def __init__(self, kind: str, base: World, slots: Sequence[Slot],
                 slot_offers: Sequence[Sequence[int]] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        self.kind = kind
        self.base = base
        self.slots = tuple(slots)
        self.segments = base.segments
        self.offers = base.offers
        n_k, n_o = len(self.slots), len(self.offers)
        if not 1 <= n_k <= MAX_SLOTS:
            raise ValueError(f"a page has 1 to {MAX_SLOTS} slots")
        if len({slot.id for slot in self.slots}) != n_k:
            raise ValueError("slot ids must be unique")
        self.examination = np.array([slot.examination for slot in self.slots], dtype=float)
        if not (np.all(self.examination > 0) and np.all(self.examination <= 1)
                and np.all(np.diff(self.examination) < 0)):
            raise ValueError(
                "examination probabilities must be in (0, 1] and decrease with the position")
        mask = np.zeros((n_k, n_o), dtype=bool)
        if kind == "ccb":
            if slot_offers is not None:
                raise ValueError("a ccb page has one shared pool: give no slot_offers")
            if n_o < n_k:
                raise ValueError(
                    f"a ccb page shows each offer once: it needs at least {n_k} offers")
            mask[:] = True
            self.slot_offers: tuple[tuple[int, ...], ...] = (tuple(range(n_o)),) * n_k
        else:
            if slot_offers is None or len(slot_offers) != n_k:
                raise ValueError("a slates page gives each slot its own offers (slot_offers)")
            owned = sorted(int(a) for own in slot_offers for a in own)
            if owned != list(range(n_o)) or any(len(own) == 0 for own in slot_offers):
                raise ValueError(
                    "every offer belongs to exactly one slot, and every slot has offers")
            self.slot_offers = tuple(tuple(int(a) for a in own) for own in slot_offers)
            for k, own in enumerate(self.slot_offers):
                mask[k, list(own)] = True
        self.mask = mask
        self.expectations = (self.examination[None, :, None, None]
                             * base.expectations[:, None, :, :] * mask[None, :, :, None])
        # slates: the slot each offer belongs to
        self._slot_of = ({a: k for k, own in enumerate(self.slot_offers) for a in own}
                         if kind == "slates" else {})

    # -- the request ------------------------------------------------------------------------
    def draw_context(self, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
        """A user's segment and the choose ``context``, as in the base world."""
        return self.base.draw_context(rng)

    def contexts(self) -> Iterator[tuple[int, dict[str, Any], float]]:
        return self.base.contexts()

    def actions(self) -> list[dict[str, Any]]:
        """The offers as choose ``actions``; on a ``slates`` page each names its ``slot``."""
        actions = self.base.actions()
        if self.kind == "slates":
            for a, action in enumerate(actions):
                action["slot"] = self.slots[self._slot_of[a]].id
        return actions

    def slot_requests(self) -> list[dict[str, Any]]:
        """The choose ``slots``: id, features (namespace ``slot``) and a baseline (``ccb``: the
        ``k``-th offer of the pool; ``slates``: the slot's first own offer)."""
        return [{"id": slot.id, "features": {SLOT: dict(slot.features)},
                 "baseline": self.offers[self.slot_offers[k][k if self.kind == "ccb" else 0]].id}
                for k, slot in enumerate(self.slots)]

    # -- drawing ------------------------------------------------------------------------------
    def draw_outcomes(self, segment: int, served: Sequence[int | str],
                      rng: np.random.Generator) -> list[dict[str, float]]:
        """Per slot, ``{"click": 0|1, "conversion": 0|1, "revenue": float}`` for showing
        ``served[k]`` in slot ``k``. Always consumes the same draws per slot, whatever happens."""
        offers = self._check_slate(served)
        drawn = []
        for k, a in enumerate(offers):
            examined_u, click_u, conversion_u = rng.random(3)
            sigma = self.base.revenue_sigma[a]
            mu = np.log(self.base.revenue_mean[segment, a]) - sigma**2 / 2
            amount = float(rng.lognormal(mu, sigma))
            clicked = examined_u < self.examination[k] and click_u < self.base.click[segment, a]
            converted = clicked and conversion_u < self.base.conversion[segment, a]
            drawn.append({"click": int(clicked), "conversion": int(converted),
                          "revenue": amount if converted else 0.0})
        return drawn

    def _check_slate(self, served: Sequence[int | str]) -> list[int]:
        if len(served) != len(self.slots):
            raise ValueError(f"a slate fills {len(self.slots)} slots, got {len(served)} offers")
        offers = [self.base._index(offer) for offer in served]
        for k, a in enumerate(offers):
            if not self.mask[k, a]:
                raise ValueError(f"slot {self.slots[k].id!r} cannot show {self.offers[a].id!r}")
        if len(set(offers)) != len(offers):
            raise ValueError("a ccb page shows each offer at most once")
        return offers

    # -- exact values -------------------------------------------------------------------------
    def expected(self, segment: int, slot: int | str, offer: int | str) -> dict[str, float]:
        """Expected outcomes of showing ``offer`` in ``slot`` to ``segment``, per objective."""
        k, a = self._slot_index(slot), self.base._index(offer)
        return _by_objective(self.expectations[segment, k, a])

    def served_expected(self, segment: int, pmfs: Sequence[Sequence[float] | Mapping[str, float]]
                        ) -> np.ndarray:
        """Σ_k PMF_k · E[segment, k] (aligned with :data:`OBJECTIVES`) for the PMFs the service
        served for one slate: each slot's ``ranking``. On a ``slates`` page the slots draw
        independently, so this is the exact expected page outcome of the served policy for this
        context. On a ``ccb`` page each slot's PMF is conditional on the offers the slots above
        took, so this is the expected outcome given the served upper slots: it averages to the
        policy's exact value over its own draws, without any outcome noise."""
        return np.einsum("ka,kao->o", self._stack(pmfs), self.expectations[segment])

    def value(self, policy: SlatePolicy) -> dict[str, float]:
        """Exact expected page outcomes (sum over the slots) of ``policy``, per objective."""
        total = np.zeros(len(OBJECTIVES))
        for segment, context, probability in self.contexts():
            marginals = self.marginals(policy(segment, context))
            total += probability * np.einsum("ka,kao->o", marginals, self.expectations[segment])
        return _by_objective(total)

    def uniform_value(self) -> dict[str, float]:
        return self.value(self.uniform_policy())

    def oracle_value(self, weights: Mapping[str, float]) -> dict[str, float]:
        return self.value(self.oracle_policy(weights))

    def best_slates(self, weights: Mapping[str, float]) -> list[list[str]]:
        """The oracle's slate (offer ids, in slot order) for each segment."""
        scores = self.base.expectations @ weight_vector(weights)  # [segment, offer]
        best = []
        for s in range(len(self.segments)):
            if self.kind == "ccb":
                order = sorted(range(len(self.offers)), key=lambda a: (-scores[s, a], a))
                picks = order[:len(self.slots)]
            else:
                picks = [max(own, key=lambda a: (scores[s, a], -a)) for own in self.slot_offers]
            best.append([self.offers[a].id for a in picks])
        return best

    # -- policies -----------------------------------------------------------------------------
    def uniform_policy(self) -> SlatePolicy:
        """Uniform random: ``ccb``, a uniformly random ordered choice of distinct offers (every
        slot's marginal is uniform over the pool); ``slates``, each slot uniform over its own."""
        marginals = self.mask / self.mask.sum(axis=1, keepdims=True)
        return lambda segment, context: marginals

    def constant_policy(self, slate: Sequence[int | str]) -> SlatePolicy:
        offers = self._check_slate(slate)
        marginals = np.zeros(self.mask.shape)
        marginals[np.arange(len(offers)), offers] = 1.0
        return lambda segment, context: marginals

    def oracle_policy(self, weights: Mapping[str, float]) -> SlatePolicy:
        one_hot = []
        for slate in self.best_slates(weights):
            marginals = np.zeros(self.mask.shape)
            marginals[np.arange(len(slate)), [self.base._index(a) for a in slate]] = 1.0
            one_hot.append(marginals)
        return lambda segment, context: one_hot[segment]

    def sequential_policy(self, conditional: Conditional) -> SlatePolicy:
        """The marginals of a policy that fills the slots in order, slot ``k`` drawing from
        ``conditional(segment, context, k, taken)``, computed exactly by enumerating every prefix
        ``taken`` with positive probability. On a ``ccb`` page ``conditional`` must give no mass
        to offers already taken."""
        n_k = len(self.slots)

        def policy(segment: int, context: dict[str, Any]) -> np.ndarray:
            marginals = np.zeros(self.mask.shape)

            def walk(k: int, taken: tuple[int, ...], probability: float) -> None:
                if k == n_k:
                    return
                pmf = self._slot_pmf(k, conditional(segment, context, k, taken))
                if self.kind == "ccb" and taken and pmf[list(taken)].max() > 1e-12:
                    raise ValueError(f"slot {k} gives probability to an offer a slot above took")
                marginals[k] += probability * pmf
                for a in np.flatnonzero(pmf > 0):
                    walk(k + 1, (*taken, int(a)), probability * pmf[a])

            walk(0, (), 1.0)
            return marginals

        return policy

    def marginals(self, pmfs: Sequence[Sequence[float] | Mapping[str, float]]) -> np.ndarray:
        """Per-slot PMFs as a ``[slot, offer]`` array, checked: each a PMF over what its slot may
        take; on a ``ccb`` page, no offer shown more than once in expectation (Σ_k ≤ 1)."""
        marginals = self._stack(pmfs)
        if self.kind == "ccb" and marginals.sum(axis=0).max() > 1 + 1e-5:
            raise ValueError("these marginals show an offer more than once per page in expectation")
        return marginals

    def _stack(self, pmfs: Sequence[Sequence[float] | Mapping[str, float]]) -> np.ndarray:
        if len(pmfs) != len(self.slots):
            raise ValueError(
                f"a slate policy gives one PMF per slot ({len(self.slots)}), got {len(pmfs)}")
        return np.stack([self._slot_pmf(k, pmf) for k, pmf in enumerate(pmfs)])

    def _slot_pmf(self, k: int, distribution: Sequence[float] | Mapping[str, float]) -> np.ndarray:
        pmf = self.base.pmf(distribution)
        if pmf[~self.mask[k]].max(initial=0.0) > 1e-9:
            raise ValueError(f"slot {self.slots[k].id!r} gets probability on offers it cannot show")
        return pmf

    def _slot_index(self, slot: int | str) -> int:
        if isinstance(slot, str):
            for k, candidate in enumerate(self.slots):
                if candidate.id == slot:
                    return k
            raise ValueError(f"no slot {slot!r} on this page")
        if not 0 <= slot < len(self.slots):
            raise ValueError(f"slot index {slot} out of range")
        return int(slot)


def _by_objective(vector: np.ndarray) -> dict[str, float]:
    return {name: float(value) for name, value in zip(OBJECTIVES, vector)}


def generate_slates(seed: int = 0, kind: str = "ccb", segments: int = 5, offers: int | None = None,
                    slots: int = 3) -> SlateWorld:
    """A page drawn from ``seed``.

    ``ccb``: ``offers`` is the shared pool (default 10, at least ``slots``), and the base world is
    :func:`~bandits.simulate.world.generate` ``(seed, segments, offers)``, the cb world of the same
    seed. ``slates``: ``offers`` is each slot's own (default 5, at least ``segments``), and the
    base world is ``generate(seed, segments, slots × offers, groups=slots)``: slot ``k`` owns the
    ``k``-th run of ``offers`` consecutive offers, and within it each segment has its own
    engagement and premium offer (see :mod:`~bandits.simulate.world`), so in every slot the best
    offer depends on the user, whatever the (non-negative) weights.

    Examination: the top slot's is drawn from [0.9, 1], each next slot's is 45-70 % of the one
    above.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if not 1 <= slots <= MAX_SLOTS:
        raise ValueError(f"slots must be between 1 and {MAX_SLOTS}")
    if kind == "ccb":
        pool = 10 if offers is None else offers
        if pool < slots:
            raise ValueError(f"a ccb page needs at least as many offers as slots ({slots})")
        base = generate(seed, segments=segments, offers=pool)
    else:
        per_slot = 5 if offers is None else offers
        if not segments <= per_slot <= 200:
            raise ValueError(
                f"a slates page needs {segments} (the segments) to 200 offers per slot")
        base = generate(seed, segments=segments, offers=per_slot * slots, groups=slots)
    # The page's own draws come from a second stream, so the base world is generate()'s own.
    rng = np.random.default_rng([seed, 1])
    examination = [float(rng.uniform(0.9, 1.0))]
    for _ in range(slots - 1):
        examination.append(examination[-1] * float(rng.uniform(0.45, 0.7)))
    slot_list = [Slot(SLOT_IDS[k], {"position": k + 1}, examination[k]) for k in range(slots)]
    if kind == "ccb":
        return SlateWorld(kind, base, slot_list)
    own = [range(k * per_slot, (k + 1) * per_slot) for k in range(slots)]
    return SlateWorld(kind, base, slot_list, own)
