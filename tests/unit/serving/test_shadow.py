"""Shadow scoring: the sample, the bounded queue, the thread, and which model an alias names."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from serving.shadow import ShadowScorer, resolve_shadow_model


def model(tag: str, alias: str, day: int) -> Any:
    info = SimpleNamespace(
        labels={"mlflow_alias": alias}, creation_time=datetime(2026, 1, day, tzinfo=UTC)
    )
    return SimpleNamespace(tag=tag, info=info)


def test_an_alias_names_the_newest_model_imported_from_it() -> None:
    models = [
        model("sentiment:v1-a", "production", 1),
        model("sentiment:v2-b", "candidate", 2),
        model("sentiment:v3-c", "candidate", 3),
    ]
    assert resolve_shadow_model("alias:candidate", models) == "sentiment:v3-c"
    assert resolve_shadow_model("alias:production", models) == "sentiment:v1-a"
    assert resolve_shadow_model("alias:staging", models) is None
    assert resolve_shadow_model("sentiment:v2-b", models) == "sentiment:v2-b"


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_every_sampled_prediction_is_scored_by_the_challenger_off_the_caller() -> None:
    scored: list[tuple[list[str], list[dict[str, Any]]]] = []
    callers: set[int] = set()

    def classify(texts: list[str]) -> list[dict[str, Any]]:
        callers.add(threading.get_ident())
        return [{"label": t.upper()} for t in texts]

    scorer = ShadowScorer(classify, lambda ids, raw: scored.append((ids, raw)), 1.0, seed=0)
    scorer.start()
    try:
        scorer.offer(["1", "2"], ["a", "b"])
        scorer.offer(["3"], ["c"])
        wait_for(lambda: scorer.scored == 3)
    finally:
        scorer.close()
    ids = [i for batch, _ in scored for i in batch]
    labels = [r["label"] for _, raw in scored for r in raw]
    assert ids == ["1", "2", "3"] and labels == ["A", "B", "C"]
    assert threading.get_ident() not in callers
    assert scorer.offered == 3 and scorer.dropped == 0 and scorer.failed == 0


def test_the_sample_follows_the_rate() -> None:
    nothing = ShadowScorer(lambda t: [], lambda i, r: None, 0.0, seed=1)
    nothing.offer([str(i) for i in range(100)], ["x"] * 100)
    assert len(nothing._queue) == 0
    some = ShadowScorer(lambda t: [], lambda i, r: None, 0.25, seed=1, max_pending=10_000)
    some.offer([str(i) for i in range(4000)], ["x"] * 4000)
    assert 900 <= len(some._queue) <= 1100
    with pytest.raises(ValueError, match="sample_rate"):
        ShadowScorer(lambda t: [], lambda i, r: None, 1.5)


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    scorer = ShadowScorer(lambda t: [], lambda i, r: None, 1.0, max_pending=3)
    started = time.perf_counter()
    scorer.offer(["1", "2"], ["a", "b"])
    scorer.offer(["3", "4", "5"], ["c", "d", "e"])
    assert time.perf_counter() - started < 0.05
    assert [pid for pid, _ in scorer._queue] == ["1", "2", "3"]
    assert scorer.dropped == 2


def test_a_failing_challenger_is_counted_and_the_thread_goes_on() -> None:
    calls = {"n": 0}

    def classify(texts: list[str]) -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model process: out of memory")
        return [{"label": "x"} for _ in texts]

    scorer = ShadowScorer(classify, lambda i, r: None, 1.0)
    scorer.start()
    try:
        scorer.offer(["1"], ["a"])
        wait_for(lambda: scorer.failed == 1)
        scorer.offer(["2"], ["b"])
        wait_for(lambda: scorer.scored == 1)
    finally:
        scorer.close()
