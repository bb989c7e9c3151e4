"""The model replicas: where the forward passes run, in the serving process or beside it.

A replica is one loaded copy of the Bento model (`serving.replica.Replica`). With
`model.processes: 0` (or on a GPU) the batcher calls the one replica on a thread of the serving
process (`InProcessReplica`). With N > 0, N child processes (`ReplicaProcess`) each hold a
replica and run one batch at a time with `model.num_threads` torch threads (`ReplicaPool`), and
the serving process keeps only HTTP, batching, monitoring and the UI.

Measured on 2 CPU cores (README, Performance): two 1-thread model processes beat one 2-thread
model sharing the interpreter lock with the HTTP server, and unlike two server workers they
keep one batcher, one monitor and one UI session store.

Only whole batches cross the process boundary (a list of texts out, a list of dicts back), so
the cost of the hand-over is paid per batch, not per request.

Explanations (`explain`) run in one more model process of the same kind, started on the first
request, niced (`explain.niceness`) and under Linux's SCHED_IDLE policy: a leave-one-word-out
explanation costs as much as n_words + 1 predictions, and run in the processes that answer
`/predict` it would take their cores. Niced alone it still cost 32 clients 11 % of their
texts/s (make explain-load): a niced process keeps the core for the rest of its time slice when
a model process wakes up with a batch, while any normal process preempts a SCHED_IDLE one at
once (README, "Why did it say that?").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sentiment.config import ServingConfig
from serving.store import get_bento_model, use_model_store

if TYPE_CHECKING:
    from serving.replica import Replica

logger = logging.getLogger("serving.replicas")

START_TIMEOUT_S = 300.0
# The message that asks a model process for explanations instead of predictions.
EXPLAIN = "explain"
# How a model process's death shows on its pipe, mid-call.
PROCESS_DIED = (EOFError, BrokenPipeError, ConnectionResetError)


class Replicas(Protocol):
    """What the service needs from the model: batched classify, a description, how many
    batches may run at once, and a way to stop."""

    concurrency: int

    def classify(self, texts: list[str]) -> list[dict[str, Any]]: ...

    async def aclassify(self, texts: list[str]) -> list[dict[str, Any]]: ...

    def explain(self, texts: list[str]) -> list[dict[str, Any]]: ...

    def info(self) -> dict[str, Any]: ...

    def replicas_alive(self) -> int: ...

    def pids(self) -> list[int]: ...

    def explainer_pid(self) -> int | None: ...

    def close(self) -> None: ...


class InProcessReplica:
    """The model on a thread of the serving process (GPU, or `model.processes: 0`)."""

    concurrency = 1

    def __init__(self, cfg: ServingConfig) -> None:
        self.replica = load_replica(cfg)
        self._explain_lock = threading.Lock()
        # A thread of its own: asyncio's default pool also runs the feedback store's writes.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="model")

    def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.replica.classify(texts)

    async def aclassify(self, texts: list[str]) -> list[dict[str, Any]]:
        """`classify` on the model's thread: the forward pass must not hold the event loop."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self.replica.classify, texts
        )

    def explain(self, texts: list[str]) -> list[dict[str, Any]]:
        with self._explain_lock:  # one explanation at a time, beside the batches
            return self.replica.explain(texts)

    def info(self) -> dict[str, Any]:
        return {**self.replica.info(), "model_processes": 0}

    def replicas_alive(self) -> int:
        return 1

    def pids(self) -> list[int]:
        """No model processes: the model runs in the worker."""
        return []

    def explainer_pid(self) -> int | None:
        return None

    def close(self) -> None:
        self._thread.shutdown(wait=False)


def load_replica(cfg: ServingConfig) -> Replica:
    """The default loader: the Bento model, as the serving config says."""
    # Here, not at the top: a model process imports this module before its loader runs, and
    # only the loader needs torch (a test's fake loader starts in 0.5 s instead of 2.5 s).
    from serving.replica import Replica

    return Replica.load(cfg)


