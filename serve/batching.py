"""Batching of tokenized requests by a budget of padded tokens (as TEI's --max-batch-tokens), in asyncio.

A request is one or more token-id sequences. A batch takes requests in arrival order and closes when
the next request would take it past `max_batch_tokens` padded tokens (texts x the longest sequence, what
one forward pass over the batch would compute) or past `max_batch_size` texts, or when `wait_s` has
passed since its first request. That request then opens the next batch, so order is kept and a long
review waits at most one batch; a request alone always runs, whatever its size.

Requests cancelled while queued (Serve cancels a request past request_timeout_s or when its client
goes) are left out when a batch forms, so they are never computed; `Ticket.started` says whether a
cancelled one had been taken by a batch already.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Ticket:
    """One request in the queue; `started` once a batch took it."""

    ids: Sequence[Sequence[int]]
    future: asyncio.Future[Any] = field(repr=False)
    started: bool = False

    @property
    def width(self) -> int:
        return max((len(s) for s in self.ids), default=0)


def fits(batch_texts: int, batch_width: int, ticket: Ticket, max_batch_size: int, max_batch_tokens: int) -> bool:
    """Whether the ticket can join a batch of batch_texts texts padded to batch_width tokens."""
    texts = batch_texts + len(ticket.ids)
    return texts <= max_batch_size and texts * max(batch_width, ticket.width) <= max_batch_tokens


class TokenBudgetBatcher(Generic[T]):
    """Queues requests and hands them to `run` in batches; `run` returns one result per request."""

    def __init__(
        self,
        run: Callable[[list[Ticket]], Awaitable[list[T]]],
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        wait_s: float,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.wait_s = wait_s
        self._queue: asyncio.Queue[Ticket] | None = None
        self._carry: Ticket | None = None  # the request that closed the last batch opens the next
        self._task: asyncio.Task[None] | None = None

    def ticket(self, ids: Sequence[Sequence[int]]) -> Ticket:
        """Queue a request; await `ticket.future` for its result."""
        if self._queue is None:  # created on first use: the queue belongs to the loop that runs it
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="sentiray-batcher")
        ticket = Ticket(ids, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(ticket)
        return ticket

    async def _next(self, timeout_s: float | None) -> Ticket | None:
        """The next live request, or None when none arrives within timeout_s."""
        assert self._queue is not None
        while True:
            if self._carry is not None:
                ticket, self._carry = self._carry, None
            elif timeout_s is None:
                ticket = await self._queue.get()
            elif not self._queue.empty():
                ticket = self._queue.get_nowait()
            elif timeout_s <= 0:
                return None
            else:
                try:
                    ticket = await asyncio.wait_for(self._queue.get(), timeout_s)
                except TimeoutError:
                    return None
            if not ticket.future.done():  # done already: cancelled while queued
                return ticket

    async def _form(self) -> list[Ticket]:
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        assert first is not None
        batch, texts, width = [first], len(first.ids), first.width
        deadline = loop.time() + self.wait_s
        while texts < self.max_batch_size:
            ticket = await self._next(deadline - loop.time())
            if ticket is None:
                break
            if not fits(texts, width, ticket, self.max_batch_size, self.max_batch_tokens):
                self._carry = ticket
                break
            batch.append(ticket)
            texts, width = texts + len(ticket.ids), max(width, ticket.width)
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._form()
            batch = [t for t in batch if not t.future.done()]
            if not batch:
                continue
            for t in batch:
                t.started = True
            try:
                results = await self._run(batch)
            except Exception as e:  # every caller hears the error; the loop goes on with the next batch
                for t in batch:
                    if not t.future.done():
                        t.future.set_exception(e)
                continue
            for t, result in zip(batch, results, strict=True):
                if not t.future.done():  # a caller cancelled while its batch ran gets nothing
                    t.future.set_result(result)
