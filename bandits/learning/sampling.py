"""Seeded sampling from a PMF: the same loop and event id always give the same draw.

The seed is derived with BLAKE2b (stable across processes and Python versions, unlike ``hash``).

>>> seed = seed_for(1, "evt-1")
>>> sample([0.2, 0.8], seed) == sample([0.2, 0.8], seed)
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_TWO_POW_53 = float(1 << 53)


def seed_for(loop_id: int, event_id: str) -> int:
    """A 63-bit seed (fits a signed BIGINT) from the loop and the event id."""
    digest = hashlib.blake2b(f"{loop_id}\x00{event_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def uniform(seed: int) -> float:
    """The draw in [0, 1) that a seed stands for (53 bits of it)."""
    return (seed >> 10) / _TWO_POW_53


def normalise(pmf: Sequence[float]) -> list[float]:
    """Clip negatives (VW's float32 noise) and rescale to sum to one."""
    clipped = [p if p > 0.0 else 0.0 for p in pmf]
    total = sum(clipped)
    if total <= 0.0:
        raise ValueError("the distribution has no mass")
    return [p / total for p in clipped]


def sample(pmf: Sequence[float], seed: int) -> int:
    """Index drawn from ``pmf`` (normalised) by inverse CDF with the seed's uniform draw.

    Never returns an index whose probability is zero.
    """
    draw = uniform(seed)
    cumulative = 0.0
    last_positive = -1
    for index, probability in enumerate(pmf):
        if probability <= 0.0:
            continue
        last_positive = index
        cumulative += probability
        if draw < cumulative:
            return index
    if last_positive < 0:
        raise ValueError("the distribution has no mass")
    return last_positive  # rounding left the draw just above the final cumulative sum
