"""Calibration of the answered probabilities on the window's labelled rows.

Overall and per issuer country, route and merchant, observed approvals are compared with the
sum of ``p_approve`` (z-test with the payment-clustered variance of
:func:`approvals.monitoring.stats.segment_sums`); q-values by Benjamini-Hochberg within each
dimension. A segment alerts when its q-value is at most ``fdr`` and the gap between
observed and predicted approval rate at least ``calibration_gap``, so a small merchant off by
20 points on 40 rows does not page anyone, and a large one off by half a point does not
either. The ECE alerts when it is ``ece_increase`` above the training test split's (the
calibration the model shipped with: degradation, not imperfection) and a calibrated model
would rarely score as badly on the same probabilities
(:func:`approvals.monitoring.stats.ece_consistency`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.model import metrics
from approvals.model.reference import TrainingReference
from approvals.monitoring.alerts import Alert, segment_name
from approvals.monitoring.settings import MonitorSettings
from approvals.monitoring.stats import (
    beyond_margin,
    ece_consistency,
    q_values_by_family,
    segment_sums,
    z_test,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DIMENSIONS", "calibration"]

DIMENSIONS = ("issuer_country", "route_id", "merchant_id")


def calibration(
    rows: pd.DataFrame, reference: TrainingReference, settings: MonitorSettings
) -> tuple[dict[str, Any], list[Alert]]:
    """Calibration metrics and alerts of labelled, scored rows (``approved``, ``p_approve``).

    Returns:
        Metrics (rows, rates, ECE with its p-value, the reference's ECE, both reliability
        tables, every tested segment) and the alerts.
    """
    if len(rows) < settings.min_rows:
        return {"rows": len(rows), "status": "too_few_rows"}, []
    y = rows["approved"].to_numpy(dtype=bool).astype(np.float64)
    p = rows["p_approve"].to_numpy(dtype=np.float64)
    payments = rows["payment_id"].to_numpy(dtype=object)
    ece, ece_p = ece_consistency(y, p, settings.ece_resamples, settings.seed)
    margin = settings.margin * settings.calibration_gap
    tests = _tests(np.full(len(rows), "all", dtype=object), y, p, payments, 1, "all", margin)
    for dimension in DIMENSIONS:
        keys = np.array([segment_name(**{dimension: str(v)}) for v in rows[dimension]])
        tests += _tests(keys, y, p, payments, settings.min_segment_rows, dimension, margin)
    q_values_by_family(tests)
    alerts = [
        Alert("calibration", t["segment"], t["gap"], settings.calibration_gap)
        for t in tests
        if t["q_value"] <= settings.fdr and abs(t["gap"]) >= settings.calibration_gap
    ]
    limit = reference.ece + settings.ece_increase
    if ece >= limit and ece_p <= settings.fdr:
        alerts.append(Alert("ece", "all", ece, limit))
    return {
        "rows": len(rows),
        "observed_rate": float(y.mean()),
        "predicted_rate": float(p.mean()),
        "ece": ece,
        "ece_p_value": ece_p,
        "reference_ece": reference.ece,
        "reliability": metrics.reliability_table(y, p),
        "reference_reliability": reference.reliability,
        "segments": tests,
    }, alerts


def _tests(
    keys: np.ndarray, y: np.ndarray, p: np.ndarray, payments: np.ndarray, min_rows: int,
    dimension: str, margin: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """The calibration test of every segment with at least ``min_rows`` rows: is the gap
    between observed and predicted approval rate beyond ``margin``?"""
    sums = segment_sums(keys, y, p, payments)
    sums = sums[sums["n"] >= min_rows]
    gap = (sums["observed"] - sums["expected"]).to_numpy()
    variance = sums["variance"].to_numpy()
    z, _, _ = z_test(gap, variance)
    p_values = beyond_margin(gap, margin * sums["n"].to_numpy(), variance, drop=False)
    return [
        {"segment": str(key), "dimension": dimension, "rows": int(n), "observed": float(o / n),
         "predicted": float(e / n),
         "gap": float((o - e) / n), "z": float(zi), "p_value": float(pv)}
        for key, n, o, e, zi, pv in zip(sums.index, sums["n"], sums["observed"],
                                         sums["expected"], z, p_values, strict=True)
    ]  # fmt: skip
