"""Drift of a window against the training reference: features, inputs, predictions, merchants.

A distribution is compared through its reference bins (:class:`approvals.model.reference.Bins`)
by the PSI. It warns at 0.1 and alerts at 0.25 (the usual convention), or higher where the
reference itself moved more than that between chunks as long as the window (mean + 3 sd of the
chunks' PSI, NannyML's rule), plus the extra small-sample noise of a window with fewer rows
than those chunks. An alert also needs evidence: a chi-square test of the window's histogram
against the reference's, divided by the column's own overdispersion between reference chunks
(scaled to the window's rows), with q-values over the columns of the window, at most ``fdr``.
Only what describes the traffic alerts: contract inputs, predictions and attempt-level
features; history and calendar features are measured and reported (see
:func:`approvals.model.reference.feature_group`). A merchant's amounts are compared with its
own reference quintiles by a chi-square test (q-values over merchants) and the PSI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from approvals.model.reference import Bins, TrainingReference, psi
from approvals.monitoring.alerts import Alert, segment_name
from approvals.monitoring.settings import MonitorSettings
from approvals.monitoring.stats import benjamini_hochberg, histogram_test, z_test

__all__ = ["column_drift", "drift_family", "merchant_amount_drift", "missing_values", "thresholds"]

ALERTING_GROUPS = frozenset({"attempt", "input", "prediction"})


def thresholds(
    bins: Bins, rows: int, hours: float, settings: MonitorSettings
) -> tuple[float, float]:
    """The (warn, alert) PSI of a window of ``rows`` rows spanning ``hours``."""
    chunk = bins.chunk_stats(hours)
    if chunk is None:  # a reference without chunks: the convention plus the iid noise
        noise = (bins.size - 1) / rows
        return settings.psi_warn + noise, settings.psi_alert + noise
    noise = (bins.size - 1) * max(0.0, 1 / rows - 1 / chunk.rows)
    warn = chunk.mean + settings.chunk_sigmas_warn * chunk.std + noise
    alert = chunk.mean + settings.chunk_sigmas_alert * chunk.std + noise
    return max(settings.psi_warn, warn), max(settings.psi_alert, alert)


def column_drift(
    bins: Bins, values: np.ndarray, row_hours: np.ndarray | None, hours: float,
    settings: MonitorSettings,
) -> dict[str, Any]:  # fmt: skip
    """PSI of one column of the window against its reference matched to the rows' UTC hours
    of day (``row_hours``, 0-23), its thresholds, its status by the PSI alone (ok, warn, alert)
    and the p-value of its overdispersed chi-square test."""
    rows = len(values)
    if rows < settings.min_rows:
        return {"rows": rows, "psi": None, "status": "too_few_rows"}
    hist = bins.histogram(values)
    reference = bins.matched(row_hours)
    value = psi(reference, hist)
    warn, alert = thresholds(bins, rows, hours, settings)
    status = "alert" if value >= alert else "warn" if value >= warn else "ok"
    chunk = bins.chunk_stats(hours)
    dispersion = 1.0 if chunk is None else 1 + (chunk.dispersion - 1) * rows / chunk.rows
    _, p_value = histogram_test(reference, hist, dispersion)
    return {"rows": rows, "psi": value, "warn": warn, "alert": alert, "status": status,
            "dispersion": dispersion, "p_value": p_value}  # fmt: skip


def drift_family(
    kind: str,
    reference: Mapping[str, Bins],
    columns: Mapping[str, np.ndarray],
    groups: Mapping[str, str],
    row_hours: np.ndarray | None,
    hours: float,
    settings: MonitorSettings,
) -> tuple[dict[str, Any], list[Alert]]:
    """:func:`column_drift` of every column the reference has, and the alerts of those whose
    group alerts (q-values over those columns).

    Args:
        kind: the alerts' kind; their segment is ``feature=<name>`` or ``input=<name>``.
        reference: the reference bins by column name.
        columns: the window's values by column name (missing columns are reported missing).
        groups: each column's group (``attempt``, ``history``, ``calendar``, ``input``).
        row_hours: the UTC hour of day of each row of ``columns``.
        hours: the window's length.
    """
    prefix = "input" if kind == "input_drift" else "feature"
    out: dict[str, Any] = {}
    for name, bins in reference.items():
        if name not in columns:
            out[name] = {"status": "absent"}
            continue
        result = column_drift(bins, columns[name], row_hours, hours, settings)
        result["group"] = groups.get(name, "input")
        result["alerting"] = result["group"] in ALERTING_GROUPS
        out[name] = result
    tested = [n for n, r in out.items() if r.get("alerting") and r.get("psi") is not None]
    q = benjamini_hochberg(np.array([out[n]["p_value"] for n in tested]))
    alerts = []
    for name, q_value in zip(tested, q, strict=True):
        result = out[name]
        result["q_value"] = float(q_value)
        if result["status"] == "alert" and q_value <= settings.fdr:
            alerts.append(Alert(kind, f"{prefix}={name}", result["psi"], result["alert"]))
    return out, alerts


def missing_values(
    reference: Mapping[str, Bins], columns: Mapping[str, np.ndarray], settings: MonitorSettings
) -> tuple[dict[str, Any], list[Alert]]:
    """Features missing (NaN) for more rows than in the reference: the signature of a feature
    store that stopped answering. One-sided test per feature, q-values over the features."""
    tested: dict[str, dict[str, Any]] = {}
    for name, bins in reference.items():
        values = np.asarray(columns.get(name, []), dtype=np.float64)
        if values.size < settings.min_rows:
            continue
        share = bins.counts[-1] / sum(bins.counts)
        n, missing = values.size, int(np.isnan(values).sum())
        variance = n * share * (1 - share) * (1 + n / sum(bins.counts))
        _, _, below = z_test(np.array([missing - n * share]), np.array([variance]))
        tested[name] = {"window": missing / n, "reference": share, "p_value": float(1 - below[0])}
    q = benjamini_hochberg(np.array([t["p_value"] for t in tested.values()]))
    alerts = []
    for (name, result), q_value in zip(tested.items(), q, strict=True):
        result["q_value"] = float(q_value)
        increase = result["window"] - result["reference"]
        if increase >= settings.missing_increase and q_value <= settings.fdr:
            alerts.append(Alert("missing_values", f"feature={name}", increase,
                                settings.missing_increase))  # fmt: skip
    changed = {k: v for k, v in tested.items() if v["window"] > 0 or v["reference"] > 0}
    return {"tested": len(tested), "features": changed}, alerts


def merchant_amount_drift(
    reference: TrainingReference,
    merchants: np.ndarray,
    amounts: np.ndarray,
    settings: MonitorSettings,
) -> tuple[dict[str, Any], list[Alert]]:
    """Each merchant's amounts in the window (one per payment) against its reference quintiles.

    A merchant alerts when its chi-square q-value (over the merchants tested) is at most
    ``fdr`` and its PSI at least ``segment_psi``; merchants with fewer than
    ``min_segment_rows`` payments, or without a reference, are counted, not tested.
    """
    order = np.argsort(merchants, kind="stable")
    names, starts = np.unique(merchants[order], return_index=True)
    groups = np.split(amounts[order], starts[1:]) if names.size else []
    tested: dict[str, dict[str, Any]] = {}
    untested = 0
    for name, values in zip(names.tolist(), groups, strict=True):
        bins = reference.merchant_amounts.get(str(name))
        if bins is None or values.size < settings.min_segment_rows:
            untested += int(values.size)
            continue
        hist = bins.histogram(values)
        _, p_value = histogram_test(np.asarray(bins.counts), hist)
        tested[str(name)] = {"rows": int(values.size), "psi": psi(bins.counts, hist),
                             "p_value": p_value}  # fmt: skip
    q = benjamini_hochberg(np.array([t["p_value"] for t in tested.values()]))
    alerts = []
    for (name, result), q_value in zip(tested.items(), q, strict=True):
        result["q_value"] = float(q_value)
        if q_value <= settings.fdr and result["psi"] >= settings.segment_psi:
            segment = segment_name(merchant_id=name, column="amount")
            alerts.append(Alert("segment_drift", segment, result["psi"], settings.segment_psi))
    return {"tested": len(tested), "untested_rows": untested, "merchants": tested}, alerts
