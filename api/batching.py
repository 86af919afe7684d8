"""Dynamic batching: concurrent requests gathered into one model call and answered separately.

What TorchServe (``batch_size``, ``max_batch_delay``) and Triton Inference Server
(``dynamic_batching { max_queue_delay_microseconds }``) do for their models, for the routes whose
work is a model forward (``/v1/score``, ``/v1/embed``). A route submits its request's items
(one sequence each) with their size in tokens and a group (items of one group can share a
forward pass: same route, same options) and awaits their results. :class:`DynamicBatcher`:

* waits up to ``max_wait_s`` after the oldest queued item arrived for more items of its group,
  or less when ``max_batch_tokens`` are already queued (items that queued while the model was
  busy have waited long enough and go at once);
* hands the group's items, oldest first and up to ``max_batch_tokens`` (always at least one),
  to ``compute(group, payloads)`` on the model thread, which returns one result per payload;
* answers each item separately: if ``compute`` fails as a whole, every item of the batch is
  retried alone, so one request's error is its own and never its neighbours';
* admits a request's items all together or not at all: when more than ``max_queue`` items would
  wait (and some already do), the request is refused with :class:`Overloaded` (the server answers 503 with a
  ``Retry-After`` estimated from the queued tokens and the measured speed), so a server under
  overload answers quickly instead of queueing without bound;
* on :meth:`stop` runs what is queued without further waiting, then ends; items submitted
  after that are refused with :class:`ShuttingDown` (503).

Answers equal one-at-a-time answers only if ``compute`` makes them so: the scoring and
embedding computations given here run rows of equal length together (the library's
``log_probs_many`` groups by length; embeddings are grouped by length too), so no sequence is
ever padded or packed with another's.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Hashable, Sequence

Compute = Callable[[Hashable, list], list]
Runner = Callable[..., Awaitable[Any]]


class Overloaded(RuntimeError):
    """The model's queue is full (the server answers 503 with ``Retry-After: retry_after``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(RuntimeError):
    """The batcher was stopped; nothing new is taken."""


@dataclass(eq=False)
class _Item:
    payload: Any
    tokens: int
    group: Hashable
    future: asyncio.Future
    arrived: float


@dataclass
class BatchStats:
    """What a batcher has done, for ``/v1/models`` and the tests."""

    batches: int = 0  # calls of compute with gathered items (retries alone not counted)
    items: int = 0
    tokens: int = 0
    largest: int = 0  # most items in one batch
    refused: int = 0  # items refused with Overloaded
    retried_alone: int = 0  # items of failed batches run again on their own
    seconds_per_token: float | None = field(default=None, repr=False)  # running estimate, for Retry-After

    def to_dict(self) -> dict:
        return {"batches": self.batches, "items": self.items, "tokens": self.tokens, "largest_batch": self.largest,
                "mean_items_per_batch": round(self.items / self.batches, 2) if self.batches else None,
                "refused": self.refused, "retried_alone": self.retried_alone}


