"""Contract validation: every bad-input case names the column, the count and an example."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from approvals import codes
from approvals.contract import Attempt, read_attempts, validate_frame
from approvals.errors import ContractError


def good_rows(n: int = 3) -> pd.DataFrame:
    """Small contract-conforming frame with labels."""
    return pd.DataFrame(
        {
            "attempt_id": [f"a{i}" for i in range(n)],
            "payment_id": [f"p{i}" for i in range(n)],
            "event_time": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
            "merchant_id": ["m1"] * n,
            "mcc": ["5411"] * n,
            "merchant_country": ["US"] * n,
            "amount": [12.5] * n,
            "currency": ["USD"] * n,
            "card_fingerprint": ["fp1"] * n,
            "card_bin": ["411111"] * n,
            "card_brand": ["visa"] * n,
            "card_type": ["credit"] * n,
            "issuer_country": ["US"] * n,
            "channel": ["ecommerce"] * n,
            "three_ds": ["none"] * n,
            "network_token": [False] * n,
            "route_id": ["r1"] * n,
            "attempt_number": [1] * n,
            "previous_response_code": [None] * n,
            "approved": [True] * n,
            "response_code": ["00"] * n,
        }
    )


def test_good_frame_passes_and_drops_unknown_columns() -> None:
    frame = good_rows().assign(extra_column=1)
    out = validate_frame(frame, labels=True)
    assert "extra_column" not in out.columns, "unknown columns are ignored"
    assert len(out) == 3


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("mcc", "54A1", "does not match"),
        ("card_bin", "4111", "does not match"),
        ("card_brand", "diners", "not one of"),
        ("amount", -1.0, "negative"),
        ("amount", float("nan"), "finite"),
        ("attempt_number", 0, "1 or more"),
        ("channel", "pos", "not one of"),
        ("merchant_country", "usa", "does not match"),
        ("response_code", "05", "disagrees"),
        ("previous_response_code", "05", "first attempt"),
    ],
)
def test_bad_value_names_column_count_and_example(column: str, value: object, problem: str) -> None:
    frame = good_rows().astype({column: object})
    frame.loc[[0, 2], column] = value
    with pytest.raises(ContractError) as info:
        validate_frame(frame, labels=True)
    err = info.value
    assert err.column == column, f"error names {err.column}, expected {column}"
    assert err.count == 2, "both bad rows are counted"
    assert problem in str(err)


def test_missing_required_column_is_rejected() -> None:
    with pytest.raises(ContractError, match="card_bin"):
        validate_frame(good_rows().drop(columns="card_bin"), labels=True)


def test_labels_required_for_training_but_not_scoring() -> None:
    unlabelled = good_rows().drop(columns=["approved", "response_code"])
    with pytest.raises(ContractError, match="approved"):
        validate_frame(unlabelled, labels=True)
    assert "approved" not in validate_frame(good_rows(), labels=False).columns


def test_duplicate_attempt_id_is_rejected() -> None:
    frame = good_rows()
    frame.loc[1, "attempt_id"] = "a0"
    with pytest.raises(ContractError, match="duplicate"):
        validate_frame(frame, labels=True)


def test_csv_round_trip_parses_types(tmp_path: Path) -> None:
    path = tmp_path / "attempts.csv"
    good_rows().to_csv(path, index=False)
    out = read_attempts(path, labels=True)
    assert out["network_token"].dtype == bool
    assert out["amount"].dtype == "float64"
    assert out["previous_response_code"].isna().all(), "empty CSV cells are nulls"


def test_csv_with_bad_boolean_names_column(tmp_path: Path) -> None:
    frame = good_rows().astype({"network_token": object})
    frame.loc[1, "network_token"] = "maybe"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ContractError, match="network_token"):
        read_attempts(path, labels=True)


def test_request_model_matches_file_contract() -> None:
    row = good_rows(1).drop(columns=["approved", "response_code"]).iloc[0].to_dict()
    row["event_time"] = row["event_time"].isoformat()
    assert Attempt.model_validate(row).card_bin == "411111"
    with pytest.raises(ValidationError, match="card_bin"):
        Attempt.model_validate({**row, "card_bin": "12"})


def test_taxonomy_hard_and_soft() -> None:
    assert codes.is_hard("14") and codes.is_hard("57")
    assert not codes.is_hard("51") and codes.classify("91") is codes.CodeClass.SOFT
    assert codes.classify(None) is codes.CodeClass.NONE
    assert codes.classify("00") is codes.CodeClass.APPROVED
