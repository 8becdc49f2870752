"""Approval-rate anomalies: an issuer, a route or an issuer on a route approving less than usual.

The outage signal. Each segment's approvals in the window are compared with what its training
rates give the same attempts: every attempt expects the reference rate of its segment at its
UTC hour of day, first try or retry (:class:`approvals.model.reference_rates.RateCells`), so a
night window or a burst of retries is not an incident. One-sided test that observed approvals
are more than half ``rate_drop`` below the expected ones, with the payment-clustered variance
plus the reference's own sampling variance; q-values by Benjamini-Hochberg within each
dimension (issuers, routes, pairs). A segment alerts when its q-value is at most ``fdr`` and
its rate is at least ``rate_drop`` below the expected one. The reference rather than the
model: the model learns an outage from its outcome features within minutes, so observed
against predicted goes quiet while the outage goes on (the calibration monitor makes that
comparison). The model's expected rate is reported beside each segment, for the person on
call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.model.reference import TrainingReference
from approvals.model.reference_rates import RATE_SEGMENTS, SEPARATOR, cells_of, segment_keys
from approvals.monitoring.alerts import Alert, segment_name
from approvals.monitoring.settings import MonitorSettings
from approvals.monitoring.stats import beyond_margin, q_values_by_family, segment_sums, z_test

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["approval_rates"]


def approval_rates(
    rows: pd.DataFrame, reference: TrainingReference, settings: MonitorSettings
) -> tuple[dict[str, Any], list[Alert]]:
    """Approval-rate metrics and alerts of the window's labelled rows (every arm: the rate is
    the traffic's, whoever answered).

    Returns:
        Metrics (per tested segment: rows, observed, expected-by-reference and model rates,
        z, p- and q-values; rows of segments too small or unknown to test) and the alerts.
    """
    y = rows["approved"].to_numpy(dtype=bool).astype(np.float64)
    p = rows["p_approve"].to_numpy(dtype=np.float64)
    cells = cells_of(rows["event_time"], rows["attempt_number"])
    payments = rows["payment_id"].to_numpy(dtype=object)
    tests: list[dict[str, Any]] = []
    untested = 0
    for dimension, columns in RATE_SEGMENTS.items():
        keys = segment_keys(rows, columns)
        known = reference.rates[dimension]
        expected = np.full(len(rows), np.nan)
        for key in np.unique(keys).tolist():
            mine = keys == key
            if key in known and known[key].attempts >= settings.min_segment_rows:
                expected[mine] = known[key].expected(cells[mine])
        tested = ~np.isnan(expected)
        sums = segment_sums(keys[tested], y[tested], expected[tested], payments[tested])
        small = sums["n"] < settings.min_segment_rows
        untested += int((~tested).sum() + sums.loc[small, "n"].sum())
        margin = settings.margin * settings.rate_drop
        tests += _tests(sums[~small], dimension, columns, known, keys, p, margin)
    q_values_by_family(tests)
    alerts = []
    for test in tests:
        gap = test["observed"] - test["reference"]
        if test["q_value"] <= settings.fdr and gap <= -settings.rate_drop:
            alerts.append(Alert("approval_rate", test["segment"], gap, -settings.rate_drop))
    return {"tested": len(tests), "untested_rows": untested, "segments": tests}, alerts


def _tests(
    sums: pd.DataFrame, dimension: str, columns: tuple[str, ...], known: dict[str, Any],
    keys: np.ndarray, p: np.ndarray, margin: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """The drop test of every segment of ``sums``: is its rate more than ``margin`` below?"""
    out = []
    for key, row in sums.iterrows():
        n = float(row["n"])
        reference_rate = row["expected"] / n
        # the reference rate is an estimate too: its variance over the segment's training rows
        extra = n**2 * reference_rate * (1 - reference_rate) / known[str(key)].attempts
        gap, variance = (
            np.array([row["observed"] - row["expected"]]),
            np.array([row["variance"] + extra]),
        )
        z, _, _ = z_test(gap, variance)
        low = beyond_margin(gap, np.array([margin * n]), variance, drop=True)
        answered = p[(keys == key) & ~np.isnan(p)]
        out.append({
            "segment": segment_name(**dict(zip(columns, str(key).split(SEPARATOR), strict=True))),
            "dimension": dimension, "rows": int(n), "observed": float(row["observed"] / n),
            "reference": float(reference_rate),
            "model": float(answered.mean()) if answered.size else None,
            "z": float(z[0]), "p_value": float(low[0]),
        })  # fmt: skip
    return out
