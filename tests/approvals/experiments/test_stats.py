"""The statistics: delta-method ratios, CUPED, the sample-ratio test, on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from approvals.experiments.stats import Arm, arm_estimates, compare, sample_ratio


def test_a_mean_metric_is_the_mean_with_its_standard_error() -> None:
    # given per-unit values in two arms and den = 1
    rng = np.random.default_rng(1)
    num = rng.normal(10, 2, 400)
    arm = np.array(["a"] * 150 + ["b"] * 250, dtype=object)
    # when estimated without covariates
    got = arm_estimates(num, np.ones(400), arm, None)
    # then each arm is its mean with the textbook standard error
    for name, rows in (("a", slice(0, 150)), ("b", slice(150, 400))):
        values = num[rows]
        assert got[name].raw == pytest.approx(values.mean(), rel=1e-12)
        assert got[name].adjusted == got[name].raw, "nothing to adjust for"
        assert got[name].se == pytest.approx(values.std(ddof=1) / np.sqrt(len(values)), rel=1e-12)


def test_a_ratio_metric_has_the_delta_method_variance() -> None:
    # given attempts and approvals per payment
    rng = np.random.default_rng(2)
    den = rng.integers(1, 4, 1000).astype(float)
    num = rng.binomial(den.astype(int), 0.8).astype(float)
    # when estimated as one arm
    got = arm_estimates(num, den, np.array(["a"] * 1000, dtype=object), None)["a"]
    # then the ratio of sums, with Var = (s_nn - 2 R s_nd + R^2 s_dd) / (n mean(d)^2)
    ratio = num.sum() / den.sum()
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (1000 * den.mean() ** 2)
    assert got.raw == pytest.approx(ratio, rel=1e-12)
    assert got.se == pytest.approx(np.sqrt(var), rel=1e-9)


def test_cuped_removes_what_a_covariate_explains_and_corrects_an_imbalance() -> None:
    # given a metric that is mostly a pre-treatment covariate, arm b higher by 0.5, and arm b's
    # units drawn with a larger covariate by chance
    rng = np.random.default_rng(3)
    x = np.r_[rng.normal(0, 1, 2000), rng.normal(0.3, 1, 2000)]
    arm = np.array(["a"] * 2000 + ["b"] * 2000, dtype=object)
    y = 3 * x + 0.5 * (arm == "b") + rng.normal(0, 1, 4000)
    # when estimated with and without the covariate
    est = arm_estimates(y, np.ones(4000), arm, x[:, None])
    got = compare(est["b"], est["a"])
    # then the raw difference carries the imbalance (0.5 + 3 * 0.3) and the adjusted does not
    assert est["b"].raw - est["a"].raw == pytest.approx(1.4, abs=0.15)
    assert got.estimate == pytest.approx(0.5, abs=0.1)
    assert got.ci95[0] < 0.5 < got.ci95[1]
    # and the variance falls by about the share the covariate explains (9 / 10)
    assert got.variance_reduction == pytest.approx(0.9, abs=0.03)


def test_compare_gives_the_difference_its_interval_and_relative_change() -> None:
    a = Arm(units=100, raw=0.84, adjusted=0.84, se=0.01, se_raw=0.01)
    b = Arm(units=100, raw=0.80, adjusted=0.80, se=0.01, se_raw=0.01)
    got = compare(a, b)
    half = 1.959964 * np.hypot(0.01, 0.01)
    assert got.estimate == pytest.approx(0.04)
    assert got.ci95 == pytest.approx((0.04 - half, 0.04 + half), rel=1e-5)
    assert got.p_value == pytest.approx(0.004678, rel=1e-3), "two-sided normal p of z = 2.83"
    assert got.relative == pytest.approx(0.05)
    assert got.relative_ci95 is not None and got.relative_ci95[0] < 0.05 < got.relative_ci95[1]


def test_the_sample_ratio_test_flags_a_broken_split_only() -> None:
    shares = {"champion": 0.45, "challenger": 0.45, "holdout": 0.10}
    # given counts as configured, then 5% of the challenger's lost, then an arm with no share
    fair = sample_ratio({"champion": 45_120, "challenger": 44_900, "holdout": 9_980}, shares)
    lost = sample_ratio({"champion": 45_000, "challenger": 42_750, "holdout": 10_000}, shares)
    stray = sample_ratio(
        {"champion": 10, "challenger": 10, "extra": 1}, {"champion": 1, "challenger": 1}
    )
    # then only the fair split passes
    assert not fair["flagged"] and fair["p_value"] > 0.05
    assert lost["flagged"] and lost["p_value"] < 1e-6
    assert stray["flagged"] and stray["observed"]["extra"] == 1
    assert fair["expected_shares"] == pytest.approx(shares)
