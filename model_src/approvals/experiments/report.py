"""The experiment report: per arm approval rate and approved value, uplift with intervals, SRM.

Arms are the log's ``variant`` values; the unit is the payment (what arms are assigned by), so
a payment logged in two arms is a broken assignment: it is counted and left out. Money is the
sum of approved ``amount`` in the log's currency (convert upstream, as for the costs config).
Uplift is measured against ``holdout`` (the whole system's uplift) and against ``champion``
(the challenger's), each a difference of CUPED-adjusted delta-method estimates
(:mod:`approvals.experiments.stats`) with a normal 95% interval.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from approvals.atomic import atomic_file
from approvals.errors import UserError
from approvals.experiments.stats import Arm, arm_estimates, compare, sample_ratio

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CONTROLS", "METRICS", "experiment_report", "parse_shares", "write_report"]

CONTROLS = ("holdout", "champion")  # what every other arm is compared with, when present
METRICS = {
    "approval_rate": "approved attempts / attempts",
    "payment_approval_rate": "payments with an approved attempt / payments",
    "approved_value": "approved amount per payment",
}
PRIOR_STRENGTH = 20.0  # pseudo-attempts shrinking a BIN's pre-period rate toward the global one


def parse_shares(text: str) -> dict[str, float]:
    """``champion=0.45,challenger=0.45,holdout=0.10`` as a mapping (any positive weights).

    Raises:
        UserError: naming the item that is not ``arm=share`` with a share >= 0.
    """
    shares: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not name.strip() or not math.isfinite(share) or share < 0 or name.strip() in shares:
            raise UserError(f"--shares: '{item}' is not arm=share (a number >= 0, each arm once)")
        shares[name.strip()] = share
    if not shares or sum(shares.values()) <= 0:
        raise UserError("--shares: give at least one arm with a share above 0")
    return shares


def experiment_report(
    log: pd.DataFrame,
    *,
    shares: Mapping[str, float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    pre: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Compare the arms of a validated decision log (:func:`approvals.experiments.read_log`).

    Args:
        log: the decision log.
        shares: the configured share of each arm (default: the observed arms equal).
        start, end: the experiment's period by ``decided_at`` (naive UTC); labelled rows before
            ``start`` are its pre-period.
        pre: more pre-period attempts with labels (e.g. the training data).

    Raises:
        UserError: no labelled attempt in the period, or an observed arm without a share.
    """
    period = log
    if start is not None:
        period = period[period["decided_at"] >= np.datetime64(start)]
    if end is not None:
        period = period[period["decided_at"] < np.datetime64(end)]
    before = log[log["decided_at"] < np.datetime64(start)] if start is not None else log.iloc[:0]
    crossed = _crossed(period)
    period = period[~period["payment_id"].isin(crossed)]
    labelled = period[period["approved"].notna()]
    if labelled.empty:
        raise UserError("no labelled attempt in the period: report outcomes first (or widen it)")
    arms_seen = sorted(period["variant"].unique().tolist())
    if shares is not None and (missing := [a for a in arms_seen if a not in shares]):
        raise UserError(f"--shares has no share for arm(s) {', '.join(missing)} found in the log")
    units = _units(labelled, _pre_rates(before, pre))
    estimates = {m: arm_estimates(*_metric(units, m), units["covariates"][m]) for m in METRICS}
    return {
        "period": {
            "start": _iso(period["decided_at"].min()),
            "end": _iso(period["decided_at"].max()),
        },
        "arms": _arms(period, labelled, units, estimates),
        "uplift": _uplift(estimates, arms_seen),
        "srm": sample_ratio(
            {str(k): int(v) for k, v in period.groupby("variant")["payment_id"].nunique().items()},
            shares or dict.fromkeys(arms_seen, 1.0),
        ),
        "assignment": {"payments_in_several_arms": len(crossed)},
        "method": _method(units),
    }


def _crossed(period: pd.DataFrame) -> set[str]:
    arms = period.groupby("payment_id")["variant"].nunique()
    return set(arms.index[arms > 1].tolist())


def _pre_rates(before: pd.DataFrame, pre: pd.DataFrame | None) -> tuple[pd.Series, float] | None:
    """Each BIN's pre-period approval rate, shrunk toward the pre-period's global rate."""
    import pandas as pd

    parts = [before.loc[before["approved"].notna(), ["card_bin", "approved"]]]
    if pre is not None:
        parts.append(pre[["card_bin", "approved"]])
    rows = pd.concat(parts, ignore_index=True)
    if rows.empty:
        return None
    approved = rows["approved"].astype(float)
    overall = float(approved.mean())
    by_bin = approved.groupby(rows["card_bin"]).agg(["sum", "count"])
    rates = (by_bin["sum"] + PRIOR_STRENGTH * overall) / (by_bin["count"] + PRIOR_STRENGTH)
    return rates, overall


