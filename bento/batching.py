"""The one adaptive batcher that HTTP and gRPC requests share, inside the serving process.

BentoML's batchable APIs batch with its ``CorkDispatcher`` behind their own HTTP route only,
so a gRPC servicer could reach one solely through an inter-process HTTP hop (the first design,
measured at 8-20 ms per call under load on two cores). Here the service owns one
``CorkDispatcher``, the same class and algorithm BentoML builds for ``batchable=True`` APIs,
with explicit ``max_batch_size`` / ``max_latency_ms``: every Score, ScoreBatch, RankRoutes and
AdviseRetry call of either protocol queues its validated attempts into it, and one batch is one
Redis read, one feature build and one model call (:class:`approvals.serving.Pipeline`). Up to
``concurrency`` batches run at once, so one batch's Redis round trip overlaps the next one's
numpy work. ``docs/serving.md`` has the measurements behind the numbers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher, NonBlockSema
from gateway import OverloadedError

from approvals.contract import Attempt

Job = list[Attempt]
BatchFn = Callable[[Sequence[Job]], Awaitable[list[np.ndarray]]]


class Batcher:
    """Adaptive batching of requests' attempts into one call of ``score``.

    Batch sizes count attempts (rows), so a ScoreBatch of 1000 weighs 1000 Scores; a request
    larger than the room left in a batch is split across two calls, as BentoML does.
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
        self._score = score
        self._on_batch = on_batch
        self._dispatcher: CorkDispatcher[Job, np.ndarray] = CorkDispatcher(
            max_latency_in_ms=max_latency_ms,
            max_batch_size=max_batch_size,
            shared_sema=NonBlockSema(concurrency),
            fallback=self._shed,
            get_batch_size=len,
            batch_dim=(0, 0),
        )
        self._call = self._dispatcher(self._run)

    async def __call__(self, attempts: Job) -> np.ndarray:
        """One row per attempt of one request, (probability, degraded), computed in a batch.

        Raises:
            OverloadedError: the batcher shed the request (queued past ``max_latency_ms``).
        """
        result = await self._call(attempts)
        if result is None:  # the dispatcher's fallback raises; this is only for type checkers
            raise OverloadedError("model batcher is at capacity")
        return result

    def shutdown(self) -> None:
        """Stop the dispatcher's controller task (queued calls are cancelled)."""
        self._dispatcher.shutdown()

    async def _run(self, batch: Sequence[Job]) -> list[np.ndarray]:
        self._on_batch(sum(len(job) for job in batch))
        return await self._score(batch)

    @staticmethod
    def _shed() -> np.ndarray:
        raise OverloadedError("model batcher is at capacity")
