"""The incident injectors change what they claim, from their onset, and nothing else."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from approvals.monitoring import simulated
from approvals.monitoring.skew import FEATURE_PREFIX
from tests.approvals.monitoring.conftest import Monitored


def _after(frame: pd.DataFrame, monitored: Monitored, days: float, column: str = "event_time"):  # type: ignore[no-untyped-def]
    return (frame[column] >= np.datetime64(monitored.t0 + timedelta(days=days))).to_numpy()


def test_a_route_outage_declines_that_route_for_its_hours_only(monitored: Monitored) -> None:
    month = monitored.month
    route = month["route_id"].value_counts().index[0]
    onset = monitored.t0 + timedelta(days=2)
    out = simulated.route_outage(month, route, onset, 6.0, 0.8, seed=0)
    t = month["event_time"]
    inside = ((t >= np.datetime64(onset)) & (t < np.datetime64(onset + timedelta(hours=6)))
              & (month["route_id"] == route)).to_numpy()  # fmt: skip
    changed = (out["approved"] != month["approved"]).to_numpy()
    assert changed.any() and not changed[~inside].any(), "only the route, only in its hours"
    assert (out.loc[changed, "response_code"] == "96").all()
    approved_before = month.loc[inside, "approved"].mean()
    assert out.loc[inside, "approved"].mean() < 0.35 * approved_before + 0.05


def test_an_issuer_falling_turns_its_approvals_into_05(monitored: Monitored) -> None:
    month = monitored.month
    out = simulated.issuer_falls(month, "US", monitored.t0 + timedelta(days=1), 0.5, seed=0)
    mine = (month["issuer_country"] == "US").to_numpy() & _after(month, monitored, 1)
    changed = (out["approved"] != month["approved"]).to_numpy()
    assert not changed[~mine].any() and (out.loc[changed, "response_code"] == "05").all()
    assert 0.4 < changed[mine].sum() / month.loc[mine, "approved"].sum() < 0.6


def test_a_merchant_amount_shift_scales_its_amounts_only(monitored: Monitored) -> None:
    month = monitored.month
    merchant = month["merchant_id"].value_counts().index[0]
    out = simulated.merchant_amounts_shift(month, merchant, monitored.t0 + timedelta(days=1), 2.0)
    mine = (month["merchant_id"] == merchant).to_numpy() & _after(month, monitored, 1)
    np.testing.assert_allclose(out.loc[mine, "amount"], (month.loc[mine, "amount"] * 2).round(2))
    assert (out.loc[~mine, "amount"] == month.loc[~mine, "amount"]).all()
    assert (out["approved"] == month["approved"]).all(), "outcomes stay as drawn"


def test_the_served_log_has_the_models_answers_features_and_a_holdout(
    monitored: Monitored,
) -> None:
    log = monitored.log
    assert len(log) == len(monitored.month) and log["attempt_id"].is_unique
    holdout = (log["variant"] == "holdout").to_numpy()
    assert 0.02 < holdout.mean() < 0.08
    assert (
        log.loc[holdout, "p_approve"].isna().all() and log.loc[~holdout, "p_approve"].notna().all()
    )
    assert set(log.loc[~holdout, "model_version"]) == {monitored.package.model_version}
    logged = log[[FEATURE_PREFIX + n for n in monitored.package.spec.names]].to_numpy(float)
    np.testing.assert_array_equal(np.isnan(logged), np.isnan(monitored.recomputed))
    np.testing.assert_allclose(logged, monitored.recomputed, rtol=0, atol=0, equal_nan=True,
                               err_msg="the monitor's recomputation is the scoring's")  # fmt: skip


def test_a_stale_feature_changes_the_logged_column_only(monitored: Monitored) -> None:
    log = monitored.log
    out = simulated.stale_feature(log, "bin_24h_rate", monitored.t0 + timedelta(days=3), 0.5,
                                  0.123, seed=0)  # fmt: skip
    column = FEATURE_PREFIX + "bin_24h_rate"
    changed = (out[column] != log[column]).to_numpy()
    assert not changed[~_after(log, monitored, 3, "decided_at")].any()
    assert (out.loc[changed, column] == 0.123).all()
    assert out.drop(columns=column).equals(log.drop(columns=column))
