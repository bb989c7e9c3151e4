"""`python -m loadtests.soak` (`make soak`): does every process of the server keep its memory
flat over a long run, and does every request get a 200?

Starts `bentoml serve service:SentimentAPI` on a free port (or uses --url and --server-pid),
sends SOAK_REQUESTS single-text predictions (20,000) from SOAK_CLIENTS closed-loop clients (16)
and samples the resident memory (RSS) of every process of the server's tree with psutil: the
`bentoml serve` supervisor, the server worker (found through GET /monitoring's `worker_pid`)
and each model process. Growth per process is its RSS at the end minus its RSS once the first
10 % of the requests were answered (the warm-up fills the drift window, the latency ring and
the allocator's pools); growth over the second half alone tells a pool that settles from a
leak, which keeps its slope. Writes results/soak.json; exits 1 when any answer was not a 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import psutil
import uvloop

from loadtests.servers import PROJECT_ROOT, ServerProcess
from sentiment.data import read_tsv, resolve_sst2_dir

DEFAULT_REQUESTS = 20_000
DEFAULT_CLIENTS = 16
WARMUP_FRACTION = 0.1
DEFAULT_OUTPUT = PROJECT_ROOT / "results" / "soak.json"


# --- pure parts (unit-tested) -----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One reading of the server's processes: `done` requests answered at `t` seconds."""

    t: float
    done: int
    rss_mb: Mapping[int, float]


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    cmdline: str


@dataclass(frozen=True)
class Growth:
    pid: int
    start_mb: float  # first reading of the run (before the load for processes there from start)
    after_warmup_mb: float
    end_mb: float
    peak_mb: float  # highest reading after warm-up
    growth_mb: float  # end - after warm-up
    samples: int  # readings after warm-up


def warmup_requests(total: int, fraction: float = WARMUP_FRACTION) -> int:
    """How many answered requests count as warm-up: `fraction` of `total`, at least 1."""
    return min(total, max(1, math.ceil(total * fraction)))


def rss_growth(samples: Sequence[Sample], warmup: int) -> dict[int, Growth]:
    """Per process: RSS at its last reading minus its RSS at its first reading once `warmup`
    requests were answered. A process first seen after warm-up (a replaced model process) is
    measured from its first reading; one gone before warm-up ended is left out."""
    first_seen: dict[int, float] = {}
    for sample in samples:
        for pid, rss in sample.rss_mb.items():
            first_seen.setdefault(pid, rss)
    readings: dict[int, list[float]] = {}
    for sample in samples:
        if sample.done < warmup:
            continue
        for pid, rss in sample.rss_mb.items():
            readings.setdefault(pid, []).append(rss)
    return {
        pid: Growth(
            pid=pid,
            start_mb=first_seen[pid],
            after_warmup_mb=values[0],
            end_mb=values[-1],
            peak_mb=max(values),
            growth_mb=round(values[-1] - values[0], 1),
            samples=len(values),
        )
        for pid, values in readings.items()
    }


def non_200(statuses: Mapping[str, int]) -> int:
    """Answers that were not a 200, connection errors ("error") included."""
    return sum(count for status, count in statuses.items() if status != "200")


def process_roles(
    procs: Sequence[ProcInfo], root_pid: int, worker_pid: int | None
) -> dict[int, str]:
    """A name for each process of the server's tree: the supervisor; the server worker that
    answered GET /monitoring ("server worker"), any other BentoML worker under the supervisor
    ("server worker 2", ...); the workers' model processes (multiprocessing spawn children,
    numbered in pid order); the rest by their program's name."""
    ordered = sorted(procs, key=lambda p: p.pid)
    workers = [worker_pid] if worker_pid is not None else []
    workers += [
        p.pid
        for p in ordered
        if p.ppid == root_pid
        and p.pid != worker_pid
        and "bentoml" in p.cmdline
        and "spawn_main" not in p.cmdline
        and "resource_tracker" not in p.cmdline
    ]
    roles: dict[int, str] = {}
    models = 0
    for proc in ordered:
        if proc.pid == root_pid:
            roles[proc.pid] = "supervisor (bentoml serve)"
        elif proc.pid in workers:
            n = workers.index(proc.pid) + 1
            roles[proc.pid] = "server worker" if n == 1 else f"server worker {n}"
        elif "resource_tracker" in proc.cmdline:
            roles[proc.pid] = "resource tracker"
        elif "spawn_main" in proc.cmdline and proc.ppid in workers:
            models += 1
            roles[proc.pid] = f"model process {models}"
        else:
            words = proc.cmdline.split()
            roles[proc.pid] = f"other ({Path(words[0]).name if words else '?'})"
    return roles


