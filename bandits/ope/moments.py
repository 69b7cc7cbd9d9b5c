r"""Streaming first and second moments of per-event terms, mergeable across chunks and workers.

Every estimator here is a smooth function :math:`g` of the means of a few per-event terms
(:math:`\bar t = \frac1n \sum_i t_i`), so a stream of events needs only :math:`n`, the running mean
and the centred co-moment matrix :math:`M = \sum_i (t_i - \bar t)(t_i - \bar t)^\top`. Chunks are
combined with the pairwise update of Chan, Golub & LeVeque (1979): for parts :math:`A, B`,

.. math::

    \delta = \bar t_B - \bar t_A, \quad
    \bar t = \bar t_A + \delta\, n_B / n, \quad
    M = M_A + M_B + \delta \delta^\top n_A n_B / n,

which is exact in exact arithmetic and numerically stable, so chunked and one-shot results agree
to rounding. Memory is :math:`O(k^2)` for :math:`k` terms, whatever the number of events.

>>> import numpy as np
>>> terms = np.arange(12.0).reshape(6, 2)
>>> whole, parts = Moments(2), Moments(2)
>>> whole.update(terms); parts.update(terms[:4]); parts.update(terms[4:])
>>> bool(np.allclose(whole.covariance(), parts.covariance()))
True
"""

from __future__ import annotations

import numpy as np


class Moments:
    """Running count, mean and centred co-moments of the rows of ``(n, k)`` term matrices."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.n = 0
        self.mean = np.zeros(columns)
        self.comoment = np.zeros((columns, columns))

    def update(self, terms: np.ndarray) -> None:
        """Add the rows of ``terms`` (shape ``(m, k)``)."""
        count = terms.shape[0]
        if count == 0:
            return
        mean = terms.mean(axis=0)
        centred = terms - mean
        self._combine(count, mean, centred.T @ centred)

    def merge(self, other: Moments) -> None:
        """Add another accumulator's events (e.g. a worker's partition) to this one."""
        if other.columns != self.columns:
            raise ValueError(f"cannot merge moments of {other.columns} and {self.columns} columns")
        if other.n:
            self._combine(other.n, other.mean, other.comoment)

    def _combine(self, count: int, mean: np.ndarray, comoment: np.ndarray) -> None:
        total = self.n + count
        delta = mean - self.mean
        self.comoment += comoment + np.outer(delta, delta) * (self.n * count / total)
        self.mean = self.mean + delta * (count / total)
        self.n = total

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """Sample covariance of the terms (``ddof=1``) or the plug-in one (``ddof=0``).

        NaN when there are not more than ``ddof`` events.
        """
        if self.n <= ddof:
            return np.full((self.columns, self.columns), np.nan)
        return self.comoment / (self.n - ddof)
