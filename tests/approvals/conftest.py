"""Fixtures shared by the model pipeline tests: one small data set and one trained package."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from approvals.contract import validate_frame
from approvals.train import TrainConfig, TrainResult, save_result, train
from tests.approvals.factories import random_attempts

SMALL_CONFIG = TrainConfig(learning_rate=0.1, max_rounds=300, min_data_in_leaf=50, threads=2)


@pytest.fixture(scope="session")
def small_data() -> pd.DataFrame:
    """12k labelled attempts over 30 days from the test factory (not the simulator)."""
    return validate_frame(random_attempts(12_000, seed=11, days=30), labels=True)


@pytest.fixture(scope="session")
def trained(small_data: pd.DataFrame) -> TrainResult:
    """A model trained once per test session on ``small_data``."""
    return train(small_data, SMALL_CONFIG)


@pytest.fixture(scope="session")
def package_dir(trained: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model written as a package directory."""
    return save_result(trained, tmp_path_factory.mktemp("model") / "package")