def role_order(role: str, pid: int) -> tuple[int, str, int]:
    """Supervisor, server worker, model processes, then the rest."""
    rank = next(
        (
            i
            for i, prefix in enumerate(("supervisor", "server worker", "model process"))
            if role.startswith(prefix)
        ),
        3,
    )
    return rank, role, pid


def percentiles_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    if not latencies_s:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    ms = np.asarray(latencies_s) * 1000
    return {f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)}


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakSettings:
    requests: int = DEFAULT_REQUESTS
    clients: int = DEFAULT_CLIENTS
    interval_s: float = 1.0
    timeout_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SoakSettings:
        env = os.environ if env is None else env
        return cls(
            requests=int(env.get("SOAK_REQUESTS") or DEFAULT_REQUESTS),
            clients=int(env.get("SOAK_CLIENTS") or DEFAULT_CLIENTS),
        )


class TreeSampler:
    """RSS of a process and its descendants, read on demand."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self.started = time.perf_counter()
        self.samples: list[Sample] = []
        self.procs: dict[int, ProcInfo] = {}

    def take(self, done: int) -> Sample:
        rss: dict[int, float] = {}
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for proc in tree:
            try:
                rss[proc.pid] = round(proc.memory_info().rss / 2**20, 1)
                if proc.pid not in self.procs:
                    cmdline = " ".join(proc.cmdline())
                    self.procs[proc.pid] = ProcInfo(proc.pid, proc.ppid(), cmdline)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        sample = Sample(round(time.perf_counter() - self.started, 2), done, rss)
        self.samples.append(sample)
        return sample


@dataclass
class LoadOutcome:
    seconds: float
    statuses: dict[str, int]
    errors: dict[str, int]
    latencies_s: list[float] = field(repr=False)


async def _load(
    url: str, texts: Sequence[str], settings: SoakSettings, sampler: TreeSampler, warmup: int
) -> LoadOutcome:
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    sent = 0
    done = 0
    finished = asyncio.Event()

    async def client(session: aiohttp.ClientSession, timeout: aiohttp.ClientTimeout) -> None:
        nonlocal sent, done
        while sent < settings.requests:
            i = sent
            sent += 1
            started = time.perf_counter()
            try:
                async with session.post(
                    f"{url}/predict", json={"texts": [texts[i % len(texts)]]}, timeout=timeout
                ) as resp:
                    await resp.read()
                    status = str(resp.status)
            except Exception as exc:  # a lost request: counted by type, the run goes on
                status = "error"
                errors[type(exc).__name__] += 1
            statuses[status] += 1
            if status == "200":
                latencies.append(time.perf_counter() - started)
            done += 1
            if done == warmup:
                sampler.take(done)

    async def sample_periodically() -> None:
        while not finished.is_set():
            sampler.take(done)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), settings.interval_s)

    sampler.take(0)
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=settings.clients)
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    periodic = asyncio.create_task(sample_periodically())
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(client(session, timeout) for _ in range(settings.clients)))
    finally:
        finished.set()
        await periodic
    seconds = time.perf_counter() - started
    sampler.take(done)
    return LoadOutcome(seconds, dict(statuses), dict(errors), latencies)


def soak_texts() -> list[str]:
    """SST-2 validation sentences when the files are found, else varied made-up ones."""
    folder = resolve_sst2_dir(os.environ.get("SENTIMENT_DATA_DIR"))
    if folder is not None and (folder / "validation.tsv").is_file():
        return read_tsv(folder / "validation.tsv").texts
    words = ["great", "dull", "moving", "tedious", "clever", "flat", "warm", "shallow"]
    return [
        f"review {i}: a {words[i % 8]} and {words[(i * 3 + 1) % 8]} film, {i % 97} minutes long"
        for i in range(1000)
    ]


def run_soak(
    url: str, root_pid: int, settings: SoakSettings, texts: Sequence[str] | None = None
) -> dict[str, Any]:
    """The load against a running server whose supervisor is `root_pid`; the report."""
    texts = list(texts) if texts is not None else soak_texts()
    warmup = warmup_requests(settings.requests)
    worker_pid = int(httpx.get(f"{url}/monitoring", timeout=60).json()["worker_pid"])
    sampler = TreeSampler(root_pid)
    outcome = uvloop.run(_load(url, texts, settings, sampler, warmup))
    monitoring = httpx.get(f"{url}/monitoring", timeout=60).json()

    growth = rss_growth(sampler.samples, warmup)
    # The second half alone: a pool that settles grows early, a leak keeps the same slope.
    second_half = rss_growth(sampler.samples, max(warmup, settings.requests // 2))
    roles = process_roles(list(sampler.procs.values()), root_pid, worker_pid)
    processes = [
        {
            "role": roles.get(pid, "?"),
            **asdict(growth[pid]),
            "growth_second_half_mb": second_half[pid].growth_mb if pid in second_half else None,
            "cmdline": sampler.procs[pid].cmdline[:300] if pid in sampler.procs else "",
        }
        for pid in sorted(growth, key=lambda pid: role_order(roles.get(pid, "?"), pid))
    ]
    bad = non_200(outcome.statuses)
    return {
        "requests": settings.requests,
        "clients": settings.clients,
        "texts_per_request": 1,
        "seconds": round(outcome.seconds, 1),
        "requests_per_s": round(settings.requests / outcome.seconds, 1),
        "latency_ms": percentiles_ms(outcome.latencies_s),
        "statuses": outcome.statuses,
        "non_200": bad,
        "errors": outcome.errors,
        "warmup_requests": warmup,
        "growth_is": "RSS at the end minus RSS once warmup_requests were answered, per process",
        "growth_second_half_is": "RSS at the end minus RSS once half the requests were answered",
        "sample_interval_s": settings.interval_s,
        "root_pid": root_pid,
        "worker_pid": worker_pid,
        "processes": processes,
        "total_growth_mb": round(sum(g.growth_mb for g in growth.values()), 1),
        "monitoring_total_predictions": monitoring.get("total_predictions"),
        "monitoring_dropped_predictions": monitoring.get("dropped_predictions"),
        "cpu_count": os.cpu_count(),
        "samples": [
            {"t": s.t, "done": s.done, "rss_mb": {str(pid): mb for pid, mb in s.rss_mb.items()}}
            for s in sampler.samples
        ],
    }


def serve_and_soak(
    env: Mapping[str, str], settings: SoakSettings, log_dir: Path | None = None
) -> dict[str, Any]:
    """Start `bentoml serve` with `env` (its BENTOML_HOME holds the model), soak it, stop it."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    server = ServerProcess.bentoml({**env, "BENTOML_DO_NOT_TRACK": "true"}, log_dir / "bentoml.log")
    try:
        server.wait_ready(timeout=600)
        return run_soak(server.url, server.proc.pid, settings)
    finally:
        server.stop()


