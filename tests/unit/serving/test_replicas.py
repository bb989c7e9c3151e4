"""Model processes: real child processes with a fake model, so no weights are needed."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import uvloop

from sentiment.config import ServingConfig, load_serving_config
from serving.replicas import InProcessReplica, ReplicaPool, start_replicas, watch_replicas


class FakeReplica:
    """Upper-cases texts and reports its pid; "bad" raises, "crash" kills the process,
    "crash-once:<path>" kills it only while <path> does not exist (and creates it), and
    "sleep:<s>" takes s seconds."""

    def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        if "crash" in texts:
            os._exit(3)
        for text in texts:
            if text.startswith("sleep:"):
                time.sleep(float(text.split(":", 1)[1]))
            if text.startswith("crash-once:"):
                marker = Path(text.split(":", 1)[1])
                if not marker.exists():
                    marker.touch()
                    os._exit(3)
        if "bad" in texts:
            raise ValueError("cannot classify 'bad'")
        return [{"label": t.upper(), "pid": os.getpid()} for t in texts]

    def explain(self, texts: list[str]) -> list[dict[str, Any]]:
        if "crash" in texts:
            os._exit(3)
        policy = os.sched_getscheduler(0)
        return [
            {"words": t.split(), "pid": os.getpid(), "nice": os.nice(0), "policy": policy}
            for t in texts
        ]

    def info(self) -> dict[str, Any]:
        return {"tag": "fake:v1"}


def fake_loader(cfg: ServingConfig) -> FakeReplica:
    return FakeReplica()


def flaky_loader(cfg: ServingConfig) -> FakeReplica:
    if os.environ.get("FAKE_MODEL_LOAD_FAILS") == "1":
        raise OSError("model store unreachable")
    return FakeReplica()


def failing_loader(cfg: ServingConfig) -> FakeReplica:
    raise FileNotFoundError("no model 'sentiment:latest' in the store")


@pytest.fixture
def pool() -> Any:
    model = ReplicaPool(load_serving_config(env={}), 2, loader=fake_loader)
    yield model
    model.close()


Classify = Callable[[list[str]], list[dict[str, Any]]]


@pytest.fixture(params=["on a thread", "in an event loop"])
def classify(request: pytest.FixtureRequest, pool: ReplicaPool) -> Classify:
    """The pool's batches as the benchmark calls them (`classify`, blocking) and as the
    batcher does (`aclassify`, the pipe watched by an event loop): one behaviour."""
    if request.param == "on a thread":
        return pool.classify
    # uvloop, as in BentoML's server worker: it turns a watched descriptor non-blocking.
    return lambda texts: uvloop.run(pool.aclassify(texts))


def test_batches_run_in_child_processes(pool: ReplicaPool, classify: Classify) -> None:
    assert pool.concurrency == 2
    assert pool.info() == {"tag": "fake:v1", "model_processes": 2}
    result = classify(["a", "b"])
    assert [r["label"] for r in result] == ["A", "B"]
    assert result[0]["pid"] != os.getpid()
    with ThreadPoolExecutor(2) as threads:
        pids = {r[0]["pid"] for r in threads.map(classify, [["x"]] * 20)}
    assert pids <= {p.process.pid for p in pool._replicas}


def test_answers_larger_than_the_pipe_buffer_arrive_whole(classify: Classify) -> None:
    # 20 MB each way, written in pieces: the reader catches up with the writer mid-answer.
    texts = [f"{i:04d}" + "x" * 20_000 for i in range(1000)]
    assert [r["label"] for r in classify(texts)] == [t.upper() for t in texts]
    assert classify(["small"])[0]["label"] == "SMALL"


def test_a_caller_that_stops_waiting_leaves_no_answer_in_the_pipe() -> None:
    model = ReplicaPool(load_serving_config(env={}), 1, loader=fake_loader)

    async def scenario() -> list[dict[str, Any]]:
        slow = asyncio.create_task(model.aclassify(["sleep:0.3"]))
        await asyncio.sleep(0.1)
        slow.cancel()  # what the batcher's shutdown does to a running batch
        with pytest.raises(asyncio.CancelledError):
            await slow
        return await model.aclassify(["next"])

    try:
        assert [r["label"] for r in uvloop.run(scenario())] == ["NEXT"]
    finally:
        model.close()


def test_explanations_run_in_a_niced_process_of_their_own(pool: ReplicaPool) -> None:
    assert pool.explainer_pid() is None  # started on the first request, not before
    first = pool.explain(["a good film"])
    assert first[0]["words"] == ["a", "good", "film"]
    model_pids = {p.process.pid for p in pool._replicas}
    assert first[0]["pid"] == pool.explainer_pid() and first[0]["pid"] not in model_pids
    assert first[0]["nice"] == os.nice(0) + load_serving_config(env={}).explain.niceness
    assert first[0]["policy"] == os.SCHED_IDLE
    assert pool.explain(["x"])[0]["pid"] == first[0]["pid"]  # kept for the next request
    assert pool.classify(["ok"])[0]["pid"] in model_pids


def test_a_dead_explaining_process_fails_its_request_and_is_replaced(pool: ReplicaPool) -> None:
    pool.explain(["warm"])
    dead = pool.explainer_pid()
    with pytest.raises(RuntimeError, match="explaining process died"):
        pool.explain(["crash"])
    again = pool.explain(["fine"])
    assert again[0]["pid"] != dead and again[0]["pid"] == pool.explainer_pid()


def test_a_model_error_fails_the_batch_and_the_process_goes_on(classify: Classify) -> None:
    with pytest.raises(RuntimeError, match="ValueError: cannot classify 'bad'"):
        classify(["ok", "bad"])
    assert classify(["ok"])[0]["label"] == "OK"


def test_a_batch_whose_process_dies_once_is_answered_by_the_replacement(
    pool: ReplicaPool, classify: Classify, tmp_path: Path
) -> None:
    before = {p.process.pid for p in pool._replicas}
    text = f"crash-once:{tmp_path / 'died'}"
    assert [r["label"] for r in classify(["a", text])] == ["A", text.upper()]
    after = {p.process.pid for p in pool._replicas}
    assert len(after) == 2 and len(after & before) == 1


def test_a_batch_that_kills_two_processes_fails_and_both_are_replaced(
    pool: ReplicaPool, classify: Classify
) -> None:
    before = {p.process.pid for p in pool._replicas}
    with pytest.raises(RuntimeError, match="died twice on this batch"):
        classify(["crash"])
    after = {p.process.pid for p in pool._replicas}
    assert len(after) == 2 and after != before
    with ThreadPoolExecutor(2) as threads:
        labels = [r[0]["label"] for r in threads.map(classify, [["y"]] * 4)]
    assert labels == ["Y"] * 4


def test_a_replacement_that_cannot_start_is_retried_on_the_next_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = ReplicaPool(load_serving_config(env={}), 1, loader=flaky_loader)
    try:
        monkeypatch.setenv("FAKE_MODEL_LOAD_FAILS", "1")  # spawned processes inherit it
        with pytest.raises(RuntimeError, match="failed to load: OSError: model store"):
            model.classify(["crash"])  # dies, and its replacement cannot load
        assert model.replicas_alive() == 0
        monkeypatch.delenv("FAKE_MODEL_LOAD_FAILS")
        assert model.classify(["ok"])[0]["label"] == "OK"
        assert model.replicas_alive() == 1
    finally:
        model.close()


def test_a_replica_killed_between_batches_is_counted_and_replaced_before_its_next_batch(
    pool: ReplicaPool, classify: Classify
) -> None:
    assert pool.replicas_alive() == 2
    victim = pool._replicas[0].process
    victim.kill()
    victim.join(timeout=5)
    assert pool.replicas_alive() == 1
    # Every batch is answered: the one handed the dead replica waits for its replacement.
    with ThreadPoolExecutor(2) as threads:
        labels = [r[0]["label"] for r in threads.map(classify, [["y"]] * 4)]
    assert labels == ["Y"] * 4
    assert pool.replicas_alive() == 2
    assert victim.pid not in {p.process.pid for p in pool._replicas}


def test_a_model_that_cannot_load_stops_the_start_with_its_reason() -> None:
    with pytest.raises(RuntimeError, match="failed to load: FileNotFoundError: no model"):
        ReplicaPool(load_serving_config(env={}), 1, loader=failing_loader)


def test_start_model_keeps_the_model_in_process_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[ServingConfig] = []
    monkeypatch.setattr(InProcessReplica, "__init__", lambda self, cfg: created.append(cfg))
    cfg = load_serving_config(env={"SENTIMENT_MODEL_PROCESSES": "0"})
    assert isinstance(start_replicas(cfg), InProcessReplica)
    assert created == [cfg]


def test_the_model_in_the_worker_runs_on_a_thread_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Here:
        def classify(self, texts: list[str]) -> list[dict[str, Any]]:
            return [{"label": t, "thread": threading.current_thread().name} for t in texts]

    monkeypatch.setattr("serving.replicas.load_replica", lambda cfg: Here())
    model = InProcessReplica(load_serving_config(env={"SENTIMENT_MODEL_PROCESSES": "0"}))
    try:
        answer = uvloop.run(model.aclassify(["a"]))
    finally:
        model.close()
    # Not the loop's thread, nor asyncio's default pool that the feedback store's writes share.
    assert answer[0]["label"] == "a" and answer[0]["thread"].startswith("model")


def test_a_model_process_ignores_sigterm_and_stops_when_told(pool: ReplicaPool) -> None:
    """SIGTERM reaches model processes with the worker's; they must outlive the drain."""
    victim = pool._replicas[0]
    os.kill(victim.process.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert victim.running()
    assert pool.classify(["still"])[0]["label"] == "STILL"
    pool.close()
    assert pool.replicas_alive() == 0


def test_the_watch_reports_each_change_of_running_processes(pool: ReplicaPool) -> None:
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    thread = watch_replicas(pool, lambda alive, total: seen.append((alive, total)), stop, 0.05)
    try:
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = pool._replicas[1].process
        victim.kill()
        victim.join(timeout=5)
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert seen == [(2, 2), (1, 2)]
    assert not thread.is_alive()