class DynamicBatcher:
    """Gathers concurrent items of one group into one ``compute`` call (see the module docstring).

    Args:
        compute: ``compute(group, payloads) -> results``, one result (or exception instance)
            per payload; runs through ``run``.
        run: ``await run(fn, *args)`` runs ``fn`` off the event loop (the model thread).
        max_wait_s: How long the oldest queued item may wait for others (0: never wait; take
            whatever queued while the model was busy).
        max_batch_tokens: Most tokens per batch (a larger item still runs, alone).
        max_queue: Most items waiting (not yet in a running batch).
        name: For messages.
    """

    def __init__(self, compute: Compute, run: Runner, *, max_wait_s: float, max_batch_tokens: int, max_queue: int,
                 name: str = "model") -> None:
        if max_wait_s < 0 or max_batch_tokens < 1 or max_queue < 1:
            raise ValueError(f"need max_wait_s >= 0, max_batch_tokens >= 1, max_queue >= 1; got {max_wait_s}, "
                             f"{max_batch_tokens}, {max_queue}")
        self.compute, self.run = compute, run
        self.max_wait_s, self.max_batch_tokens, self.max_queue, self.name = max_wait_s, max_batch_tokens, max_queue, name
        self.stats = BatchStats()
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_tokens = 0
        self._arrival = asyncio.Event()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"genoseq-{name}-batcher")

    # ------------------------------------------------------------------ requests
    @property
    def queued(self) -> int:
        return len(self._queue)

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (at least 1): queued tokens x measured speed."""
        per_token = self.stats.seconds_per_token
        estimate = self._queued_tokens * per_token if per_token is not None else 1.0
        return max(1, min(60, math.ceil(estimate)))

    async def submit(self, payloads: Sequence, tokens: Sequence[int], group: Hashable = None) -> list:
        """Results of one request's items, in order; raises the first item's exception if any failed.

        All items are queued together or none is: :class:`Overloaded` when they would take
        the queue past ``max_queue`` items (an empty queue takes a request of any size).
        """
        if self._closing:
            raise ShuttingDown(f"the {self.name} batcher is stopping")
        if self._queue and len(self._queue) + len(payloads) > self.max_queue:  # (an empty queue takes any request)
            self.stats.refused += len(payloads)
            raise Overloaded(f"the server is busy ({len(self._queue)} sequences waiting for the {self.name}); "
                             "retry later", self.retry_after())
        loop = asyncio.get_running_loop()
        now = loop.time()
        items = [_Item(p, int(t), group, loop.create_future(), now) for p, t in zip(payloads, tokens, strict=True)]
        self._queue.extend(items)
        self._queued_tokens += sum(it.tokens for it in items)
        self._arrival.set()
        try:
            return list(await asyncio.gather(*(it.future for it in items)))
        finally:  # the request is gone (answered, failed or cancelled): its other items need not run
            for it in items:
                it.future.cancel()

    async def stop(self) -> None:
        """Run what is queued (without waiting for more), then end the batcher's task."""
        self._closing = True
        self._arrival.set()
        await self._task

    # ------------------------------------------------------------------ the loop
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_abandoned()
            if not self._queue:
                if self._closing:
                    return
                self._arrival.clear()
                await self._arrival.wait()
                continue
            first = self._queue[0]
            while not self._closing and self._group_tokens(first.group) < self.max_batch_tokens:
                remaining = first.arrived + self.max_wait_s - loop.time()
                if remaining <= 0:
                    break
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take(first.group)
            if batch:
                await self._run_batch(first.group, batch)

    def _drop_abandoned(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._queued_tokens -= self._queue.popleft().tokens

    def _group_tokens(self, group: Hashable) -> int:
        return sum(it.tokens for it in self._queue if it.group == group and not it.future.done())

    def _take(self, group: Hashable) -> list[_Item]:
        """The group's queued items, oldest first, up to ``max_batch_tokens`` (at least one)."""
        batch: list[_Item] = []
        kept: collections.deque[_Item] = collections.deque()
        tokens = 0
        for it in self._queue:
            if it.future.done():
                continue
            if it.group == group and (not batch or tokens + it.tokens <= self.max_batch_tokens):
                batch.append(it)
                tokens += it.tokens
            else:
                kept.append(it)
        self._queue = kept
        self._queued_tokens = sum(it.tokens for it in kept)
        return batch

    async def _run_batch(self, group: Hashable, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            results = await self.run(self.compute, group, [it.payload for it in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"compute returned {len(results)} results for {len(batch)} items")
        except Exception as err:  # noqa: BLE001 - a batch of several is retried item by item below
            results = [err] if len(batch) == 1 else None
        self._record(len(batch), sum(it.tokens for it in batch), time.perf_counter() - started)
        if results is None:  # so that one request's failure is not its neighbours'
            self.stats.retried_alone += len(batch)
            results = [None if it.future.done() else await self._alone(group, it) for it in batch]
        for it, result in zip(batch, results):
            if it.future.done():
                continue
            if isinstance(result, BaseException):
                it.future.set_exception(result)
            else:
                it.future.set_result(result)

    async def _alone(self, group: Hashable, item: _Item) -> Any:
        try:
            return (await self.run(self.compute, group, [item.payload]))[0]
        except Exception as err:  # noqa: BLE001 - handed to its request
            return err

    def _record(self, items: int, tokens: int, seconds: float) -> None:
        s = self.stats
        s.batches += 1
        s.items += items
        s.tokens += tokens
        s.largest = max(s.largest, items)
        if tokens:
            rate = seconds / tokens
            s.seconds_per_token = rate if s.seconds_per_token is None else 0.8 * s.seconds_per_token + 0.2 * rate


__all__ = ["BatchStats", "DynamicBatcher", "Overloaded", "ShuttingDown"]
