"""Quality metrics of calibrated approval probabilities, overall and per segment.

Every function takes labels ``y`` (0/1 or bool) and probabilities ``p`` as array-likes of the
same length and raises ``ValueError`` with a clear message on bad input (mismatched lengths,
labels other than 0/1, probabilities outside [0, 1] or not finite). Summaries are JSON-safe:
plain Python floats, with ``None`` where a metric is undefined (e.g. ROC-AUC on one class).
The scores themselves are scikit-learn's (imported on first use: training and evaluation only,
never the serving image).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

EPS = 1e-6
LABELS = (0.0, 1.0)
MISSING = "(missing)"
OTHER = "(other)"
DEFAULT_MIN_COUNT = 200

Summary = dict[str, Any]


def as_arrays(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and probabilities and return them as float64 arrays.

    Raises:
        ValueError: lengths differ, labels are not 0/1, or probabilities are outside [0, 1].
    """
    ya = np.asarray(y, dtype=np.float64).ravel()
    pa = np.asarray(p, dtype=np.float64).ravel()
    if ya.shape != pa.shape:
        raise ValueError(f"y has {ya.size} values but p has {pa.size}")
    if not np.isin(ya, (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1 (or bool)")
    if not (np.isfinite(pa).all() and (pa >= 0).all() and (pa <= 1).all()):
        raise ValueError("probabilities must be finite and within [0, 1]")
    return ya, pa


def _require_rows(ya: np.ndarray) -> None:
    if ya.size == 0:
        raise ValueError("no rows to evaluate")


def _both_classes(ya: np.ndarray) -> bool:
    return bool(ya.size) and 0 < ya.sum() < ya.size


def log_loss(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Mean negative log-likelihood, probabilities clipped to [1e-6, 1 - 1e-6] (sklearn's).

    Defined on one class too: both labels are declared, not inferred from ``y``.
    """
    from sklearn.metrics import log_loss as sklearn_log_loss

    ya, pa = as_arrays(y, p)
    _require_rows(ya)
    return float(sklearn_log_loss(ya, np.clip(pa, EPS, 1 - EPS), labels=LABELS))


def brier(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Mean squared difference between probability and outcome (sklearn's Brier score)."""
    from sklearn.metrics import brier_score_loss

    ya, pa = as_arrays(y, p)
    _require_rows(ya)
    return float(brier_score_loss(ya, pa, pos_label=1.0))


def roc_auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    ya, pa = as_arrays(y, p)
    return float(roc_auc_score(ya, pa)) if _both_classes(ya) else math.nan


def pr_auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Average precision (area under the precision-recall curve); NaN on one class."""
    from sklearn.metrics import average_precision_score

    ya, pa = as_arrays(y, p)
    return float(average_precision_score(ya, pa)) if _both_classes(ya) else math.nan


def _bin_index(pa: np.ndarray, bins: int) -> np.ndarray:
    if bins < 1:
        raise ValueError(f"bins must be 1 or more, got {bins}")
    return np.minimum((pa * bins).astype(np.int64), bins - 1)


def ece(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins.

    The count-weighted mean of ``|mean p - observed rate|`` per bin; empty bins weigh nothing.
    """
    ya, pa = as_arrays(y, p)
    _require_rows(ya)
    idx = _bin_index(pa, bins)
    counts = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, pa, bins) - np.bincount(idx, ya, bins))
    return float(gap.sum() / counts.sum())


def reliability_table(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> list[Summary]:
    """Per equal-width bin: bounds, count, mean probability and observed approval rate.

    Returns:
        One dict per bin (``lower``, ``upper``, ``count``, ``mean_p``, ``rate``), in order;
        ``mean_p`` and ``rate`` are ``None`` for empty bins.
    """
    ya, pa = as_arrays(y, p)
    idx = _bin_index(pa, bins)
    counts = np.bincount(idx, minlength=bins)
    sum_p, sum_y = np.bincount(idx, pa, bins), np.bincount(idx, ya, bins)
    rows = []
    for b in range(bins):
        n = int(counts[b])
        rows.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "count": n,
                "mean_p": float(sum_p[b] / n) if n else None,
                "rate": float(sum_y[b] / n) if n else None,
            }
        )
    return rows


def json_float(value: float | None) -> float | None:
    """A plain float, or ``None`` for missing, NaN or infinite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summarize(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> Summary:
    """All metrics of one set of predictions, JSON-safe.

    Returns:
        ``n``, ``positives``, ``approval_rate``, ``mean_p``, ``log_loss``, ``brier``,
        ``roc_auc``, ``pr_auc`` and ``ece``; rate and loss metrics are ``None`` with no rows,
        ranking metrics are ``None`` unless both classes are present.
    """
    ya, pa = as_arrays(y, p)
    out: Summary = {"n": int(ya.size), "positives": int(ya.sum())}
    if ya.size == 0:
        keys = ("approval_rate", "mean_p", "log_loss", "brier", "roc_auc", "pr_auc", "ece")
        return out | dict.fromkeys(keys)
    out["approval_rate"] = float(ya.mean())
    out["mean_p"] = float(pa.mean())
    out["log_loss"] = log_loss(ya, pa)
    out["brier"] = brier(ya, pa)
    out["roc_auc"] = json_float(roc_auc(ya, pa))
    out["pr_auc"] = json_float(pr_auc(ya, pa))
    out["ece"] = ece(ya, pa, bins)
    return out


def _segment_labels(values: npt.ArrayLike, n: int, column: str) -> np.ndarray:
    import pandas as pd

    series = pd.Series(np.asarray(values, dtype=object).ravel())
    if len(series) != n:
        raise ValueError(f"segment column '{column}' has {len(series)} values, expected {n}")
    return series.astype("string").fillna(MISSING).to_numpy(dtype=object)


def _segment_column(
    labels: np.ndarray, ya: np.ndarray, pa: np.ndarray, min_count: int
) -> dict[str, Summary]:
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    groups = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    out: dict[str, Summary] = {}
    small: list[np.ndarray] = []
    for i in np.argsort(-counts, kind="stable"):
        rows = groups[i]
        if counts[i] >= min_count:
            out[str(values[i])] = summarize(ya[rows], pa[rows])
        else:
            small.append(rows)
    pooled = np.concatenate(small) if small else np.empty(0, dtype=np.int64)
    if pooled.size >= min_count:
        out[OTHER] = summarize(ya[pooled], pa[pooled])
    return out


def by_segment(
    segments: Mapping[str, npt.ArrayLike],
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    min_count: int = DEFAULT_MIN_COUNT,
) -> dict[str, dict[str, Summary]]:
    """``summarize`` per value of each segment column.

    Values are compared as text; missing values form the segment ``"(missing)"``. Values
    with fewer than ``min_count`` rows are pooled into ``"(other)"``, reported when the pool
    itself reaches ``min_count``, so no column silently drops its long tail.

    Args:
        segments: column name -> one value per row (e.g. ``{"card_brand": frame.card_brand}``).
        y: labels.
        p: probabilities.
        min_count: smallest segment reported on its own.

    Returns:
        ``{column: {value: summary}}``, values ordered by descending count.
    """
    ya, pa = as_arrays(y, p)
    if min_count < 1:
        raise ValueError(f"min_count must be 1 or more, got {min_count}")
    return {
        column: _segment_column(_segment_labels(values, ya.size, column), ya, pa, min_count)
        for column, values in segments.items()
    }


def oracle_ratio(y: npt.ArrayLike, p_model: npt.ArrayLike, p_oracle: npt.ArrayLike) -> float:
    """Log loss of the model divided by the log loss of the true probabilities (>= ~1)."""
    oracle = log_loss(y, p_oracle)
    if oracle <= 0:
        raise ValueError("the oracle's log loss is zero: the ratio is undefined")
    return log_loss(y, p_model) / oracle
