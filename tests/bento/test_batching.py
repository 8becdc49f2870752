"""The shared batcher on its own: batching under load, row limits, shedding, failures, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
from batching import Batcher
from gateway import OverloadedError


class Scorer:
    """Records every batch; answers row i of a request with (i + offset, 0)."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
        self.batches.append([len(job) for job in batch])
        await self.release.wait()
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("scorer broke")
        return [np.column_stack([np.asarray(job, float), np.zeros(len(job))]) for job in batch]


def rows(*values: int) -> list[int]:
    return list(values)


def run(coro: object) -> object:
    return asyncio.run(coro)


def test_a_lone_request_is_answered_alone_and_in_order() -> None:
    async def main() -> tuple[np.ndarray, list[list[int]]]:
        scorer = Scorer()
        batcher = Batcher(scorer, max_batch_size=100, max_latency_ms=1000)
        answer = await batcher(rows(7, 8, 9))
        return answer, scorer.batches

    answer, batches = run(main())
    assert batches == [[3]]
    assert answer[:, 0].tolist() == [7, 8, 9]


def test_requests_arriving_while_a_batch_runs_share_the_next_batch() -> None:
    async def main() -> tuple[list[np.ndarray], list[list[int]]]:
        scorer = Scorer()
        scorer.release.clear()
        batcher = Batcher(scorer, max_batch_size=100, max_latency_ms=5000, concurrency=1)
        first = asyncio.ensure_future(batcher(rows(0)))
        await asyncio.sleep(0.01)  # the first batch is running (held by the scorer)
        rest = [asyncio.ensure_future(batcher(rows(i, i))) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        scorer.release.set()
        answers = await asyncio.gather(first, *rest)
        return answers, scorer.batches

    answers, batches = run(main())
    # then one batch for the lone first call, one for the five queued behind it
    assert batches == [[1], [2, 2, 2, 2, 2]]
    assert [a[:, 0].tolist() for a in answers] == [[0]] + [[i, i] for i in range(1, 6)]


def test_batches_respect_max_batch_size_in_rows_and_never_split_a_request() -> None:
    async def main() -> list[list[int]]:
        scorer = Scorer()
        scorer.release.clear()
        batcher = Batcher(scorer, max_batch_size=5, max_latency_ms=5000)
        held = asyncio.ensure_future(batcher(rows(0)))
        await asyncio.sleep(0.01)
        sizes = (2, 2, 2, 7, 1)
        calls = [asyncio.ensure_future(batcher(list(range(n)))) for n in sizes]
        await asyncio.sleep(0.01)
        scorer.release.set()
        answers = await asyncio.gather(held, *calls)
        assert [len(a) for a in answers[1:]] == list(sizes)
        return scorer.batches

    assert run(main()) == [[1], [2, 2], [2], [7], [1]]


def test_requests_queued_past_the_deadline_are_shed_not_answered_late() -> None:
    async def main() -> list[object]:
        scorer = Scorer(delay=0.3)
        batcher = Batcher(scorer, max_batch_size=100, max_latency_ms=100, concurrency=1)
        first = asyncio.ensure_future(batcher(rows(1)))
        await asyncio.sleep(0.01)
        late = asyncio.ensure_future(batcher(rows(2)))
        results = await asyncio.gather(first, late, return_exceptions=True)
        after = await batcher(rows(3))
        return [*results, after]

    first, late, after = run(main())
    assert isinstance(first, np.ndarray)
    assert isinstance(late, OverloadedError)
    assert isinstance(after, np.ndarray), "the batcher keeps serving after shedding"


def test_a_failing_batch_fails_its_callers_and_the_batcher_recovers() -> None:
    async def main() -> tuple[list[object], np.ndarray]:
        scorer = Scorer(fail=True)
        batcher = Batcher(scorer, max_batch_size=100, max_latency_ms=1000, concurrency=1)
        failed = await asyncio.gather(batcher(rows(1)), batcher(rows(2)), return_exceptions=True)
        scorer.fail = False
        return failed, await batcher(rows(3))

    failed, ok = run(main())
    assert all(isinstance(f, RuntimeError) for f in failed)
    assert ok[:, 0].tolist() == [3]


def test_shutdown_sheds_queued_requests_and_refuses_new_ones() -> None:
    async def main() -> list[object]:
        scorer = Scorer()
        scorer.release.clear()
        batcher = Batcher(scorer, max_batch_size=100, max_latency_ms=5000, concurrency=1)
        running = asyncio.ensure_future(batcher(rows(1)))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher(rows(2)))
        await asyncio.sleep(0.01)
        batcher.shutdown()
        scorer.release.set()
        refused: object
        try:
            await batcher(rows(3))
        except OverloadedError as exc:
            refused = exc
        return [*(await asyncio.gather(running, queued, return_exceptions=True)), refused]

    running, queued, refused = run(main())
    assert isinstance(running, np.ndarray), "a running batch finishes"
    assert isinstance(queued, OverloadedError)
    assert isinstance(refused, OverloadedError)