def _serve(
    conn: Connection,
    cfg_json: str,
    loader: Callable[[ServingConfig], Any],
    model_store: str | None,
    niceness: int = 0,
    idle: bool = False,
) -> None:
    """A model process: load, say ready, then answer batches (a list of texts) or explanations
    (`(EXPLAIN, texts)`) until told to stop."""
    # The server's process manager signals the worker's children together with the worker on
    # SIGTERM; the worker drains its requests first and then stops this process itself (None
    # on the pipe, or the pipe's end when the worker is gone).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = ServingConfig.model_validate_json(cfg_json)
    if niceness:
        os.nice(niceness)
    if idle and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    try:
        if model_store is not None:
            use_model_store(model_store)
        replica = loader(cfg)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", replica.info()))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        try:
            if isinstance(message, tuple) and message[0] == EXPLAIN:
                conn.send(("ok", replica.explain(message[1])))
            else:
                conn.send(("ok", replica.classify(message)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _answer(message: tuple[str, Any]) -> list[dict[str, Any]]:
    status, payload = message
    if status != "ok":
        raise RuntimeError(f"model process: {payload}")
    result: list[dict[str, Any]] = payload
    return result


async def _readable(conn: Connection) -> None:
    """Wait in the event loop until `conn` can be read: data, or the other end closed.

    The pipe is left blocking, as `Connection` needs it: uvloop (BentoML's server loop) makes a
    watched descriptor non-blocking, and `recv` then failed with EAGAIN in the middle of an
    answer larger than the socket buffer, leaving the rest of it in the pipe."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():  # called again while the data waits to be read
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
        os.set_blocking(fd, True)


class ReplicaProcess:
    """One replica in a child process, reached over a pipe that only the serving process uses."""

    def __init__(
        self,
        ctx: Any,
        cfg_json: str,
        index: int | str,
        loader: Callable[[ServingConfig], Any],
        model_store: str | None,
        niceness: int = 0,
        idle: bool = False,
    ) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve,
            args=(child, cfg_json, loader, model_store, niceness, idle),
            name=f"sentiment-model-{index}",
            daemon=True,
        )
        self.process.start()
        child.close()

    def running(self) -> bool:
        """The process has not exited. Read from its sentinel (a pipe that closes when it exits),
        not from waitpid: if anything else in the server reaps the child first, waitpid fails
        and `Process.is_alive()` keeps answering True for a dead process."""
        return not wait([self.process.sentinel], timeout=0)

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.2):
            if not self.running():
                raise RuntimeError(f"model process exited with code {self.process.exitcode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"model process not ready after {timeout:.0f} s")
        status, payload = self.conn.recv()
        if status != "ready":
            raise RuntimeError(f"model process failed to load: {payload}")
        info: dict[str, Any] = payload
        return info

    def call(self, texts: list[str]) -> list[dict[str, Any]]:
        return self._ask(texts)

    def explain(self, texts: list[str]) -> list[dict[str, Any]]:
        return self._ask((EXPLAIN, texts))

    async def acall(self, texts: list[str]) -> list[dict[str, Any]]:
        """`call` from the event loop: the loop watches the pipe until the answer (or the
        process's end) is there, where a thread blocked on it cost each batch two thread
        hand-overs (README, Performance)."""
        self.conn.send(texts)
        await _readable(self.conn)
        return _answer(self.conn.recv())

    def _ask(self, message: Any) -> list[dict[str, Any]]:
        self.conn.send(message)
        return _answer(self.conn.recv())

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.process.join(timeout=5)
        if self.running():
            self.process.kill()
        self.conn.close()


class ReplicaPool:
    """N model processes; `classify` runs on whichever is free (at most `concurrency` calls
    at once, which is what the batcher allows)."""

    def __init__(
        self,
        cfg: ServingConfig,
        processes: int,
        loader: Callable[[ServingConfig], Any] = load_replica,
        start_timeout_s: float = START_TIMEOUT_S,
        model_store: str | None = None,
    ) -> None:
        # spawn, not fork: the server process has threads (event loop helpers, monitoring).
        ctx = multiprocessing.get_context("spawn")
        self._cfg_json = cfg.model_dump_json()
        self._ctx = ctx
        self.concurrency = processes
        self._free: queue.Queue[ReplicaProcess] = queue.Queue()
        self._lock = threading.Lock()
        self._loader = loader
        self._start_timeout_s = start_timeout_s
        self._model_store = model_store
        self._explain_niceness = cfg.explain.niceness
        self._explainer: ReplicaProcess | None = None
        self._explain_lock = threading.Lock()
        replicas = [self._replica(i) for i in range(processes)]
        try:
            infos = [r.wait_ready(start_timeout_s) for r in replicas]
        except Exception:
            for replica in replicas:
                replica.stop()
            raise
        self._info = {**infos[0], "model_processes": processes}
        self._replicas = replicas
        for replica in replicas:
            self._free.put(replica)

    def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        replica = self._free.get()
        try:
            if replica.conn.closed or not replica.running():
                # Died between batches (killed, out of memory), or stopped after dying with a
                # replacement that did not start then: start one now, and run this batch on it
                # rather than answering it 500.
                replica = self._replace(replica, None)
            return replica.call(texts)
        except PROCESS_DIED as exc:
            # Died mid-batch: once on a fresh process, so a kill or an out-of-memory death costs
            # this batch a restart, not an error. A batch that kills two processes is answered.
            replica = self._replace(replica, exc)
            try:
                return replica.call(texts)
            except PROCESS_DIED as again:
                replica = self._replace(replica, again)
                raise RuntimeError("the model process died twice on this batch") from again
        finally:
            self._free.put(replica)

    async def aclassify(self, texts: list[str]) -> list[dict[str, Any]]:
        """`classify` for the batcher, in the event loop: what `classify` does on a thread,
        with the pipe watched by the loop. A caller that stops waiting (a cancelled batch at
        shutdown) leaves the call to finish on its own, so a process never goes back to the
        pool with an answer still unread in its pipe."""
        return await asyncio.shield(self._aclassify(texts))

    async def _aclassify(self, texts: list[str]) -> list[dict[str, Any]]:
        try:
            replica = self._free.get_nowait()
        except queue.Empty:  # more callers than processes: not the batcher's way, but safe
            replica = await asyncio.to_thread(self._free.get)
        try:
            if replica.conn.closed or not replica.running():
                # Starting a process takes seconds: on a thread, the loop keeps serving.
                replica = await asyncio.to_thread(self._replace, replica, None)
            try:
                return await replica.acall(texts)
            except PROCESS_DIED as exc:
                replica = await asyncio.to_thread(self._replace, replica, exc)
                try:
                    return await replica.acall(texts)
                except PROCESS_DIED as again:
                    replica = await asyncio.to_thread(self._replace, replica, again)
                    raise RuntimeError("the model process died twice on this batch") from again
        finally:
            self._free.put(replica)

    def _replace(self, dead: ReplicaProcess, exc: BaseException | None) -> ReplicaProcess:
        """A new process in `dead`'s place. If it cannot start, `dead` stays in the pool,
        stopped, and the next batch it is handed tries again."""
        logger.error("model process %s died (%r); starting a new one", dead.process.name, exc)
        with self._lock:
            index = self._replicas.index(dead)
            dead.stop()
            fresh = self._replica(index)
            try:
                fresh.wait_ready(self._start_timeout_s)
            except Exception:
                fresh.stop()
                raise
            self._replicas[index] = fresh
            return fresh

    def _replica(self, index: int) -> ReplicaProcess:
        return ReplicaProcess(self._ctx, self._cfg_json, index, self._loader, self._model_store)

    def explain(self, texts: list[str]) -> list[dict[str, Any]]:
        """Explanations from the explaining process (started on first use, restarted when it
        died), one call at a time."""
        with self._explain_lock:
            explainer = self._explainer
            if explainer is None or explainer.conn.closed or not explainer.running():
                if explainer is not None:
                    logger.error("the explaining process died; starting a new one")
                    explainer.stop()
                self._explainer = None
                explainer = ReplicaProcess(
                    self._ctx,
                    self._cfg_json,
                    EXPLAIN,
                    self._loader,
                    self._model_store,
                    self._explain_niceness,
                    idle=True,
                )
                try:
                    explainer.wait_ready(self._start_timeout_s)
                except Exception:
                    explainer.stop()
                    raise
                self._explainer = explainer
            try:
                return explainer.explain(texts)
            except PROCESS_DIED as exc:
                raise RuntimeError("the explaining process died on this request") from exc

    def explainer_pid(self) -> int | None:
        explainer = self._explainer
        return None if explainer is None else explainer.process.pid

    def info(self) -> dict[str, Any]:
        return self._info

    def replicas_alive(self) -> int:
        """How many model processes are running (a dead one is replaced on its next batch)."""
        return sum(replica.running() for replica in self._replicas)

    def pids(self) -> list[int]:
        """Process ids of the model processes, by index (a replaced one under its new pid)."""
        return [r.process.pid for r in self._replicas if r.process.pid is not None]

    def close(self) -> None:
        for replica in self._replicas:
            replica.stop()
        with self._explain_lock:
            if self._explainer is not None:
                self._explainer.stop()


def watch_replicas(
    replicas: Replicas,
    on_change: Callable[[int, int], None],
    stop: threading.Event,
    interval_s: float = 1.0,
) -> threading.Thread:
    """A daemon thread that calls `on_change(running, configured)` once at start and then each
    time the count of running model processes changes (read every `interval_s`), until `stop`
    is set: the degraded state shows in metrics even when no one asks `/health`."""

    def run() -> None:
        last = -1
        while True:
            alive = replicas.replicas_alive()
            if alive != last:
                on_change(alive, replicas.concurrency)
                last = alive
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=run, name="replica-watch", daemon=True)
    thread.start()
    return thread


def start_side_process(
    cfg: ServingConfig,
    tag: str,
    role: str,
    niceness: int,
    loader: Callable[[ServingConfig], Any] = load_replica,
) -> tuple[ReplicaProcess, dict[str, Any]]:
    """One more model process, ready, for another model than the served one (a challenger in
    shadow), at a lower CPU priority than the processes that answer `/predict`; with what its
    replica says about itself (`Replica.info`)."""
    bento_model = get_bento_model(tag)
    process = ReplicaProcess(
        multiprocessing.get_context("spawn"),
        cfg.with_model(tag=str(bento_model.tag)).model_dump_json(),
        role,
        loader,
        str(Path(bento_model.path).parent.parent),
        niceness,
    )
    try:
        info = process.wait_ready(START_TIMEOUT_S)
    except Exception:
        process.stop()
        raise
    return process, info


def start_replicas(cfg: ServingConfig) -> Replicas:
    """The backend the serving config asks for; model processes only make sense on CPU."""
    from serving.classifier import resolve_device

    if cfg.model.processes > 0 and resolve_device(cfg.model.device).type == "cpu":
        # Resolved here, once: every model process loads the same version ("latest" could
        # move between starts) from the store this server reads.
        bento_model = get_bento_model(cfg.model.tag)
        return ReplicaPool(
            cfg.with_model(tag=str(bento_model.tag)),
            cfg.model.processes,
            model_store=str(Path(bento_model.path).parent.parent),
        )
    return InProcessReplica(cfg)
