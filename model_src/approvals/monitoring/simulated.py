"""Incidents planted in a simulated month of decision log: the monitor's proving ground.

:func:`decision_log` turns simulated attempts (``approvals.simulate``: first tries and the
static retries, outcomes drawn from the true probabilities) into the decision log a service
running ``package`` would have written: payments assigned to arms by the service's hash
(:mod:`approvals.experiments.assignment`), ``p_approve`` the model's answer from its feature
state plus the outcomes seen since (null for holdout), the feature vector in ``feature_<name>``
columns. The injectors change attempts from an onset on, before the log is scored, so the
model reacts to an incident through its features as it would live:

- :func:`issuer_falls`: a share of an issuer country's approvals become declines (05);
- :func:`merchant_amounts_shift`: a merchant's amounts are multiplied (outcomes unchanged);
- :func:`route_outage`: attempts on a route are declined 96 with a probability, for hours;
- :func:`stale_feature`: a logged feature is served a default on a share of rows (skew).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from approvals.experiments.assignment import assign
from approvals.model.package import ModelPackage
from approvals.model.predict import feature_matrix
from approvals.monitoring.skew import FEATURE_PREFIX

__all__ = [
    "decision_log", "issuer_falls", "merchant_amounts_shift", "route_outage", "stale_feature",
]  # fmt: skip

SHARES = {"champion": 0.95, "holdout": 0.05}


def decision_log(
    attempts: pd.DataFrame,
    package: ModelPackage,
    *,
    shares: Mapping[str, float] = SHARES,
    seed: int = 0,
    features: bool = True,
) -> pd.DataFrame:
    """The decision log of ``attempts`` (labelled, after the package's training) as served.

    Holdout rows keep a null ``p_approve`` and, like every row, their logged features.
    """
    rows = attempts.sort_values("event_time", kind="stable").reset_index(drop=True)
    x = feature_matrix(package, rows, rows)
    p = package.predict(x)
    arm = assign(rows["payment_id"], shares, salt=f"monitor-sim-{seed}")
    holdout = arm == "holdout"
    log = rows.assign(
        p_approve=np.where(holdout, np.nan, p),
        variant=arm,
        model_version=np.where(holdout, np.array(None, dtype=object), package.model_version),
        decided_at=rows["event_time"],
    )
    if not features:
        return log
    logged = pd.DataFrame(x, columns=[FEATURE_PREFIX + n for n in package.spec.names])
    return pd.concat([log, logged], axis=1)


def _after(
    frame: pd.DataFrame, onset: datetime, hours: float | None = None, column: str = "event_time"
) -> np.ndarray:
    """Rows of ``frame`` at or after ``onset`` (and within ``hours`` of it), by ``column``."""
    t = frame[column]
    at = pd.Timestamp(onset)
    at = at.tz_convert(None) if at.tzinfo is not None else at
    if isinstance(t.dtype, pd.DatetimeTZDtype):
        t = t.dt.tz_convert(None)
    inside = (t >= at).to_numpy().copy()
    if hours is not None:
        inside &= (t < at + timedelta(hours=hours)).to_numpy()
    return inside


def _decline(attempts: pd.DataFrame, rows: np.ndarray, code: str) -> pd.DataFrame:
    out = attempts.copy()
    out.loc[rows, "approved"] = False
    out.loc[rows, "response_code"] = code
    return out


def issuer_falls(
    attempts: pd.DataFrame, issuer_country: str, onset: datetime, share: float, seed: int
) -> pd.DataFrame:
    """From ``onset`` on, ``share`` of the approvals of cards issued in ``issuer_country``
    become declines with code 05 (an issuer tightening its risk rules)."""
    rng = np.random.default_rng(seed)
    hit = _after(attempts, onset) & (attempts["issuer_country"] == issuer_country).to_numpy()
    hit &= attempts["approved"].to_numpy(dtype=bool) & (rng.random(len(attempts)) < share)
    return _decline(attempts, hit, "05")


def merchant_amounts_shift(
    attempts: pd.DataFrame, merchant_id: str, onset: datetime, factor: float
) -> pd.DataFrame:
    """From ``onset`` on, the amounts of ``merchant_id`` are ``factor`` times larger (a new
    product line, a currency mix-up); outcomes stay as drawn."""
    hit = _after(attempts, onset) & (attempts["merchant_id"] == merchant_id).to_numpy()
    out = attempts.copy()
    out.loc[hit, "amount"] = (out.loc[hit, "amount"] * factor).round(2)
    return out


def route_outage(
    attempts: pd.DataFrame, route_id: str, onset: datetime, hours: float, severity: float,
    seed: int,
) -> pd.DataFrame:  # fmt: skip
    """For ``hours`` from ``onset``, each attempt sent through ``route_id`` is declined with
    code 96 (system malfunction) with probability ``severity``."""
    rng = np.random.default_rng(seed)
    hit = _after(attempts, onset, hours) & (attempts["route_id"] == route_id).to_numpy()
    hit &= rng.random(len(attempts)) < severity
    return _decline(attempts, hit, "96")


def stale_feature(
    log: pd.DataFrame, feature: str, onset: datetime, share: float, value: float, seed: int
) -> pd.DataFrame:
    """From ``onset`` on, the logged ``feature`` holds ``value`` on ``share`` of the rows (a
    serving cache answering a default), while the model's own inputs stay right."""
    rng = np.random.default_rng(seed)
    hit = _after(log, onset, column="decided_at") & (rng.random(len(log)) < share)
    out = log.copy()
    out.loc[hit, FEATURE_PREFIX + feature] = value
    return out
