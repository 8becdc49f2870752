"""The sink's layout read back as one decision log (docs/experiments.md), outcomes joined.

``path/decisions/date=.../hour=.../part-*.parquet`` (and ``path/outcomes/...``) in a local
directory or under ``s3://bucket/prefix``. The sink may write an entry twice (delivered again
after a crash before its acknowledgement): duplicates are dropped by ``entry_id``. Shadow
answers (the challenger's, never returned) are left out. The sending decisions (``score``,
``score_batch``, ``rank_routes``) keep one row per ``attempt_id``, the latest ``decided_at``;
the attempt's latest retry advice (``advise_retry``, a decision about the declined attempt, not
a scored one) fills its ``retry_*`` columns, and its latest reported outcome ``approved`` and
``response_code`` (null while none is).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from approvals.errors import UserError
from approvals.experiments.sink_entries import RETRY_COLUMNS, id_order
from approvals.experiments.sink_files import (
    DECISION_FIELDS,
    KIND_DIRS,
    OUTCOME_FIELDS,
    s3_key,
    split_s3,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SENDING_ENDPOINTS", "is_sink_layout", "read_sink"]

SENDING_ENDPOINTS = ("score", "score_batch", "rank_routes")


def is_sink_layout(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds the sink's layout: a ``decisions`` directory, or for
    ``s3://bucket/prefix`` objects under ``<prefix>/decisions/``."""
    text = os.fspath(path)
    if not text.startswith("s3://"):
        return (Path(text) / KIND_DIRS["decision"]).is_dir()
    bucket, prefix = split_s3(text)
    reply = _s3().list_objects_v2(Bucket=bucket, Prefix=_folder(prefix, "decision"), MaxKeys=1)
    return int(reply.get("KeyCount", 0)) > 0


def read_sink(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a sink layout as one decision log, ready for
    :func:`approvals.experiments.log.validate_log`.

    Returns:
        One row per sent ``attempt_id`` (its latest decision, sorted by ``decided_at``): the
        attempt's columns (``route_id`` the route chosen), ``p_approve``, ``model_version``,
        ``variant``, ``endpoint``, ``decided_at``, ``approved`` and ``response_code`` (null
        where no outcome was reported), then ``degraded``, the ``retry_*`` advice (null where
        none was asked), ``entry_id`` and the ``feature_<name>`` columns.

    Raises:
        FileNotFoundError: ``path`` has no ``decisions`` folder.
        UserError: a file of the layout is not readable Parquet (named).
    """
    if not is_sink_layout(path):
        raise FileNotFoundError(f"{os.fspath(path)}: no sink layout (no decisions/ folder)")
    decided = _latest(_frame(_tables(path, "decision"), DECISION_FIELDS), "decided_at")
    decided = decided[~decided["shadow"].astype(bool)]
    sent = decided[decided["endpoint"].isin(SENDING_ENDPOINTS)]
    sent = _latest(sent, "decided_at", by="attempt_id").drop(columns=[*RETRY_COLUMNS, "shadow"])
    advice = decided[decided["endpoint"] == "advise_retry"]
    advice = _latest(advice, "decided_at", by="attempt_id")
    outcomes = _latest(_frame(_tables(path, "outcome"), OUTCOME_FIELDS), "reported_at")
    labels = _latest(outcomes, "reported_at", by="attempt_id")
    return _joined(
        sent, labels[["attempt_id", "approved", "response_code"]],
        advice[["attempt_id", *RETRY_COLUMNS]],
    )  # fmt: skip


def _frame(tables: Sequence[pa.Table], fields: Sequence[pa.Field]) -> pd.DataFrame:
    """The tables as one frame (feature columns of every file), empty with ``fields`` if none."""
    if not tables:
        return pa.schema(fields).empty_table().to_pandas()
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def _latest(frame: pd.DataFrame, time: str, by: str = "entry_id") -> pd.DataFrame:
    """The last row of each ``by`` in (``time``, stream id) order, the frame sorted so."""
    order = [id_order(entry_id) for entry_id in frame["entry_id"]]
    ranked = frame.assign(_ms=[ms for ms, _ in order], _seq=[seq for _, seq in order])
    ranked = ranked.sort_values([time, "_ms", "_seq"], kind="stable")
    ranked = ranked.drop_duplicates(by, keep="last")
    return ranked.drop(columns=["_ms", "_seq"]).reset_index(drop=True)


def _joined(sent: pd.DataFrame, labels: pd.DataFrame, advice: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    frame = sent.merge(labels, on="attempt_id", how="left", validate="one_to_one")
    frame = frame.merge(advice, on="attempt_id", how="left", validate="one_to_one")
    frame["approved"] = frame["approved"].astype("boolean")
    for name in ("response_code", "retry_action", "retry_reason", "retry_route_id"):  # text
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    first = [f.name for f in DECISION_FIELDS if f.name != "shadow"]
    middle = first.index("decided_at") + 1
    order = [*first[:middle], "approved", "response_code", *first[middle:]]
    order += [c for c in frame.columns if c not in order]
    return pd.DataFrame(frame[order]).reset_index(drop=True)


def _tables(path: str | os.PathLike[str], kind: str) -> list[pa.Table]:
    """Every Parquet file of one kind, read whole (partition folders are not columns)."""
    text = os.fspath(path)
    if text.startswith("s3://"):
        return [_parquet(name, io.BytesIO(body)) for name, body in _s3_bodies(text, kind)]
    files = sorted((Path(text) / KIND_DIRS[kind]).rglob("*.parquet"))
    return [_parquet(str(f), f) for f in files if not f.name.startswith(".")]


def _parquet(name: str, source: Path | io.BytesIO) -> pa.Table:
    try:
        return pq.ParquetFile(source).read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{name}: not a readable Parquet file ({exc})") from None


def _s3_bodies(url: str, kind: str) -> Iterator[tuple[str, bytes]]:
    bucket, prefix = split_s3(url)
    client = _s3()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=_folder(prefix, kind)
    )
    for page in pages:
        for item in page.get("Contents", []):
            if item["Key"].endswith(".parquet"):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                yield f"s3://{bucket}/{item['Key']}", body


def _folder(prefix: str, kind: str) -> str:
    return s3_key(prefix, KIND_DIRS[kind] + "/")


def _s3() -> Any:
    from approvals.registry.store import make_client

    return make_client()
