"""The sink's files: one Parquet table per kind and UTC hour, written to a directory or to S3.

Layout under the output (docs/decisions.md, "The sink")::

    decisions/date=YYYY-MM-DD/hour=HH/part-<first stream id of the group>.parquet
    outcomes/date=YYYY-MM-DD/hour=HH/part-<first stream id of the group>.parquet

A local file is written under a hidden temporary name, synced, then linked to its name; an S3
object is one ``PutObject`` of the whole file, which S3 shows whole or not at all. Either way a
reader sees complete files only, a failed write leaves the output as it was, and a name already
taken is never overwritten (:func:`free_names`).
"""

from __future__ import annotations

import io
import itertools
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from approvals.contract import COLUMNS
from approvals.errors import UserError
from approvals.experiments.sink_entries import Parsed, id_order

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

__all__ = [
    "DECISION_FIELDS",
    "FEATURE_PREFIX",
    "KIND_DIRS",
    "OUTCOME_FIELDS",
    "Destination",
    "Group",
    "LocalDestination",
    "S3Destination",
    "decision_table",
    "free_names",
    "group_entries",
    "open_destination",
    "outcome_table",
    "plan_files",
    "s3_key",
    "split_s3",
]

FEATURE_PREFIX = "feature_"
KIND_DIRS = {"decision": "decisions", "outcome": "outcomes"}
TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")  # S3's answers to a taken name
UTC_TIME = pa.timestamp("us", tz="UTC")
_TYPES = {"string": pa.string(), "timestamp": UTC_TIME, "float": pa.float64(),
          "int": pa.int64(), "bool": pa.bool_()}  # fmt: skip

DECISION_FIELDS: tuple[pa.Field, ...] = (
    *(pa.field(c.name, _TYPES[c.kind]) for c in COLUMNS if c.need != "label"),
    pa.field("p_approve", pa.float64()),
    pa.field("model_version", pa.string()),
    pa.field("variant", pa.string()),
    pa.field("endpoint", pa.string()),
    pa.field("decided_at", UTC_TIME),
    pa.field("degraded", pa.bool_()),
    pa.field("shadow", pa.bool_()),
    pa.field("retry_action", pa.string()),
    pa.field("retry_reason", pa.string()),
    pa.field("retry_route_id", pa.string()),
    pa.field("retry_delay_hours", pa.float64()),
    pa.field("entry_id", pa.string()),
)
OUTCOME_FIELDS: tuple[pa.Field, ...] = (
    pa.field("attempt_id", pa.string()),
    pa.field("payment_id", pa.string()),
    pa.field("approved", pa.bool_()),
    pa.field("response_code", pa.string()),
    pa.field("merchant_advice_code", pa.string()),
    pa.field("reported_at", UTC_TIME),
    pa.field("entry_id", pa.string()),
)


@dataclass(frozen=True)
class Group:
    """The entries of one file: one kind, one UTC hour."""

    kind: str
    hour: str  # "YYYY-MM-DD/HH"
    rows: tuple[Parsed, ...]

    @property
    def key(self) -> str:
        """The file's path under the output, named by the group's first stream id."""
        date, hour = self.hour.split("/")
        first = min((p.entry_id for p in self.rows), key=id_order)
        return f"{KIND_DIRS[self.kind]}/date={date}/hour={hour}/part-{first}.parquet"


def group_entries(parsed: Iterable[Parsed]) -> list[Group]:
    """Split entries by kind and by the UTC hour of ``decided_at`` / ``reported_at``."""
    groups: dict[tuple[str, str], list[Parsed]] = {}
    for p in sorted(parsed, key=lambda p: id_order(p.entry_id)):
        groups.setdefault((p.kind, p.at.strftime("%Y-%m-%d/%H")), []).append(p)
    return [Group(kind, hour, tuple(rows)) for (kind, hour), rows in sorted(groups.items())]


def outcome_table(rows: Sequence[Parsed]) -> pa.Table:
    """The outcome file's table."""
    return _table(OUTCOME_FIELDS, rows)


