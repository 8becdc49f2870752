"""Reference approval rates of a segment by UTC hour of day and first try or retry.

An issuer's approval rate moves through the day (cardholders' night hours are riskier) and
retries approve far less than first tries, so the rate a window should have depends on when
its attempts happened and how many were retries. Training counts each segment's attempts and
approvals in 24 x 2 cells; :meth:`RateCells.expected` gives every attempt of a window its
cell's rate, shrunk toward the segment's first-try or retry rate where a cell has few rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CELLS", "RATE_SEGMENTS", "SEPARATOR", "RateCells", "build_rates", "cells_of",
           "segment_keys"]  # fmt: skip

CELLS = 48  # UTC hour of day x (first try, retry)
STRENGTH = 20.0  # pseudo-attempts pulling a cell toward its parent rate
RATE_SEGMENTS = {"issuer_country": ("issuer_country",), "route_id": ("route_id",),
                 "issuer_route": ("issuer_country", "route_id")}  # fmt: skip
SEPARATOR = "|"  # joins the values of a segment of two columns


class RateCells(BaseModel):
    """Attempts and approvals of one segment per cell (``2 * hour + retry``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: list[int]
    approved: list[int]

    @property
    def attempts(self) -> int:
        """All the segment's attempts."""
        return sum(self.n)

    @property
    def rate(self) -> float:
        """The segment's approval rate over every cell."""
        return sum(self.approved) / max(self.attempts, 1)

    def expected(self, cells: np.ndarray) -> np.ndarray:
        """The reference rate of each attempt's cell (see the module docstring)."""
        n, a = np.asarray(self.n, dtype=float), np.asarray(self.approved, dtype=float)
        kind_n, kind_a = n.reshape(24, 2).sum(axis=0), a.reshape(24, 2).sum(axis=0)
        kind = (kind_a + STRENGTH * self.rate) / (kind_n + STRENGTH)
        rate = (a + STRENGTH * np.tile(kind, 24)) / (n + STRENGTH)
        return rate[cells]


def cells_of(times: pd.Series, attempt_number: pd.Series) -> np.ndarray:
    """The cell of every attempt: ``2 * UTC hour + (attempt_number > 1)``."""
    hours = times.dt.hour.to_numpy(dtype=np.int64)
    return 2 * hours + (attempt_number.to_numpy() > 1).astype(np.int64)


def segment_keys(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The segment of every row: its values of ``columns`` joined by ``|``."""
    keys = frame[columns[0]].astype(str).to_numpy(dtype=object)
    for column in columns[1:]:
        keys = keys + SEPARATOR + frame[column].astype(str).to_numpy(dtype=object)
    return np.asarray(keys, dtype=str)


def build_rates(data: pd.DataFrame) -> dict[str, dict[str, RateCells]]:
    """Per dimension of :data:`RATE_SEGMENTS`, per segment, its cells over ``data``."""
    cells = cells_of(data["event_time"], data["attempt_number"])
    approved = data["approved"].to_numpy().astype(np.int64)
    out: dict[str, dict[str, RateCells]] = {}
    for name, columns in RATE_SEGMENTS.items():
        keys, inverse = np.unique(segment_keys(data, columns), return_inverse=True)
        flat = inverse * CELLS + cells
        n = np.bincount(flat, minlength=keys.size * CELLS).reshape(-1, CELLS)
        a = np.bincount(flat, approved, minlength=keys.size * CELLS).reshape(-1, CELLS)
        out[name] = {
            str(k): RateCells(n=n[i].tolist(), approved=a[i].astype(np.int64).tolist())
            for i, k in enumerate(keys)
        }
    return out


def rates_of(rates: Mapping[str, RateCells], key: str) -> RateCells | None:
    """A segment's cells, or None when training never saw it."""
    return rates.get(key)
