"""Reference bins of one column, matched to a window's hours of day, and the PSI.

Traffic changes through the day: at 08:00 UTC Europe shops and America sleeps, so the issuer
countries, merchants and channels of a six-hour window differ from the whole day's even when
nothing is wrong. Each column therefore keeps its reference histogram per UTC hour too, and a
window is compared with the mixture of those hours in the proportions the window has them
(each hour shrunk toward the whole day by 20 pseudo-rows), the way the approval-rate monitor
compares each attempt with its hour's rate. The chunk statistics (how far consecutive
reference chunks of 1, 6 and 24 hours moved from their own matched reference) tell how much
a column moves on its own, NannyML-style.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Bins", "ChunkStats", "chi_square", "make_bins", "psi"]

DECILES = 10
TOP_K = 20
CHUNK_HOURS = (1.0, 6.0, 24.0)
MIN_CHUNK_ROWS = 100  # a chunk (or a monitoring window) smaller than this has no PSI
MIN_CHUNKS = 3
HOUR_STRENGTH = 20.0  # pseudo-rows of the whole day in each hour's histogram
EPS = 1e-4  # floor of an empty bin's share in the PSI (the usual convention)


class ChunkStats(BaseModel):
    """How far consecutive reference chunks of ``hours`` moved from their matched reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float
    chunks: int
    rows: float  # mean rows per chunk
    mean: float
    std: float
    max: float
    # mean chi-square / df of a chunk against its matched reference: how much more than
    # sampling noise the column moves (1 for independent rows of a stable distribution)
    dispersion: float


