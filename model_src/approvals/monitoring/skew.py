"""Training-serving skew: the features the service logged against the ones the offline SQL
recomputes point in time from the same log.

The service logs its feature vector per decision (``feature_<name>`` columns, docs/decisions.md);
the monitor recomputes every feature of the same attempts from the package's feature state and
the log's own outcomes (:mod:`approvals.features.offline`, the SQL training uses). Both sides
must agree (the parity the project promises), so a feature whose logged values disagree on more
than ``skew_share`` of the rows alerts. Values agree when both are missing, or within
``skew_atol + skew_rtol * |recomputed|``. Recomputing needs the log's outcomes from the
package's deployment on: a log that starts later misses outcomes the service had.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.experiments.sink_files import FEATURE_PREFIX
from approvals.monitoring.alerts import Alert
from approvals.monitoring.settings import MonitorSettings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FEATURE_PREFIX", "logged_features", "skew"]


def logged_features(
    rows: pd.DataFrame, names: Sequence[str]
) -> tuple[np.ndarray | None, np.ndarray, list[str]]:
    """The logged feature vectors of ``rows``, in ``names`` order.

    Returns:
        (rows x features matrix, or None when no ``feature_`` column is present; which rows
        logged a vector (any feature value present); the model's features the log lacks).
    """
    import pandas as pd

    present = [n for n in names if FEATURE_PREFIX + n in rows.columns]
    if not present:
        return None, np.zeros(len(rows), dtype=bool), list(names)
    columns = {
        n: pd.to_numeric(rows[FEATURE_PREFIX + n], errors="coerce").to_numpy(dtype=np.float64)
        if n in present else np.full(len(rows), np.nan)
        for n in names
    }  # fmt: skip
    matrix = np.column_stack([columns[n] for n in names])
    has_vector = ~np.isnan(matrix[:, [names.index(n) for n in present]]).all(axis=1)
    return matrix, has_vector, [n for n in names if n not in present]


def skew(
    logged: np.ndarray, recomputed: np.ndarray, names: Sequence[str], settings: MonitorSettings
) -> tuple[dict[str, Any], list[Alert]]:
    """Per feature the rows whose logged value disagrees with the recomputed one.

    Args:
        logged, recomputed: rows x features, the same rows and ``names`` order.
    """
    a, b = logged, recomputed
    both_missing = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= settings.skew_atol + settings.skew_rtol * np.abs(b)
    wrong = ~(both_missing | close)
    rows = len(a)
    features: dict[str, Any] = {}
    alerts = []
    for j, name in enumerate(names):
        count = int(wrong[:, j].sum())
        diff = np.abs(a[:, j] - b[:, j])
        finite = diff[np.isfinite(diff)]
        features[name] = {
            "mismatched": count, "share": count / rows if rows else 0.0,
            "max_abs_diff": float(finite.max()) if finite.size else None,
        }  # fmt: skip
        if rows and count / rows > settings.skew_share:
            alerts.append(Alert("skew", f"feature={name}", count / rows, settings.skew_share))
    mismatched = {k: v for k, v in features.items() if v["mismatched"]}
    return {"status": "checked", "rows": rows, "features_checked": len(names),
            "mismatched": mismatched}, alerts  # fmt: skip
