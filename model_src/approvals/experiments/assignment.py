"""Arms by a stable hash of ``payment_id``: a payment's retries stay in its first try's arm.

The hash is BLAKE2b of ``salt:payment_id`` read as a number in [0, 1); arm ``i`` takes the
interval of its share after the arms before it (in the order given). The same ids, shares and
salt give the same arms in every process and language that computes the same hash.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Split", "assign", "bucket"]

_SCALE = float(1 << 64)


def bucket(payment_id: str, salt: str = "") -> float:
    """Where a payment falls in [0, 1)."""
    digest = hashlib.blake2b(f"{salt}:{payment_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign(payment_ids: Iterable[str], shares: Mapping[str, float], salt: str = "") -> np.ndarray:
    """Each payment's arm (object array of arm names).

    Raises:
        ValueError: no positive share, or a negative one.
    """
    names = list(shares)
    weights = np.array([shares[n] for n in names], dtype=float)
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"shares must be >= 0 with a positive total, got {dict(shares)}")
    edges = np.cumsum(weights / weights.sum())
    points = np.array([bucket(p, salt) for p in payment_ids], dtype=float)
    slots = np.minimum(np.searchsorted(edges, points, side="right"), len(names) - 1)
    return np.array(names, dtype=object)[slots]


@dataclass(frozen=True)
class Split:
    """Arms and their shares, for one payment at a time (what :func:`assign` does for many).

    Raises:
        ValueError: no positive share, or a negative one.
    """

    shares: Mapping[str, float]
    salt: str = ""
    _names: tuple[str, ...] = field(init=False, repr=False)
    _edges: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        weights = [float(w) for w in self.shares.values()]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"shares must be >= 0 with a positive total, got {dict(self.shares)}")
        edges = np.cumsum(np.array(weights) / sum(weights)).tolist()
        object.__setattr__(self, "_names", tuple(self.shares))
        object.__setattr__(self, "_edges", tuple(edges))

    def arm(self, payment_id: str) -> str:
        """The arm of one payment: the same as :func:`assign` gives it."""
        slot = bisect.bisect_right(self._edges, bucket(payment_id, self.salt))
        return self._names[min(slot, len(self._names) - 1)]
