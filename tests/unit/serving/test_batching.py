"""The in-process adaptive batcher: how it merges, splits, sheds and fails, on a fake model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from serving.batching import (
    AdaptiveBatcher,
    BatchRecord,
    Overloaded,
    estimated_wait_s,
    fair_share,
    take_batch,
)

R = TypeVar("R")


def on_thread(model: Callable[[list[str]], R]) -> Callable[[list[str]], Awaitable[R]]:
    """A blocking fake model as the batcher's coroutine function, on a thread of its own (as
    `InProcessReplica.aclassify` runs a model in the serving process)."""

    async def run(texts: list[str]) -> R:
        return await asyncio.to_thread(model, texts)

    return run


@pytest.mark.parametrize(
    ("sizes", "max_texts", "expected"),
    [
        ([1, 1, 1], 64, 3),
        ([16, 16, 16, 16, 16], 64, 4),
        ([40, 30], 64, 1),
        ([100, 1], 64, 1),  # an oversized request runs alone instead of waiting forever
        ([1, 100], 64, 1),
        ([64], 64, 1),
        ([], 64, 0),
    ],
)
def test_take_batch(sizes: list[int], max_texts: int, expected: int) -> None:
    assert take_batch(sizes, max_texts) == expected


@pytest.mark.parametrize(
    ("queued", "busy", "replicas", "max_texts", "expected"),
    [
        (1, [], 2, 64, 1),  # a lone request starts at once
        (0, [], 2, 64, 0),  # nothing to do
        (30, [], 2, 64, 15),  # two free replicas split a burst
        (15, [15], 2, 64, 15),  # the second takes the rest
        (2, [28], 2, 64, 0),  # too little to balance the busy replica: wait for it
        (5, [1], 2, 64, 3),  # ceil((5 + 1) / 2)
        (3, [1, 1], 2, 64, 0),  # no free replica
        (200, [64], 2, 64, 64),  # never more than max_texts
        (7, [], 1, 64, 7),  # one replica: everything queued, as before
        (12, [30], 3, 64, 0),  # three replicas: share ceil(42 / 3) = 14 > 12
        (15, [30], 3, 64, 15),
    ],
)
def test_fair_share(
    queued: int, busy: list[int], replicas: int, max_texts: int, expected: int
) -> None:
    assert fair_share(queued, busy, replicas, max_texts) == expected


def test_estimated_wait() -> None:
    assert estimated_wait_s(100, None) == 0.0
    assert estimated_wait_s(100, 0.005) == pytest.approx(0.5)
    assert estimated_wait_s(0, 0.005) == 0.0


class GatedModel:
    """Upper-cases texts; the first call blocks until released, so requests pile up behind it."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()

    def __call__(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.release.wait(timeout=10)
        return [t.upper() for t in texts]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_requests_that_arrive_during_a_batch_share_the_next_one() -> None:
    model = GatedModel()
    records: list[BatchRecord] = []

    async def scenario() -> list[list[str]]:
        batcher = AdaptiveBatcher(
            on_thread(model), max_batch_size=64, max_latency_ms=60_000, on_batch=records.append
        )
        first = asyncio.create_task(batcher.submit(["a"]))
        await _settle()  # "a" is now running alone, blocked
        rest = [asyncio.create_task(batcher.submit([f"b{i}", f"c{i}"])) for i in range(3)]
        await _settle()
        model.release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.aclose()
        return results

    results = asyncio.run(scenario())
    assert results == [["A"], ["B0", "C0"], ["B1", "C1"], ["B2", "C2"]]
    assert model.calls == [["a"], ["b0", "c0", "b1", "c1", "b2", "c2"]]
    assert [(r.requests, r.texts) for r in records] == [(1, 1), (3, 6)]


def test_batches_hold_at_most_max_batch_size_texts() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = AdaptiveBatcher(on_thread(model), max_batch_size=4, max_latency_ms=60_000)
        first = asyncio.create_task(batcher.submit(["x"]))
        await _settle()
        rest = [asyncio.create_task(batcher.submit(["p", "q", "r"])) for _ in range(3)]
        await _settle()
        model.release.set()
        await asyncio.gather(first, *rest)
        await batcher.aclose()

    asyncio.run(scenario())
    assert [len(c) for c in model.calls] == [1, 3, 3, 3]


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on() -> None:
    def model(texts: list[str]) -> list[str]:
        if "boom" in texts:
            raise RuntimeError("model exploded")
        return texts

    async def scenario() -> list[str]:
        batcher = AdaptiveBatcher(on_thread(model), max_batch_size=8, max_latency_ms=60_000)
        with pytest.raises(RuntimeError, match="model exploded"):
            await batcher.submit(["boom"])
        after = await batcher.submit(["fine"])
        await batcher.aclose()
        return after

    assert asyncio.run(scenario()) == ["fine"]


def test_a_wrong_number_of_results_is_an_error_not_a_misalignment() -> None:
    async def scenario() -> None:
        batcher = AdaptiveBatcher(
            on_thread(lambda texts: texts[:-1]), max_batch_size=8, max_latency_ms=1e6
        )
        with pytest.raises(RuntimeError, match="2 texts but 1 results"):
            await batcher.submit(["a", "b"])
        await batcher.aclose()

    asyncio.run(scenario())


def test_sheds_with_overloaded_when_queued_work_exceeds_the_latency_bound() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = AdaptiveBatcher(on_thread(model), max_batch_size=2, max_latency_ms=1_000)
        batcher.seconds_per_text = 0.1  # as if measured: 0.1 s per text
        first = asyncio.create_task(batcher.submit(["x"]))
        await _settle()
        queued = [asyncio.create_task(batcher.submit(["y"] * 2)) for _ in range(5)]
        await _settle()
        assert batcher.queued_texts == 10  # 10 x 0.1 s = 1.0 s: at the bound, still accepted
        queued.append(asyncio.create_task(batcher.submit(["z"])))
        await _settle()
        with pytest.raises(Overloaded, match="server busy"):
            await batcher.submit(["over"])  # 11 texts queued: 1.1 s > 1 s
        model.release.set()
        await asyncio.gather(first, *queued)
        await batcher.aclose()

    asyncio.run(scenario())


def test_a_cancelled_request_costs_no_compute() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = AdaptiveBatcher(on_thread(model), max_batch_size=8, max_latency_ms=60_000)
        first = asyncio.create_task(batcher.submit(["x"]))
        await _settle()
        gone = asyncio.create_task(batcher.submit(["client went away"]))
        kept = asyncio.create_task(batcher.submit(["kept"]))
        await _settle()
        gone.cancel()
        model.release.set()
        assert await kept == ["KEPT"]
        await first
        await batcher.aclose()

    asyncio.run(scenario())
    assert model.calls == [["x"], ["kept"]]


def test_aclose_fails_what_is_still_queued() -> None:
    model = GatedModel()

    async def scenario() -> None:
        batcher = AdaptiveBatcher(on_thread(model), max_batch_size=1, max_latency_ms=60_000)
        first = asyncio.create_task(batcher.submit(["x"]))
        await _settle()
        waiting = asyncio.create_task(batcher.submit(["y"]))
        await _settle()
        await batcher.aclose()
        for task in (first, waiting):
            with pytest.raises(Overloaded, match="shutting down"):
                await task
        model.release.set()

    asyncio.run(scenario())


def test_empty_submit_and_bad_settings() -> None:
    assert (
        asyncio.run(AdaptiveBatcher(on_thread(list), max_batch_size=1, max_latency_ms=1).submit([]))
        == []
    )
    with pytest.raises(ValueError, match="at least 1"):
        AdaptiveBatcher(on_thread(list), max_batch_size=0, max_latency_ms=1)


def test_concurrency_runs_that_many_batches_at_once() -> None:
    started = threading.Barrier(2, timeout=5)
    calls: list[list[str]] = []

    def model(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        if texts == ["first"] or texts == ["second"]:
            started.wait()  # both must be running at the same time to get past this
        return texts

    async def scenario() -> list[list[str]]:
        batcher = AdaptiveBatcher(
            on_thread(model), max_batch_size=8, max_latency_ms=60_000, concurrency=2
        )
        first = asyncio.create_task(batcher.submit(["first"]))
        await _settle()
        second = asyncio.create_task(batcher.submit(["second"]))
        results = await asyncio.gather(first, second)
        await batcher.aclose()
        return results

    assert asyncio.run(scenario()) == [["first"], ["second"]]
    assert sorted(calls) == [["first"], ["second"]]


def test_a_free_replica_waits_for_its_share_until_the_busy_one_finishes() -> None:
    release = threading.Event()
    calls: list[list[str]] = []

    def model(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        if texts[0] == "big0":
            release.wait(timeout=10)
        return texts

    async def scenario() -> None:
        batcher = AdaptiveBatcher(
            on_thread(model), max_batch_size=64, max_latency_ms=60_000, concurrency=2
        )
        big = asyncio.create_task(batcher.submit([f"big{i}" for i in range(6)]))
        await _settle()
        small = [asyncio.create_task(batcher.submit([f"s{i}"])) for i in range(2)]
        await _settle()
        assert len(calls) == 1  # 2 queued < ceil((2 + 6) / 2): the second replica waits
        release.set()
        await asyncio.gather(big, *small)
        await batcher.aclose()

    asyncio.run(scenario())
    assert calls[1:] == [["s0"], ["s1"]]  # then both replicas are free: one text each


def test_the_wait_estimate_counts_every_replica() -> None:
    release = threading.Event()

    def model(texts: list[str]) -> list[str]:
        release.wait(timeout=10)  # every call blocks: both replicas stay busy
        return texts

    async def scenario() -> None:
        batcher = AdaptiveBatcher(
            on_thread(model), max_batch_size=1, max_latency_ms=1_000, concurrency=2
        )
        batcher.seconds_per_text = 0.1
        running = [asyncio.create_task(batcher.submit(["x"])) for _ in range(2)]
        await _settle()
        queued = [asyncio.create_task(batcher.submit(["y"])) for _ in range(20)]
        await _settle()
        # 20 texts queued behind two replicas: 20 x 0.1 s / 2 = 1.0 s, at the bound.
        assert batcher.queued_texts == 20
        queued.append(asyncio.create_task(batcher.submit(["y"])))
        await _settle()
        with pytest.raises(Overloaded):
            await batcher.submit(["z"])  # 21 x 0.1 s / 2 = 1.05 s
        release.set()
        await asyncio.gather(*running, *queued)
        await batcher.aclose()

    asyncio.run(scenario())


def test_the_cost_per_text_is_learnt_from_batches_at_least_half_full() -> None:
    batcher = AdaptiveBatcher(on_thread(list), max_batch_size=64, max_latency_ms=1_000)
    batcher._learn_cost(8, 0.16)  # 20 ms per text at batch 8: not what a long queue costs
    assert batcher.seconds_per_text is None
    batcher._learn_cost(32, 0.16)
    assert batcher.seconds_per_text == pytest.approx(0.005)
    batcher._learn_cost(64, 0.64)  # 10 ms per text, weighted in by EWMA_WEIGHT (0.2)
    assert batcher.seconds_per_text == pytest.approx(0.8 * 0.005 + 0.2 * 0.01)
    batcher._learn_cost(1, 5.0)
    assert batcher.seconds_per_text == pytest.approx(0.006)
