"""A model trained on 12 simulated days, and the next 12 days as its decision log (seeded).

The log is scored once per session; tests plant incidents in copies of it
(:mod:`approvals.monitoring.simulated`) and monitor 24-hour windows, large enough that a real
incident is unmistakable and a clean day must stay quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from approvals.contract import validate_frame
from approvals.experiments.log import validate_log
from approvals.model.package import ModelPackage
from approvals.model.train import save_result, train
from approvals.monitoring import simulated
from approvals.monitoring.monitor import recompute_features, select_window
from approvals.simulate import START, simulate
from tests.conftest import SERVING_CONFIG

TRAIN_DAYS = 12
DAYS = 24


@dataclass(frozen=True)
class Monitored:
    """The session's model, its later attempts and their clean decision log."""

    package: ModelPackage
    month: pd.DataFrame  # labelled attempts after training (contract frame)
    log: pd.DataFrame  # validated decision log of ``month`` (with feature columns)
    recomputed: np.ndarray  # the log's features recomputed offline, row for row
    t0: datetime  # end of training, naive UTC

    def day(self, k: int) -> tuple[datetime, datetime]:
        """The ``k``-th 24-hour window of the log."""
        return self.t0 + timedelta(days=k), self.t0 + timedelta(days=k + 1)


@pytest.fixture(scope="session")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    """Train on the first 12 of 24 simulated days; log the last 12 as served."""
    sim = simulate(24_000, seed=5, days=DAYS)
    t0 = (START + timedelta(days=TRAIN_DAYS)).replace(tzinfo=None)
    at = pd.Timestamp(t0, tz="UTC")
    attempts = sim.attempts
    history = validate_frame(attempts[attempts["event_time"] < at], labels=True)
    result = train(history, SERVING_CONFIG)
    package = ModelPackage.load(save_result(result, tmp_path_factory.mktemp("monitor") / "model"))
    later = attempts[(attempts["event_time"] >= at)
                     & (attempts["event_time"] < START + timedelta(days=DAYS))]  # fmt: skip
    month = validate_frame(later.reset_index(drop=True), labels=True)
    log = served(month, package)
    return Monitored(package, month, log, recompute_features(package, log, log), t0)


def served(month: pd.DataFrame, package: ModelPackage, **kwargs: object) -> pd.DataFrame:
    """The validated decision log of ``month`` as ``package`` would have served it."""
    raw = simulated.decision_log(month, package, seed=5, **kwargs)  # type: ignore[arg-type]
    return select_window(validate_log(raw), None, None)


def window(log: pd.DataFrame, start: datetime, end: datetime) -> np.ndarray:
    """Which rows of ``log`` were decided in ``[start, end)``."""
    decided = log["decided_at"]
    return ((decided >= np.datetime64(start)) & (decided < np.datetime64(end))).to_numpy()


@pytest.fixture(scope="session")
def package_dir(monitored: Monitored) -> Path:
    """The session model's package directory."""
    assert monitored.package.path is not None
    return monitored.package.path
