"""The decision log's schema: what any tool may write, and what is refused, naming the column."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from approvals.errors import ContractError
from approvals.experiments.log import read_log, validate_log
from approvals.experiments.simulated import simulate_experiment
from approvals.simulate import Simulation
from tests.approvals.experiments.conftest import SHARES

POLICIES = {"champion": 0.5, "challenger": 0.25, "holdout": None}


@pytest.fixture(scope="module")
def raw_log(experiment_sim: Simulation, experiment_start: datetime) -> pd.DataFrame:
    log = simulate_experiment(experiment_sim, experiment_start, POLICIES, SHARES, seed=1).log
    return log.iloc[-3000:].reset_index(drop=True)


def test_a_log_with_pending_outcomes_and_no_model_answer_is_read(raw_log: pd.DataFrame) -> None:
    # given a log where some outcomes are not reported yet, times carry a zone, holdout rows
    # have no p_approve, and an extra feature column rides along
    raw = raw_log.assign(
        approved=raw_log["approved"].astype(object), decided_at=raw_log["decided_at"],
        f_bin_rate=0.5,
    )  # fmt: skip
    raw.loc[:99, ["approved", "response_code"]] = None
    # when validated
    log = validate_log(raw)
    # then the unknown labels are NA, the known ones kept, the extra column kept
    assert log["approved"].isna().sum() == 100
    assert (log["approved"][100:] == raw_log["approved"][100:]).all()
    assert log["response_code"][:100].isna().all()
    assert np.isnan(log.loc[log["variant"] == "holdout", "p_approve"]).all()
    assert log["decided_at"].dtype == "datetime64[us]", "naive UTC"
    assert "f_bin_rate" in log.columns


@pytest.mark.parametrize(
    ("change", "column", "problem"),
    [
        (lambda f: f.drop(columns="p_approve"), "p_approve", "required column is missing"),
        (lambda f: f.drop(columns="decided_at"), "decided_at", "required column is missing"),
        (lambda f: f.assign(p_approve=1.5), "p_approve", "not a probability"),
        (lambda f: f.assign(p_approve="high"), "p_approve", "not a number"),
        (lambda f: f.assign(variant=""), "variant", "missing value"),
        (lambda f: f.assign(decided_at="yesterday"), "decided_at", "not a UTC timestamp"),
        (lambda f: f.assign(response_code=None), "response_code", "missing where 'approved'"),
        (lambda f: f.assign(approved=None), "approved", "missing where 'response_code'"),
        (lambda f: f.assign(approved=True, response_code="05"), "response_code", "disagrees"),
        (lambda f: f.assign(card_bin="12"), "card_bin", "does not match"),
    ],
)
def test_a_bad_log_is_refused_naming_the_column(
    raw_log: pd.DataFrame, change: object, column: str, problem: str
) -> None:
    with pytest.raises(ContractError) as refused:
        validate_log(change(raw_log.copy()))  # type: ignore[operator]
    assert refused.value.column == column
    assert problem in refused.value.problem


def test_a_partitioned_directory_is_one_log(raw_log: pd.DataFrame, tmp_path: Path) -> None:
    # given the log written as hourly partitions (what a sink writes)
    frame = raw_log.assign(
        date=raw_log["decided_at"].dt.strftime("%Y-%m-%d"), hour=raw_log["decided_at"].dt.hour
    )
    frame.to_parquet(tmp_path / "log", partition_cols=["date", "hour"])
    # when read as a directory
    log = read_log(tmp_path / "log")
    # then every row is there once
    assert len(log) == len(raw_log)
    assert set(log["attempt_id"]) == set(raw_log["attempt_id"])