def _units(labelled: pd.DataFrame, pre_rates: tuple[pd.Series, float] | None) -> dict[str, Any]:
    """Per payment: arm, attempts, approved attempts, approved value, and the covariates."""
    frame = labelled.assign(
        won=labelled["approved"].astype(bool),
        value=labelled["amount"] * labelled["approved"].astype(bool),
    ).sort_values(["payment_id", "attempt_number", "event_time"], kind="stable")
    grouped = frame.groupby("payment_id", sort=False)
    per = grouped.agg(
        arm=("variant", "first"), attempts=("won", "size"), approved=("won", "sum"),
        value=("value", "sum"), amount=("amount", "first"), card_bin=("card_bin", "first"),
    )  # fmt: skip
    amount = per["amount"].to_numpy(dtype=float)
    rate_cov, value_cov = [np.log1p(amount)], [amount]
    if pre_rates is not None:
        by_bin, overall = pre_rates
        rate = per["card_bin"].map(by_bin).fillna(overall).to_numpy(dtype=float)
        rate_cov.append(rate)
        value_cov.append(rate * amount)
    rates, values = np.column_stack(rate_cov), np.column_stack(value_cov)
    return {
        "arm": per["arm"].to_numpy(dtype=object),
        "attempts": per["attempts"].to_numpy(dtype=float),
        "approved": per["approved"].to_numpy(dtype=float),
        "value": per["value"].to_numpy(dtype=float),
        "covariates": {
            "approval_rate": rates,
            "payment_approval_rate": rates,
            "approved_value": values,
        },
        "pre_period": pre_rates is not None,
    }


def _metric(units: Mapping[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ones = np.ones(len(units["arm"]))
    if metric == "approval_rate":
        return units["approved"], units["attempts"], units["arm"]
    if metric == "payment_approval_rate":
        return (units["approved"] > 0).astype(float), ones, units["arm"]
    return units["value"], ones, units["arm"]


def _arms(
    period: pd.DataFrame, labelled: pd.DataFrame, units: Mapping[str, Any],
    estimates: Mapping[str, Mapping[str, Arm]],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(period["variant"].unique().tolist()):
        rows = labelled[labelled["variant"] == name]
        won = rows["approved"].astype(bool)
        mine = units["arm"] == name
        payments = int(mine.sum())
        out[name] = {
            "attempts": len(rows),
            "payments": payments,
            "unlabelled_attempts": int((period["variant"] == name).sum() - len(rows)),
            "approved": int(won.sum()),
            "approval_rate": _num(won.mean()) if len(rows) else None,
            "payment_approval_rate": _num((units["approved"][mine] > 0).mean())
            if payments
            else None,
            "approved_value": _num(float(rows["amount"][won].sum())),
            "approved_value_per_payment": _num(units["value"][mine].mean()) if payments else None,
        }
        out[name]["adjusted"] = {
            metric: _num(by_arm[name].adjusted)
            for metric, by_arm in estimates.items()
            if name in by_arm
        }
    return out


def _uplift(estimates: Mapping[str, Mapping[str, Arm]], arms: list[str]) -> list[dict[str, Any]]:
    controls = [c for c in CONTROLS if c in arms] or arms[:1]
    pairs = [
        (arm, versus) for versus in controls for arm in arms
        if arm != versus and not (versus == "champion" and arm in CONTROLS)
    ]  # fmt: skip
    out = []
    for arm, versus in pairs:
        for metric, by_arm in estimates.items():
            if arm not in by_arm or versus not in by_arm:
                continue
            c = compare(by_arm[arm], by_arm[versus])
            out.append({
                "arm": arm, "versus": versus, "metric": metric, "estimate": _num(c.estimate),
                "ci95": [_num(c.ci95[0]), _num(c.ci95[1])], "se": _num(c.se),
                "p_value": _num(c.p_value), "significant": bool(c.p_value < 0.05),
                "relative": _num(c.relative),
                "relative_ci95": [_num(v) for v in c.relative_ci95] if c.relative_ci95 else None,
                "variance_reduction": _num(c.variance_reduction),
            })  # fmt: skip
    return out


def _method(units: Mapping[str, Any]) -> dict[str, Any]:
    covariates = ["log(1 + amount) of the payment", "amount of the payment (approved_value)"]
    if units["pre_period"]:
        covariates.append("pre-period approval rate of the card's BIN (and x amount)")
    return {
        "unit": "payment_id (every attempt of a payment is in its arm)",
        "estimator": "difference of ratio metrics, delta method over payments",
        "variance_reduction": "CUPED: pooled least squares on pre-treatment covariates",
        "covariates": covariates,
        "interval": "normal, 95%",
        "srm": "Pearson chi-square on payments per arm, flagged below p = 0.001",
        "metrics": METRICS,
    }


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _iso(value: Any) -> str | None:
    import pandas as pd

    return None if pd.isna(value) else pd.Timestamp(value).isoformat()


def write_report(report: Mapping[str, Any], out: str | os.PathLike[str]) -> list[Path]:
    """Write ``report.json`` and ``uplift.png`` into ``out`` (each replaced atomically).

    Returns:
        The paths written.
    """
    from approvals.experiments.plots import uplift_plot

    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "report.json"
    with atomic_file(target) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return [target, uplift_plot(report, directory / "uplift.png")]
