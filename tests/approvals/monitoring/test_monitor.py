"""The monitor on simulated logs: clean days stay quiet, planted incidents alert where they are."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from approvals.errors import UserError
from approvals.monitoring import simulated
from approvals.monitoring.monitor import monitor_window, recompute_features, select_window
from approvals.monitoring.skew import FEATURE_PREFIX
from tests.approvals.monitoring.conftest import Monitored, served, window

FIRST_DAYS = 3  # incidents are planted in the first days only: less to score


def _report(m: Monitored, log: pd.DataFrame, recomputed: np.ndarray | None, day: int) -> dict:
    start, end = m.day(day)
    inside = window(log, start, end)
    reference = m.package.reference()
    assert reference is not None
    return monitor_window(
        log[inside].reset_index(drop=True), reference,
        model_version=m.package.model_version, feature_names=m.package.spec.names,
        recomputed=None if recomputed is None else recomputed[inside], start=start, end=end,
    )  # fmt: skip


def _planted(
    m: Monitored, plant: Callable[[pd.DataFrame], pd.DataFrame]
) -> tuple[pd.DataFrame, np.ndarray]:
    head = m.month[m.month["event_time"] < np.datetime64(m.t0 + timedelta(days=FIRST_DAYS))]
    log = served(plant(head.reset_index(drop=True)), m.package)
    return log, recompute_features(m.package, log, log)


def _segments(report: dict, kind: str) -> set[str]:
    return {a["segment"] for a in report["alerts"] if a["kind"] == kind}


@pytest.mark.parametrize("day", [0, 4, 9])
def test_a_clean_day_raises_no_alert(monitored: Monitored, day: int) -> None:
    # given a day of the log as simulated, with logged features
    report = _report(monitored, monitored.log, monitored.recomputed, day)
    # then nothing alerts, though everything was measured
    assert report["alerts"] == [], report["alerts"]
    metrics = report["metrics"]
    assert metrics["window"]["rows"] > 800 and metrics["window"]["scored"] > 700
    assert metrics["skew"]["status"] == "checked" and metrics["skew"]["mismatched"] == {}
    assert metrics["feature_drift"]["source"] == "logged"
    assert metrics["calibration"]["ece"] < 0.05 and metrics["approval_rate"]["tested"] > 10
    assert metrics["prediction_drift"]["status"] in {"ok", "warn"}


def test_a_route_outage_alerts_on_the_route_and_its_issuers(monitored: Monitored) -> None:
    # given 12 hours of 85% 96-declines on the busiest route, from the start of day 1
    route = monitored.month["route_id"].value_counts().index[0]
    onset = monitored.t0 + timedelta(days=1, hours=6)
    log, recomputed = _planted(monitored, lambda a: simulated.route_outage(
        a, route, onset, 12.0, 0.85, seed=1))  # fmt: skip
    # when day 1 is monitored
    report = _report(monitored, log, recomputed, 1)
    rates = _segments(report, "approval_rate")
    # then the route alerts, and so does at least one issuer on it; no other route does
    assert f"route_id={route}" in rates, report["alerts"]
    assert any(s.endswith(f"route_id={route}") and s.startswith("issuer_country=") for s in rates)
    assert all(route in s for s in rates if "route_id=" in s), rates
    drops = {a["segment"]: a for a in report["alerts"] if a["kind"] == "approval_rate"}
    alert = drops[f"route_id={route}"]
    assert alert["value"] <= alert["threshold"] < 0, "a drop below the threshold"
    # and the day before the onset stays quiet
    assert _report(monitored, log, recomputed, 0)["alerts"] == []


def test_an_issuer_whose_approvals_fall_alerts_on_that_issuer(monitored: Monitored) -> None:
    # given an issuer country whose approvals turn into declines (40%) from day 1
    issuer = monitored.month["issuer_country"].value_counts().index[1]
    onset = monitored.t0 + timedelta(days=1)
    log, recomputed = _planted(monitored, lambda a: simulated.issuer_falls(
        a, issuer, onset, 0.4, seed=2))  # fmt: skip
    report = _report(monitored, log, recomputed, 1)
    # then its approval rate alerts, and it is observed below what the model predicted
    assert f"issuer_country={issuer}" in _segments(report, "approval_rate"), report["alerts"]
    assert f"issuer_country={issuer}" in _segments(report, "calibration")
    flagged = _segments(report, "approval_rate") | _segments(report, "calibration")
    assert all(f"issuer_country={issuer}" in s or "issuer_country=" not in s for s in flagged)


def test_a_merchant_whose_amounts_shift_alerts_on_that_merchant_only(monitored: Monitored) -> None:
    merchant = str(monitored.month["merchant_id"].value_counts().index[2])
    onset = monitored.t0 + timedelta(days=1)
    log, recomputed = _planted(monitored, lambda a: simulated.merchant_amounts_shift(
        a, merchant, onset, 3.0))  # fmt: skip
    report = _report(monitored, log, recomputed, 1)
    assert _segments(report, "segment_drift") == {f"merchant_id={merchant},column=amount"}
    tested = report["metrics"]["segment_drift"]
    assert tested["tested"] > 3 and tested["merchants"][merchant]["psi"] > 0.25


def test_a_stale_logged_feature_is_skew_on_that_feature_only(monitored: Monitored) -> None:
    onset = monitored.t0 + timedelta(days=4)
    log = simulated.stale_feature(monitored.log, "bin_route_24h_rate", onset, 0.3, 0.5, seed=3)
    report = _report(monitored, log, monitored.recomputed, 4)
    assert _segments(report, "skew") == {"feature=bin_route_24h_rate"}, report["alerts"]
    share = report["metrics"]["skew"]["mismatched"]["bin_route_24h_rate"]["share"]
    assert 0.2 < share < 0.4


def test_a_feature_store_that_stops_answering_alerts_on_missing_values(
    monitored: Monitored,
) -> None:
    # given logged vectors where half the rows lost a feature the reference always had
    log = monitored.log.copy()
    lost = np.random.default_rng(4).random(len(log)) < 0.5
    log.loc[lost, FEATURE_PREFIX + "bin_24h_rate"] = np.nan
    report = _report(monitored, log, None, 5)
    assert _segments(report, "missing_values") == {"feature=bin_24h_rate"}
    assert report["metrics"]["skew"]["status"] == "skipped"


def test_without_logged_features_drift_uses_recomputed_ones_and_skew_says_why(
    monitored: Monitored,
) -> None:
    logged = [c for c in monitored.log.columns if str(c).startswith(FEATURE_PREFIX)]
    log = monitored.log.drop(columns=logged)
    report = _report(monitored, log, monitored.recomputed, 2)
    assert report["metrics"]["feature_drift"]["source"] == "recomputed"
    assert report["metrics"]["skew"] == {
        "status": "skipped",
        "reason": "the log has no feature_<name> columns",
    }
    assert report["alerts"] == []


def test_another_models_answers_are_refused_naming_the_column(monitored: Monitored) -> None:
    log = monitored.log.assign(model_version="some-other-model")
    with pytest.raises(UserError, match="model_version"):
        _report(monitored, log, None, 0)


def test_a_tiny_window_is_measured_without_alerts_or_errors(monitored: Monitored) -> None:
    start = monitored.t0 + timedelta(days=3)
    rows = select_window(monitored.log, start, start + timedelta(minutes=20))
    report = monitor_window(
        rows, monitored.package.reference(),  # type: ignore[arg-type]
        model_version=monitored.package.model_version,
        feature_names=monitored.package.spec.names,
    )  # fmt: skip
    assert 0 < report["metrics"]["window"]["rows"] < 100
    assert report["metrics"]["prediction_drift"]["status"] == "too_few_rows"
    assert report["metrics"]["calibration"]["status"] == "too_few_rows"
    assert report["alerts"] == []