def format_report(report: Mapping[str, Any]) -> str:
    lines = [
        f"soak: {report['requests']} predictions at {report['clients']} clients in "
        f"{report['seconds']} s ({report['requests_per_s']} requests/s, p50 "
        f"{report['latency_ms']['p50']} ms, p99 {report['latency_ms']['p99']} ms); "
        f"non-200 answers: {report['non_200']}",
        f"RSS growth after warm-up (first {report['warmup_requests']} answers), MiB:",
        f"  {'process':<28}{'pid':>8}{'start':>9}{'warm':>9}{'end':>9}{'peak':>9}{'growth':>9}"
        f"{'2nd half':>10}",
    ]
    for p in report["processes"]:
        lines.append(
            f"  {p['role']:<28}{p['pid']:>8}{p['start_mb']:>9.1f}{p['after_warmup_mb']:>9.1f}"
            f"{p['end_mb']:>9.1f}{p['peak_mb']:>9.1f}{p['growth_mb']:>+9.1f}"
            f"{_signed(p.get('growth_second_half_mb')):>10}"
        )
    lines.append(f"  {'all processes':<28}{'':>8}{'':>45}{report['total_growth_mb']:>+9.1f}")
    return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def main(argv: list[str] | None = None) -> int:
    defaults = SoakSettings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=defaults.requests, help="SOAK_REQUESTS")
    parser.add_argument("--clients", type=int, default=defaults.clients, help="SOAK_CLIENTS")
    parser.add_argument("--interval", type=float, default=defaults.interval_s)
    parser.add_argument("--url", help="a running server (its processes must be on this host)")
    parser.add_argument("--server-pid", type=int, help="with --url: the `bentoml serve` pid")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    settings = SoakSettings(args.requests, args.clients, args.interval)

    if args.url:
        if not args.server_pid:
            parser.error("--url needs --server-pid")
        report = run_soak(args.url.rstrip("/"), args.server_pid, settings)
    else:
        report = serve_and_soak(os.environ, settings)
    print(format_report(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 1 if report["non_200"] else 0


if __name__ == "__main__":
    sys.exit(main())
