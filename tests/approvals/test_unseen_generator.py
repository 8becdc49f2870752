"""The model on data from a generator the project's simulator knows nothing about."""

from __future__ import annotations

import numpy as np
import pytest

from approvals.contract import validate_frame
from approvals.model import metrics
from approvals.model.train import TrainConfig, train
from tests.approvals.alt_generator import generate, raw_baseline


@pytest.mark.slow
def test_model_beats_plain_lightgbm_on_an_unseen_generator() -> None:
    # Given contract data with latent per-card state from an independent generator
    data, truth = generate(20_000, seed=3, days=25)
    data = validate_frame(data, labels=True)
    # When the model trains on it with the default pipeline
    result = train(data, TrainConfig(learning_rate=0.1, threads=2))
    y = result.test["approved"].to_numpy().astype(float)
    oracle = truth.set_index("attempt_id")["p_true"].reindex(result.test["attempt_id"]).to_numpy()
    ordered = data.sort_values("event_time", kind="stable").reset_index(drop=True)
    raw = raw_baseline(ordered, len(y))
    ours, plain = (metrics.oracle_ratio(y, p, oracle) for p in (result.test_p, raw))
    # Then it is closer to the oracle than plain LightGBM on the raw columns, and calibrated
    print(f"oracle ratio: model {ours:.4f}, plain LightGBM {plain:.4f}")
    assert ours < plain, f"features must beat raw columns: {ours:.4f} vs {plain:.4f}"
    assert ours < 1.16, f"oracle ratio {ours:.4f}"
    assert metrics.ece(y, result.test_p) < 0.03
    assert np.all((result.test_p > 0) & (result.test_p < 1))
