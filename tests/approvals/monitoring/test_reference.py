"""The training reference: bins, PSI, hour matching, and its life in the model package."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from approvals.model.package import ModelPackage
from approvals.model.reference import REFERENCE_FILE, TrainingReference, feature_group
from approvals.model.reference_bins import chi_square, make_bins, psi
from tests.approvals.monitoring.conftest import Monitored


def test_psi_is_zero_for_one_distribution_and_grows_with_the_shift() -> None:
    ref = np.array([100.0, 200.0, 300.0, 400.0])
    assert psi(ref, ref * 3) == pytest.approx(0.0), "scale does not matter"
    small, large = psi(ref, [110, 200, 290, 400]), psi(ref, [400, 300, 200, 100])
    assert 0 < small < 0.01 < 0.25 < large, (small, large)
    # the textbook value: sum((o - r) ln(o / r)) over shares
    r, o = ref / ref.sum(), np.array([400, 300, 200, 100]) / 1000
    assert large == pytest.approx(float(np.sum((o - r) * np.log(o / r))))
    # a bin empty on both sides adds nothing; empty on one side counts at the 1e-4 floor
    assert psi([5, 5, 0], [5, 5, 0]) == 0.0 and psi([5, 5, 0], [5, 4, 1]) > 0.5


def test_chi_square_of_a_two_by_k_table() -> None:
    statistic, df = chi_square([50, 50], [30, 70])
    assert df == 1 and statistic == pytest.approx(8.333, rel=1e-3), "(20^2/40 + 20^2/60) x 2"
    assert chi_square([5, 0], [5, 0]) == (0.0, 0), "one non-empty bin: nothing to test"


def test_numeric_bins_are_deciles_with_a_bin_for_missing_values() -> None:
    values = np.r_[np.arange(1000, dtype=float), [np.nan] * 10]
    bins = make_bins(values, False, None)
    assert bins.kind == "numeric" and len(bins.edges) == 9 and bins.size == 11
    assert bins.counts[:-1] == [100] * 10 and bins.counts[-1] == 10
    assert bins.index(np.array([-5.0, 99.0, 100.0, 1e9, np.nan])).tolist() == [0, 0, 1, 9, 10]


def test_categorical_bins_keep_the_top_values_then_other_then_missing() -> None:
    values = np.array(["a"] * 50 + ["b"] * 30 + [f"rare{i}" for i in range(25)] + [None] * 5)
    bins = make_bins(values, True, None)
    assert bins.categories[:2] == ["a", "b"] and len(bins.categories) == 20
    assert bins.counts[0] == 50 and bins.counts[-1] == 5 and bins.counts[-2] == 7, bins.counts
    assert bins.index(np.array(["a", "never seen", None, ""])).tolist() == [0, 20, 21, 21]
    codes = make_bins(np.array([1.0, 1.0, 2.0, np.nan]), True, None)
    assert codes.categories == ["1", "2"], "category codes (floats) are keyed as integers"


def test_the_reference_matched_to_a_window_follows_its_hours() -> None:
    # given a column whose value depends on the hour: "night" from 00 to 06 UTC, else "day"
    hours = np.arange(48 * 24 * 10) / 240.0 + 480_000.0  # 48 days, 10 rows an hour (epoch h)
    values = np.where(np.floor(hours) % 24 < 6, "night", "day")
    bins = make_bins(values, True, hours)
    # when a window holds only night hours, its reference is (nearly) all night
    night = bins.matched(np.array([1, 2, 3, 4]))
    assert night[bins.categories.index("night")] / night.sum() > 0.9
    # and a window over the whole day gets the whole day's shares
    whole = bins.matched(np.arange(24))
    assert whole / whole.sum() == pytest.approx(np.asarray(bins.counts) / sum(bins.counts),
                                                abs=0.01)  # fmt: skip
    # and chunks, each against the reference matched to its hours, move far less than a night
    # chunk does against the whole day
    night_only = np.zeros(bins.size)
    night_only[bins.categories.index("night")] = 1.0
    unmatched = psi(bins.counts, night_only)
    assert all(c.mean < 0.05 * unmatched for c in bins.chunks), (unmatched, bins.chunks)


def test_features_are_grouped_by_what_they_describe() -> None:
    assert feature_group("log_amount") == "attempt" and feature_group("route_id") == "attempt"
    assert feature_group("bin_route_1h_rate") == "history"
    assert feature_group("card_last_code") == "history"
    assert feature_group("amount_vs_card_nsf") == "history"
    assert feature_group("local_hour") == "calendar" and feature_group("day_of_week") == "calendar"


def test_training_writes_the_reference_into_the_package(monitored: Monitored) -> None:
    package = monitored.package
    reference = package.reference()
    assert package.path is not None and (package.path / REFERENCE_FILE).is_file()
    assert isinstance(reference, TrainingReference)
    assert set(reference.features) == set(package.spec.names)
    assert set(reference.groups) == set(package.spec.names)
    assert {"amount", "issuer_country", "route_id", "merchant_id"} <= set(reference.inputs)
    assert sum(reference.prediction.counts) == reference.rows > 1000
    assert 0 < reference.ece < 0.1 and len(reference.reliability) == 10
    us = reference.rates["issuer_country"]["US"]
    assert len(us.n) == 48 and 0.5 < us.rate < 0.95
    assert reference.merchant_amounts, "busy merchants have amount quintiles"
    assert TrainingReference.model_validate_json(reference.to_json()) == reference


def test_a_package_from_before_monitoring_still_loads_without_a_reference(
    package_dir: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(package_dir, old)
    (old / REFERENCE_FILE).unlink()
    package = ModelPackage.load(old)
    assert package.reference() is None
    assert package.model_version == ModelPackage.load(package_dir).model_version
