"""The estimators on the simulator's cb world (:mod:`bandits.simulate.world`), where the truth is
known exactly.

Logs are made in-process, with the world's own draws (``world.draw_context``,
``world.draw_outcomes``): a seeded logger (a softmax over fixed per-segment scores, mixed with
50 % uniform exploration, so every offer has probability at least 0.5 / offers: importance
weights up to about 15 here) picks an offer for each context. Target policies whose exact value
``world.value(policy)`` is known are then evaluated on those logs with :mod:`bandits.ope`:

* ``uniform``: uniform over the offers;
* ``constant``: always the same offer;
* ``oracle``: the best offer per segment for the weights of a ``bandits simulate`` loop;
* ``contextual``: reads the visit too: the oracle's offer in the evening and at night, a softmax
  over the segment's expected rewards in the morning and afternoon.

The DM/DR family gets a reward model cross-fitted with :class:`~bandits.ope.CrossFitRidge` on the
context's features (one-hot segment, one-hot daypart, weekend flag; the visit carries no signal).

Two checks:

* one fixed seed, 20,000 events, every single-slot estimator: its error is within a stated
  multiple of its own standard error (see ``test_fixed_seed_errors_are_within_the_intervals_reach``
  for which estimand each is held to, and why DM is held to DR's);
* 200 seeded replications of 8,000 events (about 50 s on the shared 2-core machine, so marked
  ``slow``; CI runs it): the 95 % Gaussian intervals of IPS, SNIPS and DR cover the truth between
  92 % and 98 % of the time, for every target, for the scalarised reward click + conversion and
  for the click objective. Measured: scalar 0.930-0.975, click 0.945-0.970.

Conversion and revenue are measured (printed) but not held to the band. Conversions are rare
(about 1.7 % of decisions), so with weights up to 15 the estimates are skewed at 8,000 events:
coverage 0.915-0.950, at the band's lower edge. Revenue is a lognormal amount on those rare
conversions: coverage 0.84-0.91; a scalar reward with the loop's weight on revenue (0.05),
which revenue dominates, 0.855-0.975 (0.86 for ``oracle``, whose premium offers earn the most). That is the normal approximation at this sample
size on skewed rewards, not a bias: the errors' mean is near 0 and the estimates converge on the
truth with more events. ``python -m tests.ope.test_simulated_worlds [replications]`` prints the
coverage of every reward, revenue and the loop-weighted scalar included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import pytest

from bandits.ope import CrossFitRidge, Evaluation
from bandits.simulate.world import OBJECTIVES, World, generate, scalarise, weight_vector

WORLD_SEED, SEGMENTS, OFFERS = 3, 5, 8
# The oracle's weights: those of a `bandits simulate --create-loop` loop.
LOOP_WEIGHTS = {"click": 1.0, "conversion": 1.0, "revenue": 0.05}
# The scalarised reward held to the coverage band: clicks and conversions (see the module
# docstring for why not revenue).
WEIGHTS = {"click": 1.0, "conversion": 1.0}
# Rewards an evaluation can be of: a scalarised reward by its weights, or one objective.
REWARD_WEIGHTS = {"scalar": WEIGHTS, "loop-scalar": LOOP_WEIGHTS,
                  **{name: {name: 1.0} for name in OBJECTIVES}}
EXPLORATION = 0.5
DAYPARTS = ("morning", "afternoon", "evening", "night")

FIXED_SEED, FIXED_EVENTS = 20261126, 20_000
REPLICATIONS, EVENTS = 200, 8_000


class Setting:
    """The world, the logger, the targets and their exact values."""

    def __init__(self) -> None:
        self.world: World = generate(seed=WORLD_SEED, segments=SEGMENTS, offers=OFFERS)
        world = self.world
        scores = np.random.default_rng(WORLD_SEED + 1).normal(size=(SEGMENTS, OFFERS))
        softmax = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        self.logger = (1 - EXPLORATION) * softmax + EXPLORATION / OFFERS
        self.logger_cdf = self.logger.cumsum(axis=1)
        expected = world.expectations @ weight_vector(LOOP_WEIGHTS)  # (segment, offer)
        oracle = world.oracle_policy(LOOP_WEIGHTS)

        def contextual(segment: int, context: Mapping) -> np.ndarray:
            if context["visit"]["daypart"] in ("evening", "night"):
                return np.asarray(oracle(segment, context))
            z = (expected[segment] - expected[segment].max()) / expected[segment].std()
            return np.exp(z) / np.exp(z).sum()

        self.targets: dict[str, Callable] = {
            "uniform": world.uniform_policy(),
            "constant": world.constant_policy(world.offers[1].id),
            "oracle": oracle,
            "contextual": contextual,
        }
        self.truth = {name: world.value(policy) for name, policy in self.targets.items()}
        # Every target's PMF on every (segment, daypart, weekend) cell of the context's support.
        self.pmf = {name: np.zeros((SEGMENTS, len(DAYPARTS), 2, OFFERS)) for name in self.targets}
        for segment, context, _ in world.contexts():
            cell = (segment, DAYPARTS.index(context["visit"]["daypart"]),
                    int(context["visit"]["weekend"]))
            for name, policy in self.targets.items():
                self.pmf[name][cell] = world.pmf(policy(segment, context))

    def truth_of(self, candidate: str, reward: str) -> float:
        return scalarise(self.truth[candidate], REWARD_WEIGHTS[reward])

    def log(self, n: int, seed: int) -> dict[str, np.ndarray]:
        """``n`` decisions of the logger, with the world's own draws of contexts and outcomes."""
        rng = np.random.default_rng(seed)
        segment, daypart, weekend, offer = (np.empty(n, dtype=int) for _ in range(4))
        outcomes = np.empty((n, len(OBJECTIVES)))
        for i in range(n):
            s, context = self.world.draw_context(rng)
            draw = rng.random()
            a = min(int(np.searchsorted(self.logger_cdf[s], draw, side="right")), OFFERS - 1)
            outcome = self.world.draw_outcomes(s, a, rng)
            segment[i], offer[i] = s, a
            daypart[i] = DAYPARTS.index(context["visit"]["daypart"])
            weekend[i] = int(context["visit"]["weekend"])
            outcomes[i] = [outcome[name] for name in OBJECTIVES]
        rewards = {name: outcomes @ weight_vector(weights)
                   for name, weights in REWARD_WEIGHTS.items()}
        features = np.hstack([np.eye(SEGMENTS)[segment], np.eye(len(DAYPARTS))[daypart],
                              weekend[:, None].astype(float)])
        return {"segment": segment, "daypart": daypart, "weekend": weekend, "offer": offer,
                "features": features, "propensity": self.logger[segment, offer], **rewards}

    def evaluate(self, log: dict[str, np.ndarray], reward: str, estimators: list, seed: int):
        """One :class:`Evaluation` of every target on ``log``'s ``reward``."""
        n = log["offer"].size
        model = CrossFitRidge(OFFERS, log["features"].shape[1], random_state=seed)
        model.fit(log["features"], log["offer"], log[reward])
        candidates = {}
        for name in self.targets:
            pmf = self.pmf[name][log["segment"], log["daypart"], log["weekend"]]
            q_logged, q_target = model.predict(log["features"], log["offer"], pmf)
            candidates[name] = {"target_probability": pmf[np.arange(n), log["offer"]],
                                "q_target": q_target}
        evaluation = Evaluation(estimators, candidates=list(self.targets))
        evaluation.update(reward=log[reward], propensity=log["propensity"], q_logged=q_logged,
                          candidates=candidates)
        return evaluation.result(alpha=0.05)

    def clipped_truth(self, candidate: str, reward: str, clip: float) -> float:
        """Exact E_μ[min(w, clip) r]: what clipped IPS estimates (≤ the value for r ≥ 0)."""
        expected = self.world.expectations @ weight_vector(REWARD_WEIGHTS[reward])
        total = 0.0
        for segment, context, probability in self.world.contexts():
            cell = (segment, DAYPARTS.index(context["visit"]["daypart"]),
                    int(context["visit"]["weekend"]))
            mu = self.logger[segment]
            w = np.minimum(self.pmf[candidate][cell] / mu, clip)
            total += probability * float((mu * w * expected[segment]).sum())
        return total


