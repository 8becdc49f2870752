"""What an alert of the monitoring benchmark is: the incident's, confirmed by the simulator's
truth, or false (``bench/monitoring.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

NATURAL_SHARE = 0.03  # share of a segment's attempts the simulator's outages declined
NATURAL_ROUTE = 0.15  # a route's natural outage this large in a window should alert
ECE_MARGIN = 0.01  # an ECE alert is true when the answers' ECE against the truth is this near
OWN_SHARE = 0.1  # a segment with this share of the incident's rows may be the incident's
TRAFFIC_KINDS = ("approval_rate", "calibration")
RETRY_COLUMNS = ("prev_code", "prev_class", "prev_outage", "attempt_number")
RETRY_CONTEXT = {f"{kind}={name}" for kind in ("feature", "input") for name in RETRY_COLUMNS}


def natural(month: pd.DataFrame, outages: pd.DataFrame) -> pd.Series:
    """Per attempt, the severity of the simulator's outage it fell in (0 outside any)."""
    t = month["event_time"]
    hit = np.zeros(len(month))
    for o in outages.to_dict("records"):
        begin, end = (pd.Timestamp(o[k]).tz_convert(None) for k in ("start_time", "end_time"))
        rows = ((t >= begin) & (t < end)).to_numpy().copy()
        if not rows.any():
            continue
        if isinstance(o["route_id"], str):
            rows &= (month["route_id"] == o["route_id"]).to_numpy()
        if o["card_bins"] is not None and len(o["card_bins"]):
            rows &= month["card_bin"].isin(list(o["card_bins"])).to_numpy()
        hit[rows] = np.maximum(hit[rows], float(o["severity"]))
    return pd.Series(hit, index=month["attempt_id"].to_numpy())


def rows_of(alert: dict, rows: pd.DataFrame) -> np.ndarray:
    """The window's rows of the alert's segment (``column=value`` pairs the log has)."""
    mask = np.ones(len(rows), dtype=bool)
    for part in alert["segment"].split(","):
        column, _, value = part.partition("=")
        if column in rows.columns:
            mask &= (rows[column].astype(str) == value).to_numpy()
    return mask


def confirmed(alert: dict, rows: pd.DataFrame, natural: pd.Series, truth: pd.Series) -> bool:
    """An alert the simulator's truth confirms: the segment's true approval probability fell
    by at least half the alerted drop, or the model's answers are off the true probabilities
    by at least half the calibration gap (for the ECE: their ECE against the true
    probabilities is within 0.01 of the threshold); or a drift of the retry context (the retries of
    outage declines) in a window whose attempts the simulator's outages hit."""
    mine = rows_of(alert, rows)
    if alert["kind"] == "ece":  # the ECE of the answers against the true probabilities
        model = rows["p_approve"].to_numpy()
        answered = ~np.isnan(model)
        true = truth.reindex(rows["attempt_id"][answered]).to_numpy()
        bins = np.minimum((model[answered] * 10).astype(int), 9)
        gap = np.abs(np.bincount(bins, model[answered] - true, 10)).sum() / answered.sum()
        return float(gap) >= alert["threshold"] - ECE_MARGIN
    if alert["segment"] in RETRY_CONTEXT:
        exposure = natural.reindex(rows["attempt_id"]).fillna(0.0)
        return float(exposure.mean()) >= NATURAL_SHARE
    if alert["kind"] not in TRAFFIC_KINDS or not mine.any():
        return False
    true = truth.reindex(rows["attempt_id"][mine]).to_numpy()
    if alert["kind"] == "approval_rate":
        reference = float(rows.loc[mine, "approved"].astype(float).mean()) - alert["value"]
        return float(np.mean(true)) - reference <= alert["value"] / 2
    model = rows.loc[mine, "p_approve"].to_numpy()
    answered = ~np.isnan(model)
    return abs(float(np.mean(model[answered] - true[answered]))) >= alert["threshold"] / 2


def own(
    alert: dict, onset: datetime, entity: str, rows: pd.DataFrame, start: datetime, hours: float,
    clean: set[tuple[str, str]],
) -> bool:  # fmt: skip
    """An alert of the incident, from the onset's window on: global, about its entity, or on
    a segment holding the entity's rows that did not alert in the same window of the clean
    log (``clean``: its alerts' kind and segment), such as a merchant whose cards the falling
    issuer issued."""
    if start + timedelta(hours=hours) <= onset:
        return False
    segment = alert["segment"]
    if segment == "all" or segment.startswith(("feature=", "input=")) or entity in segment:
        return True
    column, _, value = entity.partition("=")
    if (alert["kind"], segment) in clean or column not in rows.columns:
        return False
    theirs = rows_of(alert, rows) & (rows[column].astype(str) == value).to_numpy()
    return float(theirs.sum()) >= OWN_SHARE * float(rows_of(alert, rows).sum())


def natural_recall(rows: pd.DataFrame, natural: pd.Series, alerts: list[dict]) -> tuple[int, int]:
    """Routes of the window whose attempts the simulator's outages declined by at least
    ``NATURAL_ROUTE`` on average, and how many of them an alert named."""
    exposure = natural.reindex(rows["attempt_id"]).fillna(0.0).to_numpy()
    by_route = pd.DataFrame({"route": rows["route_id"], "e": exposure}).groupby("route")["e"]
    hit = by_route.mean()[(by_route.mean() >= NATURAL_ROUTE) & (by_route.size() >= 30)]
    named = {a["segment"] for a in alerts if a["kind"] in TRAFFIC_KINDS}
    found = sum(any(f"route_id={r}" in s for s in named) for r in hit.index)
    return found, len(hit)
