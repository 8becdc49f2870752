"""The decision log's writer: every answer onto a Redis stream, off the request path.

A call hands its answer to :meth:`DecisionLog.record` (a ``put_nowait`` on a bounded queue:
no await, no I/O, no encoding); one background task per worker turns queued answers into
stream entries (``docs/decisions.md``) and writes them in pipelined batches, lingering 50 ms
after the first answer of a batch so that a write carries many (a round trip per answer would
cost the event loop more than the answers themselves). A full queue or
a failing Redis drops entries and counts them in ``approvals_decisions_total{outcome}``;
neither ever delays or fails a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from approvals.contract import FEATURE_COLUMNS, Attempt, AttemptColumns
from approvals.features.redis_settings import RedisSettings

__all__ = ["Decision", "DecisionLog", "Outcomes"]

_LOG = logging.getLogger("approvals.service")
_BATCH = 500  # entries per pipelined write
_LINGER_S = 0.05  # after the first queued answer, wait this long for more: one write per batch
_RETRY_S = 1.0  # pause after a failed write


@dataclass(frozen=True)
class Decision:
    """Answers to log, as the call had them (encoded later, by the writer).

    ``attempts`` is one attempt or a request's table; ``p`` and ``features`` have a row per
    attempt (``features`` may have no columns); ``retry`` is an AdviseRetry's advice.
    """

    endpoint: str
    variant: str
    model_version: str
    degraded: bool
    attempts: Attempt | AttemptColumns
    p: Sequence[float | None] | Sequence[float]
    features: np.ndarray
    retry: dict[str, Any] | None = None
    decided_at: float = 0.0  # epoch seconds
    shadow: bool = False  # the challenger's answer, logged and never returned


@dataclass(frozen=True)
class Outcomes:
    """Outcomes that ReportOutcomes applied (or found late): labels for the log."""

    columns: AttemptColumns
    keep: np.ndarray  # which rows to log
    reported_at: float


class DecisionLog:
    """The bounded queue and its writer task (one per worker process)."""

    def __init__(
        self, settings: RedisSettings, *, maxlen: int, queue: int,
        features: Mapping[str, Sequence[str]], counter: Any, with_features: bool = True,
    ) -> None:  # fmt: skip
        """``features``: per model version its feature names (what a vector's values are)."""
        self.settings, self.maxlen = settings, maxlen
        self.stream = f"{settings.prefix}:decisions"
        self._names = {version: json.dumps(list(names)) for version, names in features.items()}
        self._with_features = with_features
        self._queue: asyncio.Queue[Decision | Outcomes] = asyncio.Queue(queue)
        self._counter = counter
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._named = False

    def record(self, item: Decision | Outcomes) -> None:
        """Queue answers for the log; never blocks, never raises (a full queue drops them)."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._counter.labels(outcome="queue_full").inc(_size(item))
        else:
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._drain())

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (for at most ``timeout_s``), then stop and close."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None

    async def _drain(self) -> None:
        while True:
            items = [await self._queue.get()]
            if self._queue.qsize() < _BATCH:  # a busy queue is written at once
                await asyncio.sleep(_LINGER_S)
            while len(items) < _BATCH and not self._queue.empty():
                items.append(self._queue.get_nowait())
            try:
                await self._write(items)
            except Exception as exc:
                self._counter.labels(outcome="redis_error").inc(sum(map(_size, items)))
                _LOG.warning("decision log write failed: %s", type(exc).__name__)
                await asyncio.sleep(_RETRY_S)
            finally:
                for _ in items:
                    self._queue.task_done()

    async def _write(self, items: list[Decision | Outcomes]) -> None:
        entries = [entry for item in items for entry in self._entries(item)]
        conn = self._client()
        async with conn.pipeline(transaction=False) as pipe:
            if not self._named and self._names:
                pipe.hset(f"{self.stream}:features", mapping=self._names)
            for kind, data in entries:
                pipe.xadd(self.stream, {"kind": kind, "data": data}, maxlen=self.maxlen,
                          approximate=True)  # fmt: skip
            await pipe.execute()
        self._named = True
        self._counter.labels(outcome="logged").inc(len(entries))

    def _entries(self, item: Decision | Outcomes) -> Iterator[tuple[str, str]]:
        if isinstance(item, Outcomes):
            for row in _rows(item.columns, item.keep):
                yield "outcome", json.dumps({
                    "attempt_id": row["attempt_id"], "payment_id": row["payment_id"],
                    "approved": row["approved"], "response_code": row["response_code"],
                    "merchant_advice_code": row.get("merchant_advice_code"),
                    "reported_at": _iso(item.reported_at),
                })  # fmt: skip
            return
        attempts = (
            [item.attempts.model_dump(mode="json")] if isinstance(item.attempts, Attempt)
            else list(_rows(item.attempts, None))
        )  # fmt: skip
        decided_at = _iso(item.decided_at)
        for i, attempt in enumerate(attempts):
            features = (
                item.features[i].tolist() if self._with_features and item.features.size else []
            )
            yield "decision", json.dumps({
                "endpoint": item.endpoint, "variant": item.variant,
                "model_version": item.model_version, "decided_at": decided_at,
                "degraded": item.degraded, "p_approve": item.p[i], "attempt": attempt,
                "retry": item.retry, "shadow": item.shadow,
                "features": [_finite(v) for v in features],
            })  # fmt: skip

    def _client(self) -> Any:
        if self._conn is None:
            import redis.asyncio

            options = {**self.settings.client_options(), "socket_timeout": 2.0}
            self._conn = redis.asyncio.Redis.from_url(self.settings.url, **options)
        return self._conn


def now() -> float:
    """The time an answer is given (epoch seconds)."""
    return time.time()


def _size(item: Decision | Outcomes) -> int:
    if isinstance(item, Outcomes):
        return int(item.keep.sum())
    return 1 if isinstance(item.attempts, Attempt) else len(item.attempts)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _rows(columns: AttemptColumns, keep: np.ndarray | None) -> Iterator[dict[str, Any]]:
    """Rows of a validated table as the API's JSON values (times ISO 8601 UTC)."""
    data = columns.columns
    names = [n for n in (*FEATURE_COLUMNS, "approved", "response_code") if n in data]
    for i in range(len(columns)) if keep is None else np.flatnonzero(keep).tolist():
        row: dict[str, Any] = {}
        for name in names:
            value = data[name][i]
            if isinstance(value, np.datetime64):
                value = np.datetime_as_string(value.astype("datetime64[us]")) + "Z"
            elif isinstance(value, np.generic):
                value = value.item()
            row[name] = value
        yield row
