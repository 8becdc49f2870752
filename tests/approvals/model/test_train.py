"""Training, calibration and the model package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from approvals.errors import PackageError
from approvals.model import calibrate, metrics
from approvals.model.package import ModelPackage, save
from approvals.model.predict import score
from approvals.model.train import TrainConfig, TrainResult, time_splits, train
from tests.approvals.conftest import SMALL_CONFIG


def test_time_splits_are_contiguous_and_ordered() -> None:
    splits = time_splits(1000, TrainConfig())
    assert (len(splits.train), len(splits.valid), len(splits.calib), len(splits.test)) == (
        700,
        100,
        100,
        100,
    ), "70/10/10/10 by default"
    assert splits.train[-1] < splits.valid[0] < splits.calib[0] < splits.test[0]


def test_config_must_leave_a_test_split() -> None:
    with pytest.raises(ValueError, match="test split"):
        TrainConfig(train_share=0.8, valid_share=0.1, calib_share=0.1)


def test_trained_model_beats_the_base_rate(trained: TrainResult) -> None:
    y = trained.test["approved"].to_numpy().astype(float)
    base = np.full(len(y), y.mean())
    assert metrics.log_loss(y, trained.test_p) < metrics.log_loss(y, base), "learns something"
    assert metrics.roc_auc(y, trained.test_p) > 0.55


def test_the_chosen_booster_is_refit_on_train_and_validation(
    small_data: pd.DataFrame, trained: TrainResult
) -> None:
    booster = trained.package.booster
    rounds = trained.package.manifest["stacking"]["refit_rounds"]
    # the refit booster has exactly the early-stopped number of rounds, no early stopping...
    assert booster.current_iteration() == rounds and booster.best_iteration <= 0
    # ...and it differs from the booster early stopping kept (trained on the train split only)
    kept = train(small_data, SMALL_CONFIG.model_copy(update={"refit": False}))
    assert "refit_rounds" not in kept.package.manifest["stacking"]
    assert kept.package.booster.current_iteration() >= rounds  # early stopping's extra rounds
    assert not np.allclose(kept.test_p, trained.test_p), "the refit changed the model"


def test_package_round_trip_gives_identical_predictions(
    trained: TrainResult, package_dir: Path
) -> None:
    # Given a package written to disk and loaded back
    loaded = ModelPackage.load(package_dir)
    # When the test rows are scored the way predict scores them
    p = score(loaded, trained.test, history=trained.test)
    # Then they equal the probabilities computed in training
    np.testing.assert_allclose(p, trained.test_p, rtol=0, atol=1e-12)
    manifest = json.loads((package_dir / "manifest.json").read_text())
    for key in ("model_version", "training_data_fingerprint", "library_versions", "metrics"):
        assert key in manifest, f"manifest has {key}"
    assert (package_dir / "MODEL_CARD.md").read_text().startswith("# Approval model")


def test_failed_write_keeps_the_previous_package(
    trained: TrainResult, package_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "pkg"
    state = ModelPackage.load(package_dir).state()
    save(trained.package, target, state)
    before = (target / "booster.txt").read_bytes()

    class BoomError(RuntimeError):
        pass

    class BrokenState:
        def save(self, directory: Path) -> None:
            raise BoomError("disk full")

    with pytest.raises(BoomError):
        save(trained.package, target, BrokenState())  # type: ignore[arg-type]
    assert (target / "booster.txt").read_bytes() == before, "old package intact"
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"], "no temp directories left behind"


def test_loading_something_else_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="not a model package"):
        ModelPackage.load(tmp_path)


def test_calibration_repairs_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(1.5, 1.2, 20_000)
    y = (rng.random(true_logit.size) < calibrate.sigmoid(true_logit)).astype(float)
    distorted = 2.5 * true_logit - 1.0  # overconfident and shifted
    before = metrics.ece(y, calibrate.sigmoid(distorted))
    chosen = calibrate.choose(distorted, y)
    after = metrics.ece(y, chosen(distorted))
    assert chosen.method in {"platt", "isotonic"}, "a distorted score needs calibrating"
    assert after < before / 4, f"ECE {before:.4f} -> {after:.4f}"


def test_calibration_keeps_none_for_a_calibrated_score() -> None:
    rng = np.random.default_rng(1)
    logit = rng.normal(1.0, 1.0, 20_000)
    y = (rng.random(logit.size) < calibrate.sigmoid(logit)).astype(float)
    chosen = calibrate.choose(logit, y)
    assert set(chosen.selection) == {"none", "platt", "isotonic"}
    assert chosen.selection["none"] <= chosen.selection["isotonic"] + 1e-3


def test_network_token_never_lowers_approval_on_average(
    trained: TrainResult, package_dir: Path
) -> None:
    # The factory gives tokens a positive effect: the model must agree in direction.
    package = ModelPackage.load(package_dir)
    rows = trained.test.reset_index(drop=True)
    with_token = score(package, rows.assign(network_token=True), trained.test)
    without = score(package, rows.assign(network_token=False), trained.test)
    assert with_token.mean() > without.mean(), "network token raises approval on average"


def test_too_little_data_is_a_clear_error(small_data: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="too few rows"):
        train(small_data.head(100), TrainConfig())