def test_a_cancelled_caller_is_skipped() -> None:
    async def main() -> list[list[int]]:
        scorer = Scorer()
        scorer.release.clear()
        batcher = Batcher(scorer, max_batch_size=100, max_latency_ms=5000, concurrency=1)
        running = asyncio.ensure_future(batcher(rows(1)))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher(rows(2, 2)))
        kept = asyncio.ensure_future(batcher(rows(3)))
        await asyncio.sleep(0.01)
        gone.cancel()
        scorer.release.set()
        await asyncio.gather(running, kept)
        return scorer.batches

    assert run(main()) == [[1], [1]]


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        Batcher(Scorer(), max_batch_size=0, max_latency_ms=10)


def test_a_request_that_finds_a_free_slot_and_no_queue_runs_in_its_callers_task() -> None:
    async def main() -> tuple[bool, list[list[int]]]:
        seen: list[asyncio.Task[object] | None] = []
        scorer = Scorer()

        async def score(batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
            seen.append(asyncio.current_task())
            return await scorer(batch)

        batcher = Batcher(score, max_batch_size=100, max_latency_ms=1000)
        caller = asyncio.ensure_future(batcher(rows(4)))
        await caller
        return seen == [caller], scorer.batches

    same_task, batches = run(main())
    assert same_task, "a lone request needs no task, future or turn of the loop of its own"
    assert batches == [[1]]


def test_lone_requests_take_free_slots_then_later_ones_queue_and_share_a_batch() -> None:
    async def main() -> tuple[list[list[int]], list[list[float]]]:
        scorer = Scorer()
        scorer.release.clear()
        batcher = Batcher(scorer, max_batch_size=100, max_latency_ms=5000, concurrency=2)
        alone = [asyncio.ensure_future(batcher(rows(i))) for i in (1, 2)]
        await asyncio.sleep(0.01)  # both slots taken by lone requests
        queued = [asyncio.ensure_future(batcher(rows(i))) for i in (3, 4, 5)]
        await asyncio.sleep(0.01)
        assert batcher.queued == 3
        scorer.release.set()
        answers = await asyncio.gather(*alone, *queued)
        return scorer.batches, [a[:, 0].tolist() for a in answers]

    batches, answers = run(main())
    assert batches == [[1], [1], [1, 1, 1]]
    assert answers == [[1], [2], [3], [4], [5]]


def test_a_cancelled_lone_request_gives_its_slot_back() -> None:
    async def main() -> tuple[object, list[list[int]]]:
        scorer = Scorer()
        scorer.release.clear()
        batcher = Batcher(scorer, max_batch_size=100, max_latency_ms=5000, concurrency=1)
        gone = asyncio.ensure_future(batcher(rows(1)))
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(batcher(rows(2)))  # no slot: queued behind it
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        scorer.release.set()
        answer = await asyncio.wait_for(waiting, 1)
        later = await asyncio.wait_for(batcher(rows(3)), 1)
        return (answer[:, 0].tolist(), later[:, 0].tolist()), scorer.batches

    answers, batches = run(main())
    assert answers == ([2], [3])
    assert batches == [[1], [1], [1]]
