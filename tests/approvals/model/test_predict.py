"""Batch prediction: input order, own label never used, state + history semantics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from approvals.model.package import ModelPackage
from approvals.model.predict import score
from approvals.model.train import TrainResult


def test_a_rows_own_label_never_influences_its_prediction(
    trained: TrainResult, package_dir: Path
) -> None:
    package = ModelPackage.load(package_dir)
    rows = trained.test.head(400).reset_index(drop=True)
    base = score(package, rows, history=rows)
    flipped = rows.copy()
    flipped["approved"] = ~flipped["approved"]
    flipped["response_code"] = np.where(flipped["approved"], "00", "05")
    # each row's prediction may change only through *earlier* rows' labels:
    # the first row of every distinct timestamp has no earlier rows in this history
    alone = score(package, rows.head(1), history=flipped.head(1))
    np.testing.assert_allclose(alone[0], base[0], rtol=0, atol=1e-12, err_msg="own label ignored")
    changed = score(package, rows, history=flipped)
    assert not np.allclose(changed, base), "earlier labels do matter"


def test_predictions_follow_input_order(trained: TrainResult, package_dir: Path) -> None:
    package = ModelPackage.load(package_dir)
    rows = trained.test.head(300).reset_index(drop=True)
    forward = score(package, rows, history=trained.test)
    shuffled = rows.sample(frac=1.0, random_state=0)
    backward = score(package, shuffled, history=trained.test)
    np.testing.assert_allclose(backward, forward[shuffled.index.to_numpy()], atol=1e-12)


def test_scoring_without_history_uses_the_package_state(
    trained: TrainResult, package_dir: Path
) -> None:
    package = ModelPackage.load(package_dir)
    rows = trained.test.head(200)
    p = score(package, rows.drop(columns=["approved", "response_code"]))
    assert p.shape == (200,) and np.all((p > 0) & (p < 1))
    assert score(package, rows.iloc[:0]).shape == (0,)
