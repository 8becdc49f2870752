"""The transactions data contract (``shared/contracts/transactions.md``) as code.

One declaration of the columns drives every boundary: file validation for simulate, train,
evaluate, predict and materialize (pandas, imported lazily so the serving image does not need
it), and the pydantic request model of the online service.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from approvals.atomic import atomic_file
from approvals.errors import ContractError

if TYPE_CHECKING:
    import pandas as pd

CARD_BRANDS = ("visa", "mastercard", "amex", "discover", "jcb", "unionpay", "other")
CARD_TYPES = ("credit", "debit", "prepaid")
CHANNELS = ("ecommerce", "recurring", "in_app", "moto")
THREE_DS = ("none", "frictionless", "challenge")

MCC_RE = r"^[0-9]{4}$"
COUNTRY_RE = r"^[A-Z]{2}$"
CURRENCY_RE = r"^[A-Z]{3}$"
BIN_RE = r"^[0-9]{6,8}$"
CODE_RE = r"^[0-9A-Z]{2}$"

Kind = Literal["string", "timestamp", "float", "int", "bool"]
Need = Literal["yes", "no", "label"]


@dataclass(frozen=True)
class Column:
    """One column of the contract."""

    name: str
    kind: Kind
    need: Need
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("attempt_id", "string", "yes"),
    Column("payment_id", "string", "yes"),
    Column("event_time", "timestamp", "yes"),
    Column("merchant_id", "string", "yes"),
    Column("mcc", "string", "yes", pattern=MCC_RE),
    Column("merchant_country", "string", "yes", pattern=COUNTRY_RE),
    Column("amount", "float", "yes"),
    Column("currency", "string", "yes", pattern=CURRENCY_RE),
    Column("card_fingerprint", "string", "yes"),
    Column("card_bin", "string", "yes", pattern=BIN_RE),
    Column("card_brand", "string", "yes", choices=CARD_BRANDS),
    Column("card_type", "string", "yes", choices=CARD_TYPES),
    Column("issuer_country", "string", "yes", pattern=COUNTRY_RE),
    Column("channel", "string", "yes", choices=CHANNELS),
    Column("three_ds", "string", "yes", choices=THREE_DS),
    Column("network_token", "bool", "yes"),
    Column("route_id", "string", "yes"),
    Column("attempt_number", "int", "yes"),
    Column("previous_response_code", "string", "yes", pattern=CODE_RE, nullable=True),
    Column("merchant_advice_code", "string", "no", pattern=r"^[0-9]{2}$", nullable=True),
    Column("approved", "bool", "label"),
    Column("response_code", "string", "label", pattern=CODE_RE),
)
BY_NAME = {c.name: c for c in COLUMNS}
FEATURE_COLUMNS = tuple(c.name for c in COLUMNS if c.need != "label")
LABEL_COLUMNS = tuple(c.name for c in COLUMNS if c.need == "label")
TRUE_STRINGS = {"true", "t", "1", "yes", "y"}
FALSE_STRINGS = {"false", "f", "0", "no", "n"}


# --------------------------------------------------------------------------------------------
# Files (pandas)
# --------------------------------------------------------------------------------------------


def _fail_where(frame: pd.DataFrame, column: str, bad: pd.Series, problem: str) -> None:
    count = int(bad.sum())
    if count:
        example = frame.loc[bad, column].iloc[0]
        raise ContractError(column, problem, count, _plain(example))


def _plain(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalar -> Python
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)


def _as_string(frame: pd.DataFrame, col: Column) -> pd.Series:
    import pandas as pd

    raw = frame[col.name]
    is_null = raw.isna() | (raw.astype("string").str.strip() == "")
    if not col.nullable:
        _fail_where(frame, col.name, is_null, "missing value")
    values = raw.astype("string").str.strip()
    values = values.mask(is_null, pd.NA)
    present = values.notna()
    if col.pattern is not None:
        ok = values.str.fullmatch(col.pattern).fillna(True).astype(bool)
        _fail_where(frame, col.name, present & ~ok, f"does not match {col.pattern}")
    if col.choices is not None:
        ok = values.isin(col.choices)
        _fail_where(frame, col.name, present & ~ok, f"not one of {', '.join(col.choices)}")
    return values.astype(object).where(present, None) if col.nullable else values.astype(object)


def _as_timestamp(frame: pd.DataFrame, col: Column) -> pd.Series:
    import pandas as pd

    raw = frame[col.name]
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
    else:
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    _fail_where(frame, col.name, parsed.isna(), "not a UTC timestamp")
    return parsed.dt.tz_convert(None).astype("datetime64[us]")


def _as_float(frame: pd.DataFrame, col: Column) -> pd.Series:
    import numpy as np
    import pandas as pd

    parsed = pd.to_numeric(frame[col.name], errors="coerce").astype("float64")
    _fail_where(frame, col.name, ~pd.Series(np.isfinite(parsed)), "not a finite number")
    _fail_where(frame, col.name, parsed < 0, "negative amount")
    return parsed


def _as_int(frame: pd.DataFrame, col: Column) -> pd.Series:
    import pandas as pd

    parsed = pd.to_numeric(frame[col.name], errors="coerce")
    bad = parsed.isna() | (parsed != parsed.round())
    _fail_where(frame, col.name, bad, "not an integer")
    parsed = parsed.astype("int64")
    _fail_where(frame, col.name, parsed < 1, "must be 1 or more")
    return parsed


def _as_bool(frame: pd.DataFrame, col: Column) -> pd.Series:
    import pandas as pd

    raw = frame[col.name]
    if pd.api.types.is_bool_dtype(raw.dtype) and not raw.isna().any():
        return raw.astype(bool)
    text = raw.astype("string").str.strip().str.lower()
    truthy, falsy = text.isin(TRUE_STRINGS), text.isin(FALSE_STRINGS)
    _fail_where(frame, col.name, ~(truthy | falsy).fillna(False), "not a boolean")
    return truthy.fillna(False).astype(bool)


_PARSERS: dict[Kind, Callable[[pd.DataFrame, Column], pd.Series]] = {
    "string": _as_string,
    "timestamp": _as_timestamp,
    "float": _as_float,
    "int": _as_int,
    "bool": _as_bool,
}


def validate_frame(frame: pd.DataFrame, *, labels: bool) -> pd.DataFrame:
    """Check a frame against the contract and return it with canonical dtypes.

    Args:
        frame: attempts as read from a file (any dtypes; CSV strings are parsed).
        labels: True for training and evaluation (label columns required); False for scoring,
            where label columns, if present, are dropped.

    Returns:
        A new frame with exactly the contract columns (optional ones only when present),
        in contract order; unknown extra columns are dropped. ``event_time`` is naive UTC.

    Raises:
        ContractError: naming the column, the number of rows affected and an example value.
    """
    import pandas as pd

    wanted = [c for c in COLUMNS if labels or c.need != "label"]
    for col in wanted:
        if col.need != "no" and col.name not in frame.columns:
            raise ContractError(col.name, "required column is missing", len(frame))
    frame = frame.reset_index(drop=True)
    out = {c.name: _PARSERS[c.kind](frame, c) for c in wanted if c.name in frame.columns}
    result = pd.DataFrame(out)
    _check_rows(result, labels=labels)
    return result


def _check_rows(frame: pd.DataFrame, *, labels: bool) -> None:
    from approvals import codes

    _fail_where(frame, "attempt_id", frame["attempt_id"].duplicated(), "duplicate attempt_id")
    first_with_code = (frame["attempt_number"] == 1) & frame["previous_response_code"].notna()
    _fail_where(frame, "previous_response_code", first_with_code, "must be null on a first attempt")
    if labels:
        approved_code = frame["response_code"].isin(codes.rules().approved_codes)
        mismatch = frame["approved"] != approved_code
        _fail_where(
            frame, "response_code", mismatch, "disagrees with 'approved' (approval codes: 00, ...)"
        )


def read_attempts(path: str | os.PathLike[str], *, labels: bool) -> pd.DataFrame:
    """Read a Parquet or CSV attempts file (or a directory of Parquet files) and validate it.

    Raises:
        ContractError: the file breaks the contract.
        FileNotFoundError: no such file.
    """
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    if p.suffix.lower() in {".csv", ".txt"} or (p.is_file() and _looks_like_csv(p)):
        raw = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
    else:
        raw = pd.read_parquet(p)
    return validate_frame(raw, labels=labels)


def _looks_like_csv(p: Path) -> bool:
    with p.open("rb") as fh:
        return fh.read(4) != b"PAR1"


def write_frame_atomic(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write Parquet (or CSV for a ``.csv`` path) so that a failure leaves the old file intact."""
    target = Path(path)
    with atomic_file(target) as tmp:
        if target.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return target


