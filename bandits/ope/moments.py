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
        if terms.shape[0] == 0:
            return
        mean = terms.mean(axis=0)
        self._add(terms.shape[0], mean, terms - mean)

    def update_rows(self, rows: np.ndarray) -> None:
        """Add the columns of ``rows`` (shape ``(k, m)``: one row per term, one column per
        event), which are centred in place (no copy of them is made)."""
        if rows.shape[1] == 0:
            return
        mean = rows.mean(axis=1)
        rows -= mean[:, None]
        self._add(rows.shape[1], mean, rows.T)

    def _add(self, count: int, mean: np.ndarray, centred: np.ndarray) -> None:
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


class ThirdMoments(Moments):
    r"""A :class:`Moments` of a few columns that also keeps their third co-moments.

    For the skewness of an estimate's linearised terms (:func:`~bandits.ope.intervals.skewness`):
    with the gradient :math:`g` of the estimate known only at the end, the third moment of
    :math:`\psi_i = g^\top (t_i - \bar t)` needs the whole tensor
    :math:`M_3 = \sum_i (t_i - \bar t)^{\otimes 3}`, which costs :math:`k^3` per event, so it is
    kept only over the few columns of one estimate (and its observed column), not over all of an
    evaluation's. Chunks combine with Pébay's (2008) update for third-order co-moments: for parts
    :math:`A, B` with :math:`\delta = \bar t_B - \bar t_A` and
    :math:`D = n_A M_{2,B} - n_B M_{2,A}`,

    .. math::

        M_3 = M_{3,A} + M_{3,B} + \delta^{\otimes 3} \frac{n_A n_B (n_A - n_B)}{n^2}
              + \frac{1}{n}\,(D_{ij}\delta_k + D_{ik}\delta_j + D_{jk}\delta_i),

    exact in exact arithmetic, so chunked and one-shot results agree to rounding.

    >>> import numpy as np
    >>> terms = np.random.default_rng(0).exponential(size=(50, 2))
    >>> whole, parts = ThirdMoments(2), ThirdMoments(2)
    >>> whole.update(terms); parts.update(terms[:17]); parts.update(terms[17:])
    >>> bool(np.allclose(whole.third, parts.third))
    True
    """

    def __init__(self, columns: int) -> None:
        super().__init__(columns)
        self.third = np.zeros((columns, columns, columns))

    def _add(self, count: int, mean: np.ndarray, centred: np.ndarray) -> None:
        third = np.empty((self.columns,) * 3)
        for i in range(self.columns):  # one product and one matrix-vector product per pair i <= j
            for j in range(i, self.columns):
                third[i, j] = third[j, i] = (centred[:, i] * centred[:, j]) @ centred
        self._combine_third(count, mean, centred.T @ centred, third)

    def merge(self, other: ThirdMoments) -> None:
        """Add another accumulator's events (e.g. a worker's partition) to this one."""
        if other.columns != self.columns:
            raise ValueError(f"cannot merge moments of {other.columns} and {self.columns} columns")
        if other.n:
            self._combine_third(other.n, other.mean, other.comoment, other.third)

    def _combine_third(self, count: int, mean: np.ndarray, comoment: np.ndarray,
                       third: np.ndarray) -> None:
        n_a, n_b = self.n, count
        total = n_a + n_b
        delta = mean - self.mean
        spread = np.multiply.outer(n_a * comoment - n_b * self.comoment, delta)  # D_ij δ_k
        self.third = (self.third + third
                      + np.multiply.outer(np.outer(delta, delta), delta)
                      * (n_a * n_b * (n_a - n_b) / total**2)
                      + (spread + spread.transpose(0, 2, 1) + spread.transpose(2, 0, 1)) / total)
        self._combine(count, mean, comoment)


class BlockThirdMoments:
    """One :class:`ThirdMoments` per named group of columns of the same term matrices."""

    def __init__(self, groups: dict) -> None:
        self.columns = {key: np.asarray(columns) for key, columns in groups.items()}
        self.groups = {key: ThirdMoments(columns.size) for key, columns in self.columns.items()}

    def __getitem__(self, key) -> ThirdMoments:
        return self.groups[key]

    def update(self, terms: np.ndarray) -> None:
        """Add the rows of ``terms`` (all columns; each group takes its own)."""
        for key, columns in self.columns.items():
            self.groups[key].update(terms[:, columns])

    def merge(self, other: BlockThirdMoments) -> None:
        for key, third in other.groups.items():
            self.groups[key].merge(third)