@pytest.fixture(scope="module")
def setting() -> Setting:
    return Setting()


def test_the_targets_are_worth_what_they_should(setting):
    values = {name: scalarise(setting.truth[name], LOOP_WEIGHTS) for name in setting.targets}
    assert values["oracle"] == pytest.approx(
        scalarise(setting.world.oracle_value(LOOP_WEIGHTS), LOOP_WEIGHTS))
    uniform = scalarise(setting.world.uniform_value(), LOOP_WEIGHTS)
    assert values["uniform"] == pytest.approx(uniform)
    assert values["oracle"] > values["contextual"] > values["uniform"]
    # The logger has support everywhere: weights are at most 1 / min propensity.
    assert setting.logger.min() >= EXPLORATION / OFFERS


CLIP = SWITCH = SHRINK = 10.0
SINGLE_SLOT = ["ips", "snips", "dr", "sndr", "dm", {"name": "ips-clipped", "clip": CLIP},
               {"name": "switch-dr", "threshold": SWITCH}, {"name": "dr-os", "shrinkage": SHRINK}]


def test_fixed_seed_errors_are_within_the_intervals_reach(setting):
    """One seed, 20,000 events, every single-slot estimator, every target (scalarised reward).

    * IPS, SNIPS, DR, SNDR (unbiased or consistent): |estimate - V| ≤ 3 se, and V is in the
      95 % Gaussian interval.
    * Clipped IPS is held to its own estimand E_μ[min(w, 10) r] (computed exactly), within 3 se;
      it is biased down for V wherever w > 10 (``constant``, ``oracle``, ``contextual``).
    * Switch-DR and DR-OS (threshold / shrinkage 10) use the model alone, or mostly, where the
      weights are large: |estimate - V| ≤ 3 se + |DM's error| (their bias is a part of the
      model's error, on the large-weight events).
    * DM's standard error only has the sampling error of the contexts, not the model's
      estimation error, so its own se says nothing about its bias (|error| is 9 to 21 of its se
      here). It is held to the data's noise instead: |estimate - V| ≤ 3 × DR's se.

    The 95 % Gaussian intervals of IPS, SNIPS, DR and SNDR contain V for every target (errors
    -1.1 to +0.9 se at this seed; asserted too). Those of DM and DR-OS miss it for some targets,
    as they may: they are intervals around a biased estimate that leave the bias out (DM's on
    all four, DR-OS's on ``constant`` and ``oracle``, at +3.5 and -3.3 of its se). The test
    prints which intervals miss.
    """
    log = setting.log(FIXED_EVENTS, FIXED_SEED)
    report = setting.evaluate(log, "scalar", SINGLE_SLOT, seed=FIXED_SEED)
    dr_se = {e.candidate: e.standard_error for e in report.estimates if e.estimator == "dr"}
    dm_error = {e.candidate: abs(e.value - setting.truth_of(e.candidate, "scalar"))
                for e in report.estimates if e.estimator == "dm"}
    failures = []
    for e in report.estimates:
        truth = setting.truth_of(e.candidate, "scalar")
        error, se = e.value - truth, e.standard_error
        gaussian = e.intervals["gaussian"]
        name = e.estimator.split("(")[0]
        if not gaussian.lower <= truth <= gaussian.upper:
            print(f"interval misses: {e.candidate} {e.estimator} (error {error / se:+.2f} se)")
        if name in ("ips", "snips", "dr", "sndr"):
            ok = abs(error) <= 3 * se and gaussian.lower <= truth <= gaussian.upper
        elif name == "ips-clipped":
            ok = abs(e.value - setting.clipped_truth(e.candidate, "scalar", CLIP)) <= 3 * se
        elif name in ("switch-dr", "dr-os"):
            ok = abs(error) <= 3 * se + dm_error[e.candidate]
        else:
            assert name == "dm"
            ok = abs(error) <= 3 * dr_se[e.candidate]
        if not ok:
            failures.append(f"{e.candidate} {e.estimator}: {e.value:.5f} vs {truth:.5f} "
                            f"(error {error / se:+.2f} se, interval [{gaussian.lower:.5f}, "
                            f"{gaussian.upper:.5f}])")
    assert not failures, "\n".join(failures)


