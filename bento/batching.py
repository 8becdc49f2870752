"""The one adaptive batcher that HTTP and gRPC requests share, inside the serving process.

Continuous batching: a batch leaves as soon as a batch slot is free, carrying every request
queued by then (up to ``max_batch_size`` rows). Nothing waits on a timer, so at low load every
request is its own batch (no added latency; a request that finds nothing queued and a slot
free runs at once in its caller's task) and under load batches grow by themselves with the
queue, which is what amortises the Redis round trip, the feature build and the model call.
Up to ``concurrency`` batches run at once, so one batch's Redis round trip overlaps the next
one's numpy work. A request still queued ``max_latency_ms`` after it arrived is shed
(:class:`~gateway.OverloadedError`: HTTP 429 / gRPC RESOURCE_EXHAUSTED) instead of being
answered late.

Why not BentoML's ``batchable=True`` dispatcher: it sits behind its own HTTP route (gRPC could
reach it only through an inter-process HTTP hop, measured at 8-20 ms per call), it answers
overload with 503, and its latency model counts requests rather than rows, so a 1000-attempt
ScoreBatch looked like one slow request and shed the Score calls behind it for seconds (see
``docs/serving.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from gateway import OverloadedError

from approvals.serving.engine import Job

BatchFn = Callable[[Sequence[Job]], Awaitable[list[np.ndarray]]]


@dataclass
class _Queued:
    attempts: Job
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    """Adaptive batching of requests' attempts into calls of ``score``.

    Batch sizes count attempts (rows): a ScoreBatch of 1000 weighs 1000 Scores. A request is
    never split; one larger than ``max_batch_size`` is a batch of its own.
    """

    def __init__(
        self,
        score: BatchFn,
        max_batch_size: int,
        max_latency_ms: int,
        concurrency: int = 1,
        on_batch: Callable[[int], None] = lambda rows: None,
    ) -> None:
        """Batch calls of ``score``; ``on_batch`` sees the rows of every batch (a metric)."""
        if max_batch_size < 1 or max_latency_ms < 1 or concurrency < 1:
            raise ValueError("max_batch_size, max_latency_ms and concurrency must be >= 1")
        self._score = score
        self._on_batch = on_batch
        self._max_rows = max_batch_size
        self._deadline_s = max_latency_ms / 1000
        self._free = concurrency
        self._queue: deque[_Queued] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._kick_scheduled = False
        self._closed = False

    @property
    def queued(self) -> int:
        """Requests waiting for a batch slot."""
        return len(self._queue)

    async def __call__(self, attempts: Job) -> np.ndarray:
        """One row per attempt of one request, (probability, degraded), computed in a batch.

        Raises:
            OverloadedError: the request waited ``max_latency_ms`` without a batch slot, or the
                batcher is shut down.
        """
        if self._closed:
            raise OverloadedError("the service is shutting down")
        if self._free > 0 and not self._queue:
            return await self._alone(attempts)
        loop = asyncio.get_running_loop()
        job = _Queued(attempts, loop.create_future())
        self._queue.append(job)
        if not self._kick_scheduled:
            # Dispatch on the next turn of the loop, so requests parsed in this one join.
            self._kick_scheduled = True
            loop.call_soon(self._kick)
        return await job.future

    async def _alone(self, attempts: Job) -> np.ndarray:
        """A batch of one request, run by its caller: nothing is queued and a slot is free.

        The usual case below saturation (at 300 Score calls/s nearly every batch has one row):
        no future, no task and no extra turn of the event loop, which cost a single attempt
        more than its features. Requests arriving meanwhile take the other free slots or queue.
        """
        self._free -= 1
        try:
            self._on_batch(len(attempts))
            results = await self._score([attempts])
            if len(results) != 1:
                raise RuntimeError(f"scorer answered {len(results)} of 1 requests")
            return results[0]
        finally:
            self._free += 1
            if self._queue:
                self._kick()

    def shutdown(self) -> None:
        """Refuse new requests and shed the queued ones (running batches finish)."""
        self._closed = True
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(OverloadedError("the service is shutting down"))

    def _kick(self) -> None:
        self._kick_scheduled = False
        while self._free > 0:
            batch = self._take()
            if not batch:
                return
            self._free -= 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self) -> list[_Queued]:
        """The next batch: oldest first, past-deadline requests shed, abandoned ones skipped."""
        batch: list[_Queued] = []
        rows = 0
        now = time.monotonic()
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # the caller went away (cancelled)
                self._queue.popleft()
                continue
            if now - job.enqueued > self._deadline_s:
                self._queue.popleft()
                job.future.set_exception(OverloadedError("model batcher is at capacity"))
                continue
            if batch and rows + len(job.attempts) > self._max_rows:
                break
            self._queue.popleft()
            batch.append(job)
            rows += len(job.attempts)
        return batch

    async def _run(self, batch: list[_Queued]) -> None:
        try:
            self._on_batch(sum(len(job.attempts) for job in batch))
            results = await self._score([job.attempts for job in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"scorer answered {len(results)} of {len(batch)} requests")
        except Exception as exc:  # every caller of the batch sees the failure
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
        else:
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
        finally:
            self._free += 1
            self._kick()
