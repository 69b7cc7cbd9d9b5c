"""Shared OPE test data: a four-event example small enough to compute by hand, and a generator
of logged bandit data with known propensities."""

from __future__ import annotations

import numpy as np
import pytest

# w = target / propensity = [2, 0, 2, 1]; residual r - q_logged = [0.5, -0.25, 0.5, -0.25].
TINY = {
    "reward": np.array([1.0, 0.0, 1.0, 0.0]),
    "propensity": np.array([0.5, 0.5, 0.25, 0.75]),
    "target_probability": np.array([1.0, 0.0, 0.5, 0.75]),
    "q_logged": np.array([0.5, 0.25, 0.5, 0.25]),
    "q_target": np.array([0.75, 0.5, 0.5, 0.25]),
}


@pytest.fixture
def tiny() -> dict[str, np.ndarray]:
    return {name: values.copy() for name, values in TINY.items()}


def logged_bandit(n: int, seed: int, actions: int = 4, unsupported: bool = False
                  ) -> dict[str, np.ndarray]:
    """Events from a softmax logger over ``actions`` actions; the target is another softmax.

    Every array an estimator can read is there; with ``unsupported`` the target also puts mass
    on an action the logger never shows.
    """
    rng = np.random.default_rng(seed)
    logger = rng.dirichlet(np.ones(actions), size=n) * 0.8 + 0.2 / actions
    target = rng.dirichlet(np.full(actions, 0.5), size=n)
    action = (logger.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(max=actions - 1)
    rows = np.arange(n)
    truth = rng.uniform(0.1, 0.9, size=(n, actions))
    model = np.clip(truth + rng.normal(scale=0.1, size=truth.shape), 0.0, 1.0)
    data = {
        "reward": (rng.random(n) < truth[rows, action]).astype(float),
        "propensity": logger[rows, action],
        "target_probability": target[rows, action],
        "q_logged": model[rows, action],
        "q_target": (target * model).sum(axis=1),
    }
    if unsupported:
        data["unsupported_mass"] = np.where(rng.random(n) < 0.3, rng.uniform(0, 0.2, n), 0.0)
    return data