class Bins(BaseModel):
    """The reference distribution of one column.

    Numeric: bin ``i`` holds ``edges[i-1] <= v < edges[i]`` (``len(edges) + 1`` bins).
    Categorical: one bin per value of ``categories`` then ``other``. Either way the last bin
    holds missing values (NaN, None, empty). ``hourly`` has the same counts per UTC hour.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["numeric", "categorical"]
    edges: list[float] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    counts: list[int]
    hourly: list[list[int]] = Field(default_factory=list)
    chunks: list[ChunkStats] = Field(default_factory=list)

    @property
    def size(self) -> int:
        """Number of bins, the missing one included."""
        return len(self.counts)

    def index(self, values: np.ndarray) -> np.ndarray:
        """The bin of every value."""
        if self.kind == "numeric":
            v = np.asarray(values, dtype=np.float64)
            out = np.searchsorted(np.asarray(self.edges, dtype=np.float64), v, side="right")
            return np.where(np.isnan(v), self.size - 1, out)
        position = {c: i for i, c in enumerate(self.categories)}
        other = len(self.categories)
        keys = category_keys(values)
        return np.fromiter(
            (self.size - 1 if k is None else position.get(k, other) for k in keys),
            dtype=np.int64, count=len(keys),
        )  # fmt: skip

    def histogram(self, values: np.ndarray) -> np.ndarray:
        """Rows per bin."""
        return np.bincount(self.index(values), minlength=self.size).astype(np.float64)

    def matched(self, hours: np.ndarray | None) -> np.ndarray:
        """The reference histogram for a window whose rows fall in these UTC ``hours`` (0-23):
        the hours' histograms mixed in the window's proportions, scaled to the mixture's
        effective number of rows. The whole-day counts without ``hours`` or hourly counts."""
        if hours is None or not self.hourly or len(hours) == 0:
            return np.asarray(self.counts, dtype=np.float64)
        return _mixture(np.asarray(self.hourly, dtype=np.float64), hours)

    def chunk_stats(self, hours: float) -> ChunkStats | None:
        """The stored chunk statistics of the longest chunk not longer than ``hours`` (the
        shortest when all are longer), or None when the reference had too few rows."""
        if not self.chunks:
            return None
        fitting = [c for c in self.chunks if c.hours <= hours]
        return max(fitting, key=lambda c: c.hours) if fitting else self.chunks[0]


def _mixture(hourly: np.ndarray, hours: np.ndarray) -> np.ndarray:
    overall = hourly.sum(axis=0)
    rows = hourly.sum(axis=1) + HOUR_STRENGTH
    shares = (hourly + HOUR_STRENGTH * overall / max(overall.sum(), 1.0)) / rows[:, None]
    weight = np.bincount(np.asarray(hours, dtype=np.int64), minlength=24) / len(hours)
    used = weight > 0
    effective = 1.0 / np.sum(weight[used] ** 2 / rows[used])
    return np.asarray(weight @ shares * effective, dtype=np.float64)


def psi(reference: Sequence[float] | np.ndarray, observed: Sequence[float] | np.ndarray) -> float:
    """Population stability index ``sum((o - r) * ln(o / r))`` of two histograms.

    Shares are floored at 1e-4 (a bin empty on one side counts, heavily); bins empty on both
    sides are left out. 0.1 and 0.25 are the usual warning and alert levels.
    """
    ref, obs = np.asarray(reference, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    used = (ref > 0) | (obs > 0)
    if not used.any() or ref.sum() == 0 or obs.sum() == 0:
        return float("nan")
    r = np.maximum(ref[used] / ref.sum(), EPS)
    o = np.maximum(obs[used] / obs.sum(), EPS)
    return float(np.sum((o - r) * np.log(o / r)))


def chi_square(
    reference: Sequence[float] | np.ndarray, observed: Sequence[float] | np.ndarray
) -> tuple[float, int]:
    """Pearson's chi-square of two histograms as a 2 x bins table, and its degrees of freedom
    (bins empty on both sides left out)."""
    table = np.vstack([reference, observed]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), table.shape[1] - 1


def category_keys(values: np.ndarray) -> list[str | None]:
    """Values as category keys: codes of floats as integers ("3"), text as is, missing None."""
    out: list[str | None] = []
    for v in np.asarray(values, dtype=object).tolist():
        if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
            out.append(None)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out


def make_bins(
    values: np.ndarray, categorical: bool, hours: np.ndarray | None, bins: int = DECILES
) -> Bins:
    """The reference bins of a column (quantile bins, or the top 20 categories and other).

    Args:
        values: the reference rows' values.
        categorical: values are categories (text, bools or category codes).
        hours: hours since the epoch of each row, for hourly counts and chunk statistics
            (None: neither).
        bins: quantile bins of a numeric column (ties merge bins).
    """
    if categorical:
        keys = [k for k in category_keys(values) if k is not None]
        uniq, count = np.unique(np.asarray(keys, dtype=str), return_counts=True)
        top = [str(u) for u in uniq[np.argsort(-count, kind="stable")][:TOP_K]]
        empty = Bins(kind="categorical", categories=top, counts=[0] * (len(top) + 2))
    else:
        v = np.asarray(values, dtype=np.float64)
        finite = v[~np.isnan(v)]
        levels = np.linspace(0, 1, bins + 1)[1:-1]
        quantiles = np.quantile(finite, levels) if finite.size else np.array([])
        edges = [float(e) for e in np.unique(quantiles)]
        empty = Bins(kind="numeric", edges=edges, counts=[0] * (len(edges) + 2))
    index = empty.index(values)
    counts = np.bincount(index, minlength=empty.size)
    if hours is None:
        return empty.model_copy(update={"counts": counts.tolist()})
    hour = (np.floor(hours) % 24).astype(np.int64)
    hourly = np.bincount(hour * empty.size + index, minlength=24 * empty.size)
    hourly = hourly.reshape(24, empty.size)
    return empty.model_copy(update={
        "counts": counts.tolist(), "hourly": hourly.tolist(),
        "chunks": _chunks(index, hourly, hours, empty.size),
    })  # fmt: skip


def _chunks(
    index: np.ndarray, hourly: np.ndarray, hours: np.ndarray, size: int
) -> list[ChunkStats]:
    """PSI and chi-square / df of every consecutive chunk of each length against the
    reference matched to its hours."""
    out = []
    hour = (np.floor(hours) % 24).astype(np.int64)
    for length in CHUNK_HOURS:
        chunk = (hours // length).astype(np.int64)
        order = np.argsort(chunk, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(chunk[order]) != 0])
        values, dispersion, rows = [], [], []
        for mine in np.split(order, starts[1:]):
            if mine.size < MIN_CHUNK_ROWS:
                continue
            observed = np.bincount(index[mine], minlength=size)
            reference = _mixture(hourly.astype(np.float64), hour[mine])
            statistic, df = chi_square(reference, observed)
            values.append(psi(reference, observed))
            dispersion.append(statistic / df if df else 1.0)
            rows.append(mine.size)
        if len(values) < MIN_CHUNKS:
            continue
        out.append(ChunkStats(
            hours=length, chunks=len(values), rows=float(np.mean(rows)),
            mean=float(np.mean(values)), std=float(np.std(values, ddof=1)),
            max=float(np.max(values)), dispersion=max(float(np.mean(dispersion)), 1.0),
        ))  # fmt: skip
    return out