def decision_table(
    rows: Sequence[Parsed], names: Mapping[str, Sequence[str]]
) -> tuple[pa.Table, int]:
    """The decision file's table, one ``feature_<name>`` column per known feature name.

    Args:
        rows: decision entries.
        names: feature names by model version.

    Returns:
        The table, and how many rows logged a vector that could not be named (unknown
        version, or a length other than its names'): those rows have no feature values.
    """
    table = _table(DECISION_FIELDS, rows)
    columns: dict[str, list[float | None]] = {}
    unnamed = 0
    for i, p in enumerate(rows):
        if not p.features:
            continue
        known = names.get(p.model_version or "")
        if known is None or len(known) != len(p.features):
            unnamed += 1
            continue
        for name, value in zip(known, p.features, strict=True):
            columns.setdefault(FEATURE_PREFIX + name, [None] * len(rows))[i] = value
    for name, values in columns.items():
        table = table.append_column(pa.field(name, pa.float64()), pa.array(values, pa.float64()))
    return table, unnamed


def plan_files(
    parsed: Iterable[Parsed], names: Mapping[str, Sequence[str]]
) -> tuple[list[tuple[str, pa.Table]], int]:
    """The files of a flush: one ``(key, table)`` per kind and hour.

    Returns:
        The files, and how many feature vectors could not be named (see :func:`decision_table`).
    """
    files, unnamed = [], 0
    for group in group_entries(parsed):
        if group.kind == "decision":
            table, missed = decision_table(group.rows, names)
            unnamed += missed
        else:
            table = outcome_table(group.rows)
        files.append((group.key, table))
    return files, unnamed


def _table(fields: Sequence[pa.Field], rows: Sequence[Parsed]) -> pa.Table:
    arrays = [pa.array([p.row[f.name] for p in rows], type=f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class Destination(Protocol):
    """Where the files go."""

    def write(self, key: str, table: pa.Table) -> str:
        """Write ``table`` as the Parquet file ``key`` (relative to the output), whole.

        Returns:
            The name written: the first of :func:`free_names` not taken yet.
        """

    def __str__(self) -> str:
        """The output, for log lines."""


def free_names(key: str) -> Iterator[str]:
    """``key``, then ``part-<id>.1.parquet``, ``.2``, ...: a file is never replaced.

    A sink that took over entries a slow one still holds may write a file of the same name;
    both are kept (the reader drops the duplicates), so neither erases rows of the other.
    """
    yield key
    stem = key.removesuffix(".parquet")
    yield from (f"{stem}.{n}.parquet" for n in itertools.count(1))


class LocalDestination:
    """A directory: each file written under a hidden name, synced, then linked to a free name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, key: str, table: pa.Table) -> str:
        """Write ``table`` under ``root``, parent directories created; nothing left on failure."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            pq.write_table(table, tmp)
            _sync(tmp)
            name = next(name for name in free_names(key) if self._link(tmp, name))
        finally:
            tmp.unlink(missing_ok=True)
        _sync(target.parent)  # the new name survives a power loss once the entries are acked
        return name

    def _link(self, tmp: Path, name: str) -> bool:
        """Give ``tmp`` the name unless it is taken (a link, unlike a rename, never replaces)."""
        try:
            (self.root / name).hardlink_to(tmp)
        except FileExistsError:
            return False
        return True

    def __str__(self) -> str:
        return str(self.root)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Destination:
    """An S3 prefix: each file one ``PutObject`` (``AWS_ENDPOINT_URL`` honoured by boto3)."""

    def __init__(self, bucket: str, prefix: str, client: S3Client | None = None) -> None:
        from approvals.registry.store import make_client

        self.bucket, self.prefix = bucket, prefix
        self.client: Any = client or make_client()

    def write(self, key: str, table: pa.Table) -> str:
        """Upload ``table`` under the prefix, whole; ``If-None-Match: *`` skips taken names."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return next(name for name in free_names(key) if self._put(name, buffer.getvalue()))

    def _put(self, name: str, body: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=s3_key(self.prefix, name), Body=body,
                                   IfNoneMatch="*")  # fmt: skip
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in TAKEN:
                return False
            raise
        return True

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as ``(bucket, prefix)`` (prefix without slashes at its ends).

    Raises:
        UserError: no bucket.
    """
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise UserError(f"{url}: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def s3_key(prefix: str, key: str) -> str:
    """``key`` under ``prefix`` (the bucket's root when the prefix is empty)."""
    return f"{prefix}/{key}" if prefix else key


def open_destination(out: str) -> Destination:
    """The destination of ``out``: ``s3://bucket/prefix`` or a local directory.

    Raises:
        UserError: an S3 URL without a bucket, or a local path that is not a directory.
    """
    if out.startswith("s3://"):
        return S3Destination(*split_s3(out))
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise UserError(f"{out} exists and is not a directory")
    return LocalDestination(root)
