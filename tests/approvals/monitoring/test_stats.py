"""The tests behind the alerts: false discovery control, clustered variance, chi-square, ECE."""

from __future__ import annotations

import numpy as np
import pytest

from approvals.monitoring.stats import (
    benjamini_hochberg,
    ece_consistency,
    histogram_test,
    segment_sums,
    z_test,
)  # fmt: skip


def test_benjamini_hochberg_matches_the_textbook_adjustment() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> p * m / rank, then the running minimum from the top
    expected = np.array([0.025, 0.05, 0.05, 0.025, 0.5])
    np.testing.assert_allclose(benjamini_hochberg(p), expected)
    assert benjamini_hochberg(np.array([])).size == 0


def test_benjamini_hochberg_keeps_chance_findings_rare_over_many_segments() -> None:
    rng = np.random.default_rng(0)
    runs = [benjamini_hochberg(rng.random(200)).min() <= 0.01 for _ in range(500)]
    assert np.mean(runs) <= 0.03, "under the null, any discovery at q <= 0.01 is rare"


def test_the_variance_counts_payments_whose_retries_fail_together() -> None:
    # given payments of three attempts that all succeed or all fail (at 50 %)
    rng = np.random.default_rng(1)
    outcome = np.repeat(rng.random(300) < 0.5, 3).astype(float)
    payments = np.repeat(np.arange(300), 3)
    sums = segment_sums(np.zeros(900, dtype=int), outcome, np.full(900, 0.5), payments)
    # then the variance is about 3 x the independent one (225), not 225
    assert sums["n"].iloc[0] == 900 and sums["expected"].iloc[0] == 450
    assert 450 < sums["variance"].iloc[0] < 900, sums
    # and each segment has its own: a second one of independent attempts keeps about 225
    keys = np.r_[np.zeros(900, dtype=int), np.ones(900, dtype=int)]
    both = segment_sums(keys, np.r_[outcome, outcome], np.full(1800, 0.5),
                        np.r_[payments, np.arange(1000, 1900)])  # fmt: skip
    assert both["variance"].iloc[0] > 2 * both["variance"].iloc[1] >= 2 * 225
    # and independent attempts keep at least the independent variance
    alone = segment_sums(np.zeros(900, dtype=int), outcome, np.full(900, 0.5), np.arange(900))
    assert alone["variance"].iloc[0] >= 225


def test_z_test_gives_two_sided_and_lower_p_values() -> None:
    z, two, low = z_test(np.array([-20.0, 0.0]), np.array([100.0, 100.0]))
    np.testing.assert_allclose(z, [-2.0, 0.0])
    np.testing.assert_allclose(two, [0.0455, 1.0], atol=1e-4)
    np.testing.assert_allclose(low, [0.02275, 0.5], atol=1e-4)


def test_overdispersion_weakens_the_histogram_test() -> None:
    ref, window = np.array([500.0, 500.0]), np.array([35.0, 65.0])
    _, plain = histogram_test(ref, window)
    _, spread = histogram_test(ref, window, dispersion=3.0)
    assert plain < 0.05 < spread


def test_ece_consistency_tells_bad_calibration_from_small_sample_noise() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.3, 0.95, 400)
    calibrated = (rng.random(400) < p).astype(float)
    ece, p_value = ece_consistency(calibrated, p, resamples=199, seed=0)
    assert ece > 0.01 and p_value > 0.01, "a calibrated model's ECE on 400 rows is noise"
    optimistic = (rng.random(400) < p - 0.15).astype(float)
    ece, p_value = ece_consistency(optimistic, p, resamples=199, seed=0)
    assert ece > 0.1 and p_value == pytest.approx(1 / 200)