COVERED = ("ips", "snips", "dr")
HELD = ("scalar", "click")  # held to [0.92, 0.98]; conversion is measured and printed


def coverage(setting: Setting, replications: int = REPLICATIONS, events: int = EVENTS,
             rewards: tuple[str, ...] = ("scalar", "click", "conversion"),
             ) -> dict[tuple[str, str, str], float]:
    """Share of ``replications`` whose 95 % Gaussian interval covers the truth, by (reward,
    candidate, estimator)."""
    covered: dict[tuple[str, str, str], int] = {}
    for replication in range(replications):
        seed = 5000 + replication
        log = setting.log(events, seed)
        for reward in rewards:
            for e in setting.evaluate(log, reward, list(COVERED), seed).estimates:
                truth = setting.truth_of(e.candidate, reward)
                interval = e.intervals["gaussian"]
                key = (reward, e.candidate, e.estimator)
                covered[key] = covered.get(key, 0) + int(interval.lower <= truth <= interval.upper)
    return {key: count / replications for key, count in covered.items()}


@pytest.mark.slow
def test_95_percent_intervals_cover_the_truth_92_to_98_percent_of_the_time(setting):
    started = time.perf_counter()
    shares = coverage(setting)
    elapsed = time.perf_counter() - started
    table = "\n".join(f"{reward:10} {candidate:10} {estimator:5} {share:.3f}"
                      for (reward, candidate, estimator), share in sorted(shares.items()))
    print(f"coverage of the 95 % Gaussian intervals over {REPLICATIONS} replications of {EVENTS} "
          f"events ({elapsed:.1f} s):\n{table}")
    outside = {key: share for key, share in shares.items()
               if key[0] in HELD and not 0.92 <= share <= 0.98}
    assert not outside, f"coverage outside [0.92, 0.98]: {outside}\n{table}"


if __name__ == "__main__":  # the table, for a look: python -m tests.ope.test_simulated_worlds
    import sys

    reps = int(sys.argv[1]) if len(sys.argv) > 1 else REPLICATIONS
    started = time.perf_counter()
    everything = ("scalar", "loop-scalar", *OBJECTIVES)
    for key, share in sorted(coverage(Setting(), reps, rewards=everything).items()):
        print(*key, f"{share:.3f}")
    print(f"{time.perf_counter() - started:.1f} s")
