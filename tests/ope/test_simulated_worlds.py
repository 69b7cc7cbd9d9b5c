"""The estimators on the simulator's cb world (:mod:`bandits.simulate.world`), where the truth is
known exactly.

Logs are made in-process, with the world's own vectorised draws (``world.draw_users``,
``world.draw_outcome_matrix``): a seeded logger (a softmax over fixed per-segment scores, mixed with
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
* 200 seeded replications (about 50 s on a quiet 2-core machine, so marked ``slow``; CI runs
  it): the 95 % intervals of IPS, SNIPS and DR cover the truth between 92 % and 98 % of the
  time, for every target:

  - at 8,000 events, the Gaussian and the skew-corrected intervals, for the scalarised reward
    click + conversion and for the click objective;
  - at 32,000 events, the skew-corrected intervals, for conversion, revenue, and the loop's
    scalar reward with weight 0.05 on revenue (which revenue dominates).

  Measured: 8,000 events, Gaussian 0.935-0.965 and skew-corrected 0.940-0.975; 32,000 events,
  skew-corrected 0.930-0.980 (Gaussian 0.930-0.980, printed, not held).

Why revenue needs more events: it is a lognormal amount on rare conversions (about 1.7 % of
decisions), weighted up to 15, so at 8,000 events the per-event terms are very skewed and so is
the estimate's sampling distribution. Gaussian intervals then miss on the side of the long tail
more often than on the other, and covered revenue 0.84-0.925 (three sets of 200 seeds). Hall's
skew correction (``skew_corrected``) raised that to 0.89-0.98: better, but not reliably within
the band at that size; at 32,000 events it is (revenue 0.960-0.970). ``python -m tests.ope.test_simulated_worlds
[replications [events]]`` prints the coverage of every reward and both methods.
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
REPLICATIONS, EVENTS, LARGE_EVENTS = 200, 8_000, 32_000


class Setting:
    """The world, the logger, the targets and their exact values."""

    def __init__(self) -> None:
        self.world: World = generate(seed=WORLD_SEED, segments=SEGMENTS, offers=OFFERS)
        world = self.world
        scores = np.random.default_rng(WORLD_SEED + 1).normal(size=(SEGMENTS, OFFERS))
        softmax = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        self.logger = (1 - EXPLORATION) * softmax + EXPLORATION / OFFERS
        self.logger_cdf = self.logger.cumsum(axis=1)
        visits = [world.visit(index) for index in range(len(DAYPARTS) * 2)]
        self.visit_daypart = np.array([DAYPARTS.index(visit["daypart"]) for visit in visits])
        self.visit_weekend = np.array([int(visit["weekend"]) for visit in visits])
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
        """``n`` decisions of the logger, with the world's own (vectorised) draws of users and
        outcomes."""
        rng = np.random.default_rng(seed)
        segment, visit = self.world.draw_users(n, rng)
        daypart, weekend = self.visit_daypart[visit], self.visit_weekend[visit]
        draw = rng.random(n)
        offer = np.minimum((draw[:, None] >= self.logger_cdf[segment]).sum(axis=1), OFFERS - 1)
        outcomes = self.world.draw_outcome_matrix(segment, offer, rng)
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
        predictions = model.predict_all(log["features"])  # out of fold, every offer
        q_logged = predictions[np.arange(n), log["offer"]]
        candidates = {}
        for name in self.targets:
            pmf = self.pmf[name][log["segment"], log["daypart"], log["weekend"]]
            candidates[name] = {"target_probability": pmf[np.arange(n), log["offer"]],
                                "q_target": np.einsum("ij,ij->i", pmf, predictions)}
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

    * IPS, SNIPS, DR, SNDR (unbiased or consistent): |estimate - V| ≤ 3 se.
    * Clipped IPS is held to its own estimand E_μ[min(w, 10) r] (computed exactly), within 3 se;
      it is biased down for V wherever w > 10 (``constant``, ``oracle``, ``contextual``).
    * Switch-DR and DR-OS (threshold / shrinkage 10) use the model alone, or mostly, where the
      weights are large: |estimate - V| ≤ 3 se + |DM's error| (their bias is a part of the
      model's error, on the large-weight events).
    * DM's standard error only has the sampling error of the contexts, not the model's
      estimation error, so its own se says nothing about its bias (|error| is 9 to 21 of its se
      here). It is held to the data's noise instead: |estimate - V| ≤ 3 × DR's se.

    The test prints every error in se and which 95 % Gaussian intervals miss. At this seed the
    errors of IPS, SNIPS, DR and SNDR are -2.0 to -0.1 se (a sample with few clicks: every
    target's errors have the same sign), so ``uniform``'s IPS interval just misses; DM's and
    DR-OS's miss for some targets, as they may: they are intervals around a biased estimate
    that leave the bias out.
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
        print(f"{e.candidate:10} {e.estimator:24} error {error / se:+.2f} se"
              + ("" if gaussian.lower <= truth <= gaussian.upper else "  (interval misses)"))
        if name in ("ips", "snips", "dr", "sndr"):
            ok = abs(error) <= 3 * se
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
METHODS = ("gaussian", "skew_corrected")
# What is held to [0.92, 0.98]: (events per replication, rewards, interval methods). Skewed
# rewards need more events for any interval built on moments; see the module docstring.
HELD = ((EVENTS, ("scalar", "click"), METHODS),
        (LARGE_EVENTS, ("conversion", "revenue", "loop-scalar"), ("skew_corrected",)))


def coverage(setting: Setting, replications: int = REPLICATIONS, events: int = EVENTS,
             rewards: tuple[str, ...] = ("scalar", "click"),
             ) -> dict[tuple[str, str, str, str], float]:
    """Share of ``replications`` whose 95 % intervals cover the truth, by (reward, candidate,
    estimator, interval method)."""
    covered: dict[tuple[str, str, str, str], int] = {}
    for replication in range(replications):
        seed = 5000 + replication
        log = setting.log(events, seed)
        for reward in rewards:
            for e in setting.evaluate(log, reward, list(COVERED), seed).estimates:
                truth = setting.truth_of(e.candidate, reward)
                for method in METHODS:
                    key = (reward, e.candidate, e.estimator, method)
                    covered[key] = covered.get(key, 0) + int(truth in e.intervals[method])
    return {key: count / replications for key, count in covered.items()}


def _table(shares: dict[tuple[str, str, str, str], float]) -> str:
    rows = {}
    for (reward, candidate, estimator, method), share in sorted(shares.items()):
        rows.setdefault((reward, candidate, estimator), []).append(f"{method} {share:.3f}")
    return "\n".join(f"{reward:11} {candidate:10} {estimator:5} " + "  ".join(cells)
                     for (reward, candidate, estimator), cells in rows.items())


@pytest.mark.slow
def test_95_percent_intervals_cover_the_truth_92_to_98_percent_of_the_time(setting):
    outside = {}
    for events, rewards, methods in HELD:
        started = time.perf_counter()
        shares = coverage(setting, REPLICATIONS, events, rewards)
        print(f"coverage of the 95 % intervals over {REPLICATIONS} replications of {events:,} "
              f"events ({time.perf_counter() - started:.1f} s):\n{_table(shares)}")
        outside.update({(events, *key): share for key, share in shares.items()
                        if key[3] in methods and not 0.92 <= share <= 0.98})
    assert not outside, f"coverage outside [0.92, 0.98]: {outside}"


if __name__ == "__main__":  # python -m tests.ope.test_simulated_worlds [replications [events]]
    import sys

    reps = int(sys.argv[1]) if len(sys.argv) > 1 else REPLICATIONS
    size = int(sys.argv[2]) if len(sys.argv) > 2 else EVENTS
    started = time.perf_counter()
    print(_table(coverage(Setting(), reps, size, ("scalar", "loop-scalar", *OBJECTIVES))))
    print(f"{time.perf_counter() - started:.1f} s")
