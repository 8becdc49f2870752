"""The decision log: what the service decided for each attempt, and what then happened.

One row per scored attempt. Any tool can write one: the contract's attempt columns, plus

| column | type | required | meaning |
|---|---|---|---|
| p_approve | float64 in [0, 1], nullable | yes | the answer (null: no model answered) |
| variant | string | yes | the arm that answered: champion, challenger, holdout (or your names) |
| model_version | string, nullable | no | the model package that answered |
| decided_at | timestamp, UTC | yes | when the answer was given |
| approved | bool, nullable | no | the outcome, once reported (null: not yet known) |
| response_code | string, nullable | no | the outcome's code; present exactly where approved is |

The labels follow the contract's rules (a code that agrees with ``approved``) where present.
Unknown extra columns (logged features, partition columns) are kept as they are.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from approvals.contract import read_table, validate_frame
from approvals.errors import ContractError, UserError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DECISION_COLUMNS", "LABELS", "read_log", "validate_log"]

DECISION_COLUMNS = ("p_approve", "variant", "model_version", "decided_at")
LABELS = ("approved", "response_code")


def read_log(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a decision log (Parquet file, directory of Parquet files, or CSV) and validate it.

    The output of ``approvals decisions sink`` (a directory or ``s3://`` prefix holding
    ``decisions/``) is read as one log with its outcomes joined, by
    :func:`approvals.experiments.sink_reader.read_sink`.

    Raises:
        ContractError: naming the column, the rows affected and an example value.
        FileNotFoundError: no such file (or no sink layout under an ``s3://`` prefix).
        UserError: S3 refused to list or read the prefix (credentials, bucket, rights).
    """
    from approvals.experiments.sink_reader import is_sink_layout, read_sink

    if not os.fspath(path).startswith("s3://"):
        return validate_log(read_sink(path) if is_sink_layout(path) else read_table(path))
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return validate_log(read_sink(path))
    except (BotoCoreError, ClientError) as exc:
        raise UserError(f"{os.fspath(path)}: S3 refused: {exc}") from None


def validate_log(frame: pd.DataFrame) -> pd.DataFrame:
    """Check a decision log and return it with canonical dtypes.

    Returns:
        The contract's attempt columns, then ``p_approve`` (float, NaN when null), ``variant``,
        ``model_version`` (None when null or absent), ``decided_at`` (naive UTC), ``approved``
        (pandas' nullable boolean), ``response_code`` (None when unknown), then the extra
        columns as given.

    Raises:
        ContractError: naming the column, the rows affected and an example value.
    """
    import pandas as pd

    frame = frame.reset_index(drop=True)
    for name in ("p_approve", "variant", "decided_at"):
        if name not in frame.columns:
            raise ContractError(name, "required column is missing", len(frame))
    out = validate_frame(frame, labels=False)
    out["p_approve"] = _probabilities(frame["p_approve"])
    out["variant"] = _texts(frame["variant"], "variant", required=True)
    versions = (
        frame["model_version"] if "model_version" in frame else pd.Series([None] * len(frame))
    )
    out["model_version"] = _texts(versions, "model_version", required=False)
    out["decided_at"] = _times(frame["decided_at"])
    out["approved"], out["response_code"] = _labels(frame)
    extra = [c for c in frame.columns if c not in out.columns]
    return pd.concat([out, frame[extra]], axis=1) if extra else out


def _fail(column: str, problem: str, rows: np.ndarray, values: pd.Series) -> None:
    if rows.any():
        example = values.iloc[int(rows.argmax())]
        raise ContractError(column, problem, int(rows.sum()), _plain(example))


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def _probabilities(raw: pd.Series) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
    unreadable = np.isnan(values) & raw.notna().to_numpy()
    _fail("p_approve", "not a number", unreadable, raw)
    outside = ~np.isnan(values) & ~((values >= 0) & (values <= 1))
    _fail("p_approve", "not a probability in [0, 1]", outside, raw)
    return values


def _texts(raw: pd.Series, column: str, *, required: bool) -> np.ndarray:
    text = raw.astype("string").str.strip()
    empty = (raw.isna() | (text == "")).to_numpy(dtype=bool)
    if required:
        _fail(column, "missing value", empty, raw)
    values = text.astype(object).to_numpy(copy=True)
    values[empty] = None
    return values


def _times(raw: pd.Series) -> np.ndarray:
    import pandas as pd

    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
    else:
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    _fail("decided_at", "not a UTC timestamp", parsed.isna().to_numpy(), raw)
    return parsed.dt.tz_convert(None).astype("datetime64[us]").to_numpy()


def _labels(frame: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """The labels where known, checked by the contract's rules on those rows."""
    import pandas as pd

    size = len(frame)
    approved = frame["approved"] if "approved" in frame else pd.Series([None] * size)
    codes = frame["response_code"] if "response_code" in frame else pd.Series([None] * size)
    has_label = approved.notna().to_numpy()
    has_code = (codes.notna() & (codes.astype("string").str.strip() != "")).to_numpy(dtype=bool)
    _fail("response_code", "missing where 'approved' is known", has_label & ~has_code, approved)
    _fail("approved", "missing where 'response_code' is known", has_code & ~has_label, codes)
    out_approved = pd.array([pd.NA] * size, dtype="boolean")
    out_codes = np.full(size, None, dtype=object)
    if has_label.any():
        rows = np.flatnonzero(has_label)
        labelled = validate_frame(frame.iloc[rows], labels=True)
        out_approved[rows] = labelled["approved"].to_numpy(dtype=bool)
        out_codes[rows] = labelled["response_code"].to_numpy(dtype=object)
    return pd.Series(out_approved), out_codes
