"""One window of a decision log against the model's training reference: the monitor's report.

:func:`monitor_window` is pure (frames and arrays in, a JSON-safe report out), so the CLI, a
CronJob and the benchmark run the same code; reading, recomputing features and writing are at
the edges (:func:`recompute_features`, :mod:`approvals.monitoring.export`). The report is
``{"alerts": [{"kind", "segment", "value", "threshold"}], "metrics": {...}}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.errors import UserError
from approvals.model.reference import TrainingReference
from approvals.monitoring import drift
from approvals.monitoring.alerts import Alert
from approvals.monitoring.anomalies import approval_rates
from approvals.monitoring.calibration import calibration
from approvals.monitoring.settings import MonitorSettings
from approvals.monitoring.skew import logged_features, skew

if TYPE_CHECKING:
    import pandas as pd

    from approvals.model.package import ModelPackage

__all__ = ["answered_by", "monitor_window", "recompute_features", "select_window"]


def select_window(log: pd.DataFrame, start: datetime | None, end: datetime | None) -> pd.DataFrame:
    """Rows decided in ``[start, end)`` (naive UTC; None: open), one per ``attempt_id`` (its
    latest decision: a log written twice for an attempt counts it once)."""
    rows = log
    if start is not None:
        rows = rows[rows["decided_at"] >= np.datetime64(start)]
    if end is not None:
        rows = rows[rows["decided_at"] < np.datetime64(end)]
    rows = rows.sort_values("decided_at", kind="stable")
    return rows.drop_duplicates("attempt_id", keep="last").reset_index(drop=True)


def answered_by(rows: pd.DataFrame, model_version: str) -> np.ndarray:
    """Rows this model answered: a probability, and its version (or no version logged).

    Raises:
        UserError: the window has answers, none of them from ``model_version``.
    """
    answered = rows["p_approve"].notna().to_numpy()
    versions = rows["model_version"]
    mine = answered & (versions.isna() | (versions == model_version)).to_numpy()
    if answered.any() and not mine.any():
        seen = sorted({str(v) for v in versions[answered].dropna().unique()})
        raise UserError(
            f"column 'model_version': no answer in the window is from model {model_version} "
            f"(the log has {', '.join(seen)}): monitor it with the package that answered"
        )
    return np.asarray(mine, dtype=bool)


def recompute_features(package: ModelPackage, rows: pd.DataFrame, log: pd.DataFrame) -> np.ndarray:
    """The model's features of ``rows`` point in time, from the package's feature state and
    the outcomes in ``log`` (each attempt once), by the offline SQL of training."""
    from approvals.model.predict import feature_matrix

    labelled = log[log["approved"].notna()].drop_duplicates("attempt_id", keep="last")
    history = labelled.assign(approved=labelled["approved"].astype(bool))
    return feature_matrix(package, rows, history)


def monitor_window(
    rows: pd.DataFrame,
    reference: TrainingReference,
    *,
    model_version: str,
    feature_names: Sequence[str],
    recomputed: np.ndarray | None = None,
    settings: MonitorSettings | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """The monitor's report on one window.

    Args:
        rows: the window (:func:`select_window` of a validated decision log).
        reference: the model's training reference.
        model_version: the package's version: only its answers count for predictions and
            calibration (a challenger's rows are another model's).
        feature_names: the model's features, in matrix order.
        recomputed: the window's features recomputed offline (rows x features), or None.
        settings: thresholds (default :class:`MonitorSettings`).
        start, end: the window's bounds (default: its first and last decision).
    """
    settings = settings or MonitorSettings()
    hours = _hours(rows, start, end)
    mine = answered_by(rows, model_version)
    known = rows["approved"].notna().to_numpy()
    logged, has_vector, unlogged = logged_features(rows[mine], feature_names)
    metrics: dict[str, Any] = {
        "window": _window(rows, mine, known, start, end, hours),
        "model": {"version": model_version, "reference_period": list(reference.period),
                  "reference_rows": reference.rows},
    }  # fmt: skip
    features, source = _feature_columns(logged, has_vector, recomputed, mine, feature_names)
    row_hours = rows["event_time"].dt.hour.to_numpy()
    feature_hours = row_hours[mine][has_vector] if source == "logged" else row_hours[mine]
    found = {
        "feature_drift": drift.drift_family("feature_drift", reference.features, features,
                                            reference.groups, feature_hours, hours, settings),
        "missing_values": drift.missing_values(reference.features, features, settings),
        "input_drift": drift.drift_family("input_drift", reference.inputs, _inputs(rows,
                                          reference), {}, row_hours, hours, settings),
        "prediction_drift": _prediction_drift(rows[mine], reference, row_hours[mine], hours,
                                              settings),
        "segment_drift": _merchant_drift(rows, reference, settings),
        "calibration": calibration(rows[known & mine], reference, settings),
        "approval_rate": approval_rates(rows[known], reference, settings),
        "skew": _skew(logged, has_vector, unlogged, recomputed, mine, feature_names, settings),
    }  # fmt: skip
    alerts: list[Alert] = []
    for name, (result, raised) in found.items():
        metrics[name] = result
        alerts += raised
    metrics["feature_drift"] = {"source": source, "features": metrics["feature_drift"]}
    return {"alerts": [asdict(a) for a in alerts], "metrics": _json_safe(metrics)}


def _inputs(rows: pd.DataFrame, reference: TrainingReference) -> dict[str, np.ndarray]:
    return {c: rows[c].to_numpy() for c in reference.inputs if c in rows.columns}


def _merchant_drift(
    rows: pd.DataFrame, reference: TrainingReference, settings: MonitorSettings
) -> tuple[dict[str, Any], list[Alert]]:
    """Merchant amounts, one per payment (its first attempt in the window)."""
    payments = rows.sort_values("event_time", kind="stable").drop_duplicates("payment_id")
    return drift.merchant_amount_drift(
        reference, payments["merchant_id"].to_numpy(dtype=object).astype(str),
        payments["amount"].to_numpy(dtype=np.float64), settings,
    )  # fmt: skip


def _hours(rows: pd.DataFrame, start: datetime | None, end: datetime | None) -> float:
    first = np.datetime64(start) if start is not None else rows["decided_at"].min()
    last = np.datetime64(end) if end is not None else rows["decided_at"].max()
    if len(rows) == 0 and (start is None or end is None):
        return 1.0
    return max(float((last - first) / np.timedelta64(1, "s")) / 3600.0, 1 / 60)


def _window(
    rows: pd.DataFrame, mine: np.ndarray, known: np.ndarray,
    start: datetime | None, end: datetime | None, hours: float,
) -> dict[str, Any]:  # fmt: skip
    first, last = rows["decided_at"].min(), rows["decided_at"].max()
    return {
        "start": (start.isoformat() if start else _iso(first)),
        "end": (end.isoformat() if end else _iso(last)),
        "hours": hours, "rows": len(rows), "scored": int(mine.sum()), "labelled": int(known.sum()),
        "variants": {str(k): int(v) for k, v in rows["variant"].value_counts().items()},
        "degraded": int(rows["degraded"].fillna(False).astype(bool).sum())
        if "degraded" in rows else None,
    }  # fmt: skip


def _iso(value: Any) -> str | None:
    import pandas as pd

    return None if pd.isna(value) else pd.Timestamp(value).isoformat()


def _feature_columns(
    logged: np.ndarray | None, has_vector: np.ndarray, recomputed: np.ndarray | None,
    mine: np.ndarray, names: Sequence[str],
) -> tuple[dict[str, np.ndarray], str | None]:  # fmt: skip
    """The features drift is measured on: what the service logged, else the recomputed ones."""
    if logged is not None and has_vector.any():
        return {n: logged[has_vector, j] for j, n in enumerate(names)}, "logged"
    if recomputed is not None:
        return {n: recomputed[mine, j] for j, n in enumerate(names)}, "recomputed"
    return {}, None


def _prediction_drift(
    scored: pd.DataFrame, reference: TrainingReference, row_hours: np.ndarray, hours: float,
    settings: MonitorSettings,
) -> tuple[dict[str, Any], list[Alert]]:  # fmt: skip
    p = scored["p_approve"].to_numpy(dtype=np.float64)
    result = drift.column_drift(reference.prediction, p, row_hours, hours, settings)
    result["mean_p"] = float(p.mean()) if p.size else None
    result["reference_mean_p"] = reference.prediction_mean
    if result["status"] != "alert" or result["p_value"] > settings.fdr:
        return result, []
    return result, [Alert("prediction_drift", "all", result["psi"], result["alert"])]


def _skew(
    logged: np.ndarray | None, has_vector: np.ndarray, unlogged: list[str],
    recomputed: np.ndarray | None, mine: np.ndarray, names: Sequence[str],
    settings: MonitorSettings,
) -> tuple[dict[str, Any], list[Alert]]:  # fmt: skip
    if logged is None or not has_vector.any():
        return {"status": "skipped", "reason": "the log has no feature_<name> columns"}, []
    if recomputed is None:
        return {"status": "skipped", "reason": "features were not recomputed"}, []
    result, alerts = skew(logged[has_vector], recomputed[mine][has_vector], names, settings)
    result["features_not_logged"] = unlogged
    return result, alerts


def _json_safe(value: Any) -> Any:
    """Plain JSON types: numpy scalars as Python numbers, NaN and infinities as None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
