"""Adaptive batching inside the serving process.

Requests wait in one queue; a free model replica takes its fair share of the work in the
system (queued texts plus those the busy replicas run, split evenly over the replicas, at most
`max_batch_size`), and each request gets its slice of the results. The batch size follows the
load by itself: a lone request runs at once, and under load the requests that arrive while
batches run join the next ones. Nothing waits for a timer: a replica holds back only while
fewer texts are queued than its share, and at the latest until another replica finishes.

Why not BentoML's `batchable=True` API: it takes exactly one argument, so `/predict`'s contract
would need a second service in front of it, and that hop (HTTP, JSON and a second process on the
same cores) cost half of the in-process throughput on 2 CPU cores (README, "Performance").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")
logger = logging.getLogger("serving.batching")

# Weight of the newest batch in the running estimate of seconds per text.
EWMA_WEIGHT = 0.2


class Overloaded(RuntimeError):
    """The queue already holds more work than the latency bound allows; answer 503."""


@dataclass
class _Pending(Generic[R]):
    texts: Sequence[str]
    future: asyncio.Future[list[R]]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchRecord:
    """One model call: how many requests and texts it merged, and how long it ran."""

    requests: int
    texts: int
    seconds: float
    oldest_wait_s: float


def take_batch(sizes: Sequence[int], max_texts: int) -> int:
    """How many requests, from the front of the queue, go into the next batch.

    Whole requests only, at most max_texts texts, but always at least one request: a request
    larger than the limit runs alone rather than waiting forever.
    """
    total = 0
    for count, size in enumerate(sizes):
        if count and total + size > max_texts:
            return count
        total += size
    return len(sizes)


def fair_share(queued: int, busy: Sequence[int], replicas: int, max_texts: int) -> int:
    """How many texts a free replica should take now; 0 means wait (the caller asks again
    whenever a request arrives or a replica finishes).

    `busy` holds the batch sizes the other replicas are running. A free replica takes an even
    share of queued + running texts, and waits while the queue holds less than that share: two
    1-thread replicas fed "everything queued" settled at 32 concurrent clients into one replica
    running batches of about 30 while the other ran 1-2 texts at a time, several times dearer
    per text (README, "Performance"). With every replica free the share never exceeds the
    queue, so a lone request starts at once.
    """
    if queued <= 0 or len(busy) >= replicas:
        return 0
    share = min(-(-(queued + sum(busy)) // replicas), max_texts)
    return share if queued >= share else 0


def estimated_wait_s(queued_texts: int, seconds_per_text: float | None) -> float:
    """Seconds until a request queued now would start, from the recent cost per text."""
    return 0.0 if seconds_per_text is None else queued_texts * seconds_per_text


class AdaptiveBatcher(Generic[R]):
    """Merges concurrent `submit` calls into batched calls of the coroutine function `fn`.

    `fn` takes a list of texts and returns one result per text, in order; at most
    `concurrency` calls run at once (one per model replica). The queue and the loop task are
    created on the first `submit`, inside the serving event loop. The model processes' `fn`
    waits on their pipes in this loop (`serving.replicas.ReplicaPool.aclassify`), with no
    thread between the batcher and the pipe.
    """

    def __init__(
        self,
        fn: Callable[[list[str]], Awaitable[list[R]]],
        *,
        max_batch_size: int,
        max_latency_ms: float,
        on_batch: Callable[[BatchRecord], None] | None = None,
        concurrency: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000
        self._on_batch = on_batch
        self._queue: deque[_Pending[R]] = deque()
        self._queued_texts = 0
        self._wakeup: asyncio.Event | None = None
        # Texts in each running batch, by batch.
        self._busy: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.seconds_per_text: float | None = None

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    async def submit(self, texts: Sequence[str]) -> list[R]:
        """The results for `texts`, computed in some batch; Overloaded when the queue is full."""
        if not texts:
            return []
        wait = estimated_wait_s(self._queued_texts, self.seconds_per_text) / self.concurrency
        if wait > self.max_latency_s:
            raise Overloaded(
                f"server busy: about {wait:.1f} s of queued work, over the "
                f"{self.max_latency_s:.1f} s limit; retry later"
            )
        self._start()
        assert self._wakeup is not None
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(texts, future))
        self._queued_texts += len(texts)
        self._wakeup.set()
        return await future

    def _start(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def _run(self) -> None:
        assert self._wakeup is not None
        running: set[asyncio.Task[None]] = set()
        next_id = 0
        try:
            while True:
                share = fair_share(
                    self._queued_texts,
                    list(self._busy.values()),
                    self.concurrency,
                    self.max_batch_size,
                )
                if share == 0:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch = self._pop_batch(share)
                next_id += 1
                self._busy[next_id] = sum(len(p.texts) for p in batch)
                task = asyncio.create_task(self._run_one(next_id, batch))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()

    def _pop_batch(self, max_texts: int) -> list[_Pending[R]]:
        count = take_batch([len(p.texts) for p in self._queue], max_texts)
        batch = [self._queue.popleft() for _ in range(count)]
        self._queued_texts -= sum(len(p.texts) for p in batch)
        # A caller that went away (client disconnected, timeout) costs no compute.
        return [p for p in batch if not p.future.done()]

    async def _run_one(self, batch_id: int, batch: list[_Pending[R]]) -> None:
        """Run one batch started by _run, then free its replica."""

        def release() -> None:
            if self._busy.pop(batch_id, None) is not None and self._wakeup is not None:
                self._wakeup.set()

        try:
            await self._compute(batch, release)
        finally:
            release()

    async def _compute(self, batch: list[_Pending[R]], release: Callable[[], None]) -> None:
        if not batch:
            return
        texts = [text for pending in batch for text in pending.texts]
        started = time.perf_counter()
        try:
            results = await self._fn(texts)
            if len(results) != len(texts):
                raise RuntimeError(f"{len(texts)} texts but {len(results)} results")
        except asyncio.CancelledError:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(Overloaded("server shutting down"))
            raise
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        # The slot first: the next batch then starts before the event loop turns to answering
        # this one's requests, so the model never waits for HTTP work.
        release()
        seconds = time.perf_counter() - started
        self._learn_cost(len(texts), seconds)
        start = 0
        for pending in batch:
            end = start + len(pending.texts)
            if not pending.future.done():
                pending.future.set_result(results[start:end])
            start = end
        if self._on_batch is not None:
            record = BatchRecord(len(batch), len(texts), seconds, started - batch[0].enqueued)
            try:
                self._on_batch(record)
            except Exception:
                logger.exception("batch metrics failed")

    def _learn_cost(self, texts: int, seconds: float) -> None:
        """Update the cost per text from batches at least half full only: a long queue is
        served in full batches, and the per-text cost of small ones (several times higher)
        made the estimate shed a burst of 16-text requests that the model then served in
        under 4 s."""
        if texts * 2 < self.max_batch_size:
            return
        per_text = seconds / texts
        self.seconds_per_text = (
            per_text
            if self.seconds_per_text is None
            else (1 - EWMA_WEIGHT) * self.seconds_per_text + EWMA_WEIGHT * per_text
        )

    async def aclose(self) -> None:
        """Stop taking batches and fail whatever is still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(Overloaded("server shutting down"))
        self._queued_texts = 0
