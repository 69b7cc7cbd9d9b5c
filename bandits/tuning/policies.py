r"""A loop's exploration over combined scores: the policy a weight vector would serve.

A weight vector :math:`w` turns the per-objective reward models into one score per action,
:math:`s(x, a) = \sum_k w_k \hat f_k(x, a)`; the policy is the loop's exploration over those
scores, as VW applies it to its predicted costs :math:`-s`:

* ``epsilon`` (:math:`\varepsilon`): the best action with probability :math:`1 - \varepsilon`,
  the rest spread uniformly over the allowed actions;
* ``squarecb`` (:math:`\gamma`): every other action :math:`a` gets
  :math:`1 / (|A| + \gamma (s_{best} - s_a))`, the best action the rest (Foster & Rakhlin 2020,
  as VW's ``--squarecb``); VW grows :math:`\gamma = \text{gamma\_scale} \cdot t^{\text{gamma\_exponent}}`
  with the number of events learned :math:`t`;
* ``softmax`` (:math:`\lambda`): :math:`\pi(a) \propto e^{\lambda s_a}`.

Scores are in the units of the scalar reward, so the PMF of ``squarecb`` and ``softmax`` depends
on the weights' scale, as it does when the loop learns with them. Ties go to the first action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Exploration:
    """``algorithm`` is ``epsilon``, ``squarecb`` or ``softmax``; ``parameter`` is
    :math:`\\varepsilon`, :math:`\\gamma` or :math:`\\lambda`."""

    algorithm: str
    parameter: float

    def __post_init__(self) -> None:
        if self.algorithm not in ("epsilon", "squarecb", "softmax"):
            raise ValueError(f"unknown exploration {self.algorithm!r}")
        if not np.isfinite(self.parameter) or self.parameter < 0:
            raise ValueError(f"{self.algorithm} needs a finite parameter >= 0")
        if self.algorithm == "epsilon" and self.parameter > 1:
            raise ValueError("epsilon must be in [0, 1]")

    def pmf(self, scores: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Probabilities from scores, both (A, n): one column per event, one row per action
        (the layout that keeps every step a contiguous pass). ``allowed`` (A, n) masks actions
        out (probability 0); None allows all. Tied best actions share the greedy mass."""
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        best_score = scores.max(axis=0)
        if self.algorithm == "softmax":
            weights = np.exp(self.parameter * (scores - best_score))
            return weights / weights.sum(axis=0)
        best = np.empty(scores.shape, dtype=scores.dtype)
        np.equal(scores, best_score, out=best, casting="unsafe")
        best /= best.sum(axis=0)
        count = scores.shape[0] if allowed is None else allowed.sum(axis=0).astype(scores.dtype)
        if self.algorithm == "epsilon":
            pmf = best * (1.0 - self.parameter)
            pmf += (self.parameter / count if allowed is None
                    else np.where(allowed, self.parameter / count, 0.0))
            return pmf
        gap = best_score - scores  # ∞ where not allowed: probability 0
        with np.errstate(divide="ignore"):
            pmf = 1.0 / (count + self.parameter * gap)
        pmf[best > 0] = 0.0
        pmf += best * (1.0 - pmf.sum(axis=0))
        return pmf


def exploration_for(config_exploration, events_learned: int) -> tuple[Exploration, str | None]:
    """The :class:`Exploration` matching a loop's exploration config, and a note when it is an
    approximation: ``bag``, ``cover`` and ``rnd`` explore by their models' disagreement, which
    per-objective reward models cannot reproduce; they are evaluated as epsilon-greedy with their
    ``epsilon``."""
    algorithm = config_exploration.algorithm
    if algorithm == "epsilon":
        return Exploration("epsilon", config_exploration.epsilon), None
    if algorithm == "squarecb":
        gamma = config_exploration.gamma_scale * max(events_learned, 1) ** config_exploration.gamma_exponent
        return Exploration("squarecb", gamma), None
    if algorithm == "softmax":
        return Exploration("softmax", config_exploration.lambda_), None
    return (Exploration("epsilon", config_exploration.epsilon),
            f"{algorithm} exploration is evaluated as epsilon-greedy with epsilon "
            f"{config_exploration.epsilon:g}: its ensemble's disagreement cannot be derived from "
            "per-objective reward models")
