"""Token-budget batching of the model replica (serve/batching.py) and its forward passes, without Ray."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sentiray.predictor import forward_passes
from serve.batching import Ticket, TokenBudgetBatcher


def _ids(*widths: int) -> list[list[int]]:
    return [[1] * w for w in widths]


class Recorder:
    """A `run` that records each batch as the widths of its requests' texts and answers with them."""

    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[list[int]]] = []
        self._fail = fail_first

    async def __call__(self, batch: list[Ticket]) -> list[list[int]]:
        await asyncio.sleep(0)
        self.batches.append([[len(s) for s in t.ids] for t in batch])
        if self._fail:
            self._fail = False
            raise RuntimeError("forward pass failed")
        return [[len(s) for s in t.ids] for t in batch]


async def _submit_all(batcher: TokenBudgetBatcher[list[int]], requests: Sequence[list[list[int]]]) -> list[object]:
    tickets = [batcher.ticket(ids) for ids in requests]  # all queued before the batcher runs
    return await asyncio.gather(*(t.future for t in tickets), return_exceptions=True)


def test_a_long_request_does_not_pad_a_batch_of_short_ones() -> None:
    run = Recorder()
    batcher = TokenBudgetBatcher(run, max_batch_size=32, max_batch_tokens=900, wait_s=0.05)
    requests = [_ids(10), _ids(12), _ids(10, 11), _ids(500), _ids(9)]
    results = asyncio.run(_submit_all(batcher, requests))
    assert results == [[10], [12], [10, 11], [500], [9]]
    # 4 short texts (4 x 12 padded tokens); the long one would make it 5 x 500 > 900: it opens the next
    # batch, and a short one would make that 2 x 500 > 900 too. Arrival order is kept.
    assert run.batches == [[[10], [12], [10, 11]], [[500]], [[9]]]


def test_requests_join_while_the_budget_allows() -> None:
    run = Recorder()
    batcher = TokenBudgetBatcher(run, max_batch_size=32, max_batch_tokens=1000, wait_s=0.05)
    asyncio.run(_submit_all(batcher, [_ids(100)] * 10 + [_ids(100)]))
    assert [sum(len(r) for r in b) for b in run.batches] == [10, 1]  # 10 x 100 = 1000 fits exactly


def test_the_text_count_caps_a_batch() -> None:
    run = Recorder()
    batcher = TokenBudgetBatcher(run, max_batch_size=3, max_batch_tokens=100_000, wait_s=0.05)
    asyncio.run(_submit_all(batcher, [_ids(5, 5), _ids(5), _ids(5), _ids(5, 5, 5, 5)]))
    assert run.batches == [[[5, 5], [5]], [[5]], [[5, 5, 5, 5]]]  # a request alone runs over the cap


def test_a_request_over_the_budget_alone_still_runs() -> None:
    run = Recorder()
    batcher = TokenBudgetBatcher(run, max_batch_size=32, max_batch_tokens=64, wait_s=0.0)
    assert asyncio.run(_submit_all(batcher, [_ids(512, 512)])) == [[512, 512]]


def test_a_request_cancelled_while_queued_is_never_computed() -> None:
    run = Recorder()
    batcher = TokenBudgetBatcher(run, max_batch_size=32, max_batch_tokens=10_000, wait_s=0.05)

    async def scenario() -> tuple[object, bool, bool]:
        keep, drop = batcher.ticket(_ids(7)), batcher.ticket(_ids(8))
        drop.future.cancel()  # as Serve does past request_timeout_s
        return await keep.future, keep.started, drop.started

    assert asyncio.run(scenario()) == ([7], True, False)
    assert run.batches == [[[7]]]


def test_a_failed_batch_fails_its_requests_and_the_next_batch_runs() -> None:
    run = Recorder(fail_first=True)
    batcher = TokenBudgetBatcher(run, max_batch_size=1, max_batch_tokens=10_000, wait_s=0.0)
    results = asyncio.run(_submit_all(batcher, [_ids(3), _ids(4)]))
    assert isinstance(results[0], RuntimeError)
    assert results[1] == [4]


def test_a_batch_waits_for_late_requests_up_to_wait_s() -> None:
    run = Recorder()
    batcher = TokenBudgetBatcher(run, max_batch_size=32, max_batch_tokens=10_000, wait_s=0.5)

    async def scenario() -> None:
        first = batcher.ticket(_ids(3))
        await asyncio.sleep(0.05)
        second = batcher.ticket(_ids(4))
        await asyncio.gather(first.future, second.future)

    asyncio.run(scenario())
    assert run.batches == [[[3], [4]]]


@pytest.mark.parametrize(
    ("lengths", "size", "tokens", "expected"),
    [
        # sorted by length; the long one goes alone once (n + 1) x 500 passes the budget
        ([30, 500, 20, 40], 32, 1000, [[2, 0, 3], [1]]),
        ([30, 500, 20, 40], 32, None, [[2, 0, 3, 1]]),
        ([30, 500, 20, 40], 2, None, [[2, 0], [3, 1]]),
        ([600], 32, 100, [[0]]),  # an input alone always runs
        ([], 32, 100, []),
    ],
)
def test_forward_passes(lengths: list[int], size: int, tokens: int | None, expected: list[list[int]]) -> None:
    assert forward_passes(lengths, size, tokens) == expected
