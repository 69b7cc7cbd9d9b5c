r"""A streaming, vectorised Poisson bootstrap over per-event terms.

Resample :math:`b = 1..B` gives event :math:`i` a count :math:`c_{bi} \sim \text{Poisson}(1)`
instead of drawing :math:`n` events with replacement (Hanley & MacGibbon 2006; Chamandy et al.
2012): the counts of different events are independent, so they can be drawn chunk by chunk. Only
the per-resample weighted sums :math:`S_b = \sum_i c_{bi} t_i` and sizes :math:`N_b = \sum_i
c_{bi}` are kept, :math:`O(B k)` memory. Resample :math:`b`'s value is
:math:`g(S_b / N_b)`, the estimator's own function of its means, so self-normalised estimators
are re-normalised inside every resample (resampling fixed per-event contributions instead gets
their spread wrong). The reported point estimate stays the full-sample one; the interval is the
percentile interval of the :math:`B` resample values.

Counts for events :math:`[4096 j, 4096 (j+1))` come from a generator seeded by
``SeedSequence(entropy, spawn_key=(j,))``, keyed by the event's position in the stream, so the
result does not depend on how the stream is cut into chunks, and partitions processed on
different workers (each given its ``start`` position) merge exactly. Per block, one byte per
(resample, event) becomes a count by comparing it with five thresholds: Poisson(1) with
probabilities rounded to 1/256 (counts 0..5 on 94, 94, 47, 16, 4, 1 of the 256 byte values;
mean 1.0039, variance/mean² = 0.996; bytes are read in the machine's byte order). The sums are
a float32 matrix product on terms centred per block (the centre is added back in float64),
which keeps 1,000 resamples of a million events at a few seconds; chunked and one-shot sums
agree to float32 rounding (exactly when chunks are multiples of 4096 events).

Partitions that will be merged need the same seed material: pass an int or a ``SeedSequence``
(a ``Generator`` is drawn from once, so two partitions would get different seeds).

What is *not* resampled: reward-model predictions and hyperparameters are held fixed (the model
is not refitted per resample).
"""

from __future__ import annotations

import numpy as np

from bandits.ope.errors import InvalidParameterError

BLOCK = 4096
# Poisson(1) probabilities of 0..5 rounded to 1/256: round(256 * e^-1 / k!) byte values per
# count; a byte's count is the number of thresholds it reaches (faster than a table lookup).
COUNT_CELLS = (94, 94, 47, 16, 4, 1)
_THRESHOLDS = np.cumsum(COUNT_CELLS[:-1]).astype(np.uint8)

RandomState = int | np.random.SeedSequence | np.random.Generator


def entropy_of(random_state: RandomState | None) -> int | tuple[int, ...]:
    """Seed material from an explicit ``random_state`` (a Generator is drawn from once)."""
    if random_state is None:
        raise InvalidParameterError(
            "the bootstrap needs an explicit random_state: an int seed, a numpy SeedSequence "
            "or a numpy Generator")
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63))
    if isinstance(random_state, np.random.SeedSequence):
        return tuple(int(word) for word in random_state.generate_state(4))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise InvalidParameterError(f"random_state must be >= 0, got {random_state}")
        return int(random_state)
    raise InvalidParameterError(
        f"random_state must be an int, a numpy SeedSequence or Generator, got {random_state!r}")


class PoissonBootstrap:
    """Per-resample sums of ``columns`` per-event terms over a stream of events.

    Parameters
    ----------
    n_resamples : int
        :math:`B`.
    columns : int
        Number of per-event terms :math:`k`.
    random_state : int, numpy.random.SeedSequence or numpy.random.Generator
        Seed; the same seed and events give the same resamples, however they are chunked.
    """

    def __init__(self, n_resamples: int, columns: int, random_state: RandomState) -> None:
        if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) \
                or n_resamples < 2:
            raise InvalidParameterError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
        self.n_resamples = int(n_resamples)
        self.columns = columns
        self.entropy = entropy_of(random_state)
        self.sums = np.zeros((self.n_resamples, columns))
        self.sizes = np.zeros(self.n_resamples)
        self.events = 0
        self._next_start = 0
        self._block_counts = np.empty((self.n_resamples, BLOCK), dtype=np.float32)
        self._block_index = -1
        self._small_counts = np.empty((self.n_resamples, BLOCK), dtype=np.uint8)
        self._reached = np.empty((self.n_resamples, BLOCK), dtype=bool)

    def _counts(self, block: int) -> np.ndarray:
        if block != self._block_index:
            seed = np.random.SeedSequence(self.entropy, spawn_key=(block,))
            raw = np.random.PCG64DXSM(seed).random_raw(self.n_resamples * BLOCK // 8)
            cells = raw.view(np.uint8).reshape(self.n_resamples, BLOCK)
            counts, reached = self._small_counts, self._reached
            np.greater_equal(cells, _THRESHOLDS[0], out=counts.view(bool))
            for threshold in _THRESHOLDS[1:]:
                np.greater_equal(cells, threshold, out=reached)
                np.add(counts, reached, out=counts, casting="unsafe")
            self._block_counts[...] = counts
            self._block_index = block
        return self._block_counts

    def update(self, terms: np.ndarray, start: int | None = None) -> None:
        """Add events with per-event ``terms`` (shape ``(m, columns)``).

        ``start`` is the position of the first of them in the whole stream; by default the
        events follow the previous update's.
        """
        position = self._next_start if start is None else int(start)
        count = terms.shape[0]
        row = 0
        while row < count:
            block, offset = divmod(position, BLOCK)
            width = min(BLOCK - offset, count - row)
            part = terms[row: row + width]
            centre = part.mean(axis=0)
            centred = np.ones((width, self.columns + 1), dtype=np.float32)
            centred[:, : self.columns] = part - centre
            product = self._counts(block)[:, offset: offset + width] @ centred
            sizes = product[:, self.columns].astype(np.float64)
            self.sums += product[:, : self.columns] + np.outer(sizes, centre)
            self.sizes += sizes
            position += width
            row += width
        self.events += count
        self._next_start = position

    def merge(self, other: PoissonBootstrap) -> None:
        """Add the sums of a bootstrap over other events (same seed, resamples and columns)."""
        if (other.entropy, other.n_resamples, other.columns) != (
                self.entropy, self.n_resamples, self.columns):
            raise InvalidParameterError("only bootstraps with the same random_state, n_resamples "
                                        "and columns can be merged")
        self.sums += other.sums
        self.sizes += other.sizes
        self.events += other.events
        self._next_start = max(self._next_start, other._next_start)

    def means(self) -> np.ndarray:
        """Per-resample means of the terms, shape ``(n_resamples, columns)`` (NaN if empty)."""
        sizes = self.sizes[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sizes > 0, self.sums / np.where(sizes > 0, sizes, 1.0), np.nan)
