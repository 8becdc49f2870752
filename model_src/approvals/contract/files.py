"""The file edge of the contract: pandas reads Parquet and CSV, the one validator checks.

Reading a file's encodings (CSV text, Parquet dtypes, time zones) is pandas' job and stays
here; the rules are :func:`approvals.contract.table.check`, the same as for requests, and the
result is the frame the offline code reads (pandas is imported lazily, so the serving image
that imports the contract does not need it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from approvals.atomic import atomic_file
from approvals.contract.columns import COLUMNS, Column, Kind
from approvals.contract.table import Decoded, Rules, check
from approvals.errors import ContractError

if TYPE_CHECKING:
    import pandas as pd

TRUE_STRINGS = {"true", "t", "1", "yes", "y"}
FALSE_STRINGS = {"false", "f", "0", "no", "n"}


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
    decoded = {c.name: _READERS[c.kind](frame[c.name], c) for c in wanted if c.name in frame}
    rules = Rules(limits=False, unique_ids=True, labels=labels)
    for column, problem, rows in check(decoded, rules):
        if rows is not None and rows.any():
            example = frame[column].iloc[int(rows.argmax())]
            raise ContractError(column, problem, int(rows.sum()), _plain(example))
    # the dtypes as given: pandas would otherwise infer its string dtype for the text columns
    return pd.DataFrame({n: pd.Series(d.values, dtype=d.values.dtype) for n, d in decoded.items()})


def _plain(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalar -> Python
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)


def _read_string(raw: pd.Series, col: Column) -> Decoded:
    text = raw.astype("string").str.strip()
    is_null = (raw.isna() | (text == "")).to_numpy(dtype=bool)
    values = text.astype(object).to_numpy(copy=True)
    values[is_null] = None if col.nullable else ""
    return Decoded(values, None if col.nullable else is_null)


def _read_timestamp(raw: pd.Series, col: Column) -> Decoded:
    import pandas as pd

    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
    else:
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    return Decoded(parsed.dt.tz_convert(None).astype("datetime64[us]").to_numpy())


def _read_float(raw: pd.Series, col: Column) -> Decoded:
    import pandas as pd

    return Decoded(pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy())


def _read_int(raw: pd.Series, col: Column) -> Decoded:
    import pandas as pd

    parsed = pd.to_numeric(raw, errors="coerce")
    bad = (parsed.isna() | (parsed != parsed.round())).to_numpy(dtype=bool)
    values = parsed.where(~bad, 1).astype("int64").to_numpy()
    return Decoded(values, bad)


def _read_bool(raw: pd.Series, col: Column) -> Decoded:
    import pandas as pd

    if pd.api.types.is_bool_dtype(raw.dtype) and not raw.isna().any():
        return Decoded(raw.astype(bool).to_numpy())
    text = raw.astype("string").str.strip().str.lower()
    truthy, falsy = text.isin(TRUE_STRINGS), text.isin(FALSE_STRINGS)
    bad = (~(truthy | falsy).fillna(False)).to_numpy(dtype=bool)
    return Decoded(truthy.fillna(False).astype(bool).to_numpy(), bad)


_READERS: dict[Kind, Callable[[pd.Series, Column], Decoded]] = {
    "string": _read_string,
    "timestamp": _read_timestamp,
    "float": _read_float,
    "int": _read_int,
    "bool": _read_bool,
}


def read_attempts(path: str | os.PathLike[str], *, labels: bool) -> pd.DataFrame:
    """Read a Parquet or CSV attempts file (or a directory of Parquet files) and validate it.

    Raises:
        ContractError: the file breaks the contract.
        FileNotFoundError: no such file.
    """
    return validate_frame(read_table(path), labels=labels)


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a Parquet or CSV file, or a directory of Parquet files (partitioned or not), as
    given: no column is checked (the callers' validators do that).

    Raises:
        FileNotFoundError: no such file.
    """
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    if p.suffix.lower() in {".csv", ".txt"} or (p.is_file() and _looks_like_csv(p)):
        return pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
    return pd.read_parquet(p)


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