# --------------------------------------------------------------------------------------------
# Online requests (pydantic)
# --------------------------------------------------------------------------------------------

MAX_ID_LENGTH = 128
MAX_ATTEMPT_NUMBER = 1000
NonEmpty = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class Attempt(BaseModel):
    """One authorization attempt to score (the contract without label columns)."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    attempt_id: NonEmpty
    payment_id: NonEmpty
    event_time: datetime
    merchant_id: NonEmpty
    mcc: Annotated[str, Field(pattern=MCC_RE)]
    merchant_country: Annotated[str, Field(pattern=COUNTRY_RE)]
    amount: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    currency: Annotated[str, Field(pattern=CURRENCY_RE)]
    card_fingerprint: NonEmpty
    card_bin: Annotated[str, Field(pattern=BIN_RE)]
    card_brand: Literal["visa", "mastercard", "amex", "discover", "jcb", "unionpay", "other"]
    card_type: Literal["credit", "debit", "prepaid"]
    issuer_country: Annotated[str, Field(pattern=COUNTRY_RE)]
    channel: Literal["ecommerce", "recurring", "in_app", "moto"]
    three_ds: Literal["none", "frictionless", "challenge"]
    network_token: bool
    route_id: NonEmpty
    attempt_number: Annotated[int, Field(ge=1, le=MAX_ATTEMPT_NUMBER)]
    previous_response_code: Annotated[str, Field(pattern=CODE_RE)] | None = None
    merchant_advice_code: Annotated[str, Field(pattern=r"^[0-9]{2}$")] | None = None

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_validator("previous_response_code", "merchant_advice_code", mode="before")
    @classmethod
    def _empty_is_null(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _first_try_has_no_previous_code(self) -> Attempt:
        if self.attempt_number == 1 and self.previous_response_code is not None:
            raise ValueError("previous_response_code must be null when attempt_number is 1")
        return self
