"""Tests for approvals.model.metrics: hand-computed values, sklearn agreement, segments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from approvals.model import metrics


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.02, 0.98, 4000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    return y, p


def test_log_loss_known_value() -> None:
    # given two rows at p=0.5 (one approved, one not)
    # when / then the loss is ln 2
    value = metrics.log_loss([1, 0], [0.5, 0.5])
    assert value == pytest.approx(math.log(2)), "log loss of coin flips must be ln 2"


def test_log_loss_clips_certain_mistakes() -> None:
    value = metrics.log_loss([1], [0.0])
    assert value == pytest.approx(-math.log(1e-6)), "p=0 on an approval is clipped to 1e-6"


def test_brier_known_value() -> None:
    value = metrics.brier([1, 0], [0.8, 0.4])
    assert value == pytest.approx((0.04 + 0.16) / 2), "Brier is the mean squared error"


def test_metrics_agree_with_sklearn(sample: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = sample
    assert metrics.log_loss(y, p) == pytest.approx(skm.log_loss(y, p)), "log loss vs sklearn"
    assert metrics.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p)), "Brier vs sklearn"
    assert metrics.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p)), "AUC vs sklearn"
    assert metrics.pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p)), "AP"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.floats(0, 1, allow_nan=False)), min_size=1, max_size=80)
)
def test_losses_equal_the_written_out_formulas(rows: list[tuple[bool, float]]) -> None:
    # given any labels and probabilities, one class included, certain mistakes included
    y = np.array([r[0] for r in rows], dtype=np.float64)
    p = np.array([r[1] for r in rows])
    # when / then the library's losses equal the definitions the reports have always used
    clipped = np.clip(p, metrics.EPS, 1 - metrics.EPS)
    expected = -np.mean(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))
    assert metrics.log_loss(y, p) == pytest.approx(expected, rel=1e-12, abs=1e-15), "log loss"
    assert metrics.brier(y, p) == pytest.approx(np.mean((p - y) ** 2), abs=1e-15), "Brier"


def test_losses_on_one_class_are_defined() -> None:
    assert metrics.log_loss([1, 1], [0.5, 0.25]) == pytest.approx(-(math.log(0.5 * 0.25)) / 2)
    assert metrics.log_loss([0, 0], [0.5, 0.5]) == pytest.approx(math.log(2)), "all declines"
    assert metrics.brier([0, 0], [0.5, 0.1]) == pytest.approx((0.25 + 0.01) / 2), "Brier"
    assert math.isnan(metrics.roc_auc([1, 1], [0.5, 0.2])), "ranking undefined: NaN as before"
    assert math.isnan(metrics.pr_auc([0, 0], [0.5, 0.2])), "AP undefined: NaN as before"


def test_ece_of_perfectly_calibrated_bins_is_zero() -> None:
    # given bins whose mean probability equals their observed rate
    y = [1, 0, 1, 1, 1, 0, 0, 0]
    p = [0.5, 0.5, 0.75, 0.75, 0.75, 0.75, 0.0, 0.0]
    assert metrics.ece(y, p) == pytest.approx(0.0), "calibrated bins have zero ECE"


def test_ece_hand_computed() -> None:
    # bin [0.2,0.3): p 0.2, rate 1 -> gap .8 on 2 rows; bin [0.9,1]: p 1.0 rate .5 -> .5 on 2
    value = metrics.ece([1, 1, 1, 0], [0.2, 0.2, 1.0, 1.0])
    assert value == pytest.approx((0.8 * 2 + 0.5 * 2) / 4), "count-weighted gap"


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.floats(0, 1, allow_nan=False)), min_size=1, max_size=60),
    st.integers(1, 20),
)
def test_ece_bounded_and_matches_table(rows: list[tuple[bool, float]], bins: int) -> None:
    y, p = [r[0] for r in rows], [r[1] for r in rows]
    value = metrics.ece(y, p, bins)
    table = metrics.reliability_table(y, p, bins)
    manual = sum(r["count"] * abs(r["mean_p"] - r["rate"]) for r in table if r["count"]) / len(rows)
    assert 0.0 <= value <= 1.0, "ECE lies in [0, 1]"
    assert value == pytest.approx(manual, abs=1e-12), "ECE equals the table's weighted gaps"
    assert sum(r["count"] for r in table) == len(rows), "every row falls in one bin"


def test_reliability_table_empty_bins_are_none() -> None:
    table = metrics.reliability_table([1, 0], [0.95, 0.05], bins=10)
    assert len(table) == 10, "one row per bin"
    assert table[5]["mean_p"] is None and table[5]["count"] == 0, "empty bin has None"
    assert table[9]["rate"] == 1.0 and table[0]["rate"] == 0.0, "observed rate per bin"


def test_summarize_is_json_safe_with_one_class() -> None:
    summary = metrics.summarize([1, 1, 1], [0.9, 0.8, 0.7])
    assert summary["roc_auc"] is None and summary["pr_auc"] is None, "AUC undefined: None"
    assert summary["n"] == 3 and summary["approval_rate"] == 1.0, "counts and rate"
    assert summary["mean_p"] == pytest.approx(0.8), "mean probability"
    json.dumps(summary, allow_nan=False)


def test_summarize_empty_has_no_metrics() -> None:
    summary = metrics.summarize([], [])
    assert summary["n"] == 0 and summary["log_loss"] is None, "empty input gives None metrics"


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 0], [0.5], "y has 2 values"),
        ([2, 0], [0.5, 0.5], "labels must be 0/1"),
        ([1, 0], [0.5, 1.5], "within"),
        ([1, 0], [0.5, float("nan")], "finite"),
    ],
)
def test_bad_input_raises_clear_error(y: list[float], p: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.summarize(y, p)


def test_by_segment_groups_pools_tail_and_handles_missing() -> None:
    # given 300 visa, 300 mastercard (all approved), 50 amex, 60 missing brands
    brand = ["visa"] * 300 + ["mastercard"] * 300 + ["amex"] * 50 + [None] * 60
    y = [1, 0] * 150 + [1] * 300 + [0, 1] * 25 + [1, 0] * 30
    p = [0.6] * len(y)
    # when
    out = metrics.by_segment({"card_brand": brand}, y, p, min_count=100)
    seg = out["card_brand"]
    # then
    assert set(seg) == {"visa", "mastercard", metrics.OTHER}, "small values are pooled"
    assert seg[metrics.OTHER]["n"] == 110, "amex and missing pooled into (other)"
    assert seg["visa"]["approval_rate"] == 0.5, "per-segment rate"
    assert seg["mastercard"]["roc_auc"] is None, "one-class segment has no AUC"
    json.dumps(out, allow_nan=False)


def test_by_segment_reports_missing_values_by_name() -> None:
    out = metrics.by_segment({"mac": [None, np.nan, "02", "02"]}, [1, 0, 1, 0], [0.5] * 4, 1)
    assert out["mac"][metrics.MISSING]["n"] == 2, "None and NaN are one missing segment"


def test_by_segment_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="segment column 'route_id'"):
        metrics.by_segment({"route_id": ["a"]}, [1, 0], [0.5, 0.5])


def test_oracle_ratio_is_one_for_the_oracle(sample: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = sample
    assert metrics.oracle_ratio(y, p, p) == pytest.approx(1.0), "oracle vs itself is 1"
    worse = np.clip(p + 0.1, 0, 1)
    assert metrics.oracle_ratio(y, worse, p) > 1.0, "a miscalibrated model loses to the oracle"
