"""System health of the serving processes as Prometheus metrics: CPU and resident memory of the
server worker and of each model process, and the memory they may use before the kernel's
out-of-memory killer steps in.

The sampler runs in the server worker, on a daemon thread (`start_system_metrics`), and reads
the processes it is given by pid with psutil; the caller names each one by its role (`worker`,
`model-0`, `model-1`, ...). Like monitoring/metrics.py, prometheus_client is imported only when
the gauges are created, so under BentoML (PROMETHEUS_MULTIPROC_DIR set) they are written to the
multiprocess folder and served on `/metrics`:

- `sentiment_process_cpu_cores{role}`: cores in use (1 = one core busy all the time) over the
  last sampling interval; `liveall` mode, so each worker's series carry its `pid` and go away
  when that worker exits.
- `sentiment_process_resident_memory_bytes{role}`: RSS, `liveall` as well.
- `sentiment_memory_limit_bytes{source}`: the cgroup memory limit (`source="cgroup"`, v2
  `memory.max` or v1 `memory.limit_in_bytes` of this process's cgroup and its ancestors), or
  the machine's RAM where no cgroup sets a lower one (`source="host"`); `livemax` mode.

A process that has exited (a model process being replaced) reads 0 until it is back: a value
that stays would hide it, and a gauge written to the multiprocess folder cannot be removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 writes "no limit" as the largest page-aligned 64-bit value (9223372036854771712);
# anything this large is no limit.
UNLIMITED_FROM = 1 << 60


def parse_memory_limit(text: str) -> int | None:
    """Bytes from the contents of `memory.max` (v2) or `memory.limit_in_bytes` (v1); None for
    no limit ("max", v1's huge value) or contents that are not a positive number."""
    value = text.strip()
    if value == "max":
        return None
    try:
        limit = int(value)
    except ValueError:
        return None
    if limit <= 0 or limit >= UNLIMITED_FROM:
        return None
    return limit


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """(v2 path, v1 memory controller path) from the contents of /proc/<pid>/cgroup, whose
    lines read `hierarchy-id:controllers:path` (v2's single line is `0::path`)."""
    unified: str | None = None
    memory: str | None = None
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            unified = path
        elif "memory" in controllers.split(","):
            memory = path
    return unified, memory


def _ancestors(base: Path, cgroup_path: str) -> list[Path]:
    """`base/a/b`, `base/a`, `base` for the cgroup path `/a/b`."""
    parts = [p for p in cgroup_path.split("/") if p and p not in {".", ".."}]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_memory_limit(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> int | None:
    """The smallest memory limit set on this process's cgroup or any cgroup above it, v2
    first, then v1; None where none is set or the files cannot be read.

    The ancestors are read because a limit holds for everything below it, and because inside
    a container the cgroup path in /proc/self/cgroup can name a folder that the container's
    /sys/fs/cgroup (mounted at its own cgroup) does not have: the walk then ends at the mount
    itself, which is the container's cgroup."""
    try:
        unified, memory = parse_proc_cgroup(proc_cgroup.read_text())
    except OSError:
        unified, memory = "/", "/"
    candidates: list[Path] = []
    if unified is not None:
        candidates += [folder / "memory.max" for folder in _ancestors(root, unified)]
    if memory is not None:
        candidates += [
            folder / "memory.limit_in_bytes" for folder in _ancestors(root / "memory", memory)
        ]
    limits: list[int] = []
    for path in candidates:
        try:
            limit = parse_memory_limit(path.read_text())
        except OSError:
            continue
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def memory_limit(cgroup_limit: Callable[[], int | None] = cgroup_memory_limit) -> tuple[int, str]:
    """(bytes, source): the cgroup limit when one is set below the machine's RAM, else the RAM."""
    host = int(psutil.virtual_memory().total)
    limit = cgroup_limit()
    if limit is not None and limit < host:
        return limit, "cgroup"
    return host, "host"


@dataclass
class _Tracked:
    pid: int
    process: psutil.Process
    cpu_s: float
    at: float


class SystemMetrics:
    """Gauges for CPU and RSS per role, and the memory limit; `sample(pids)` updates them."""

    def __init__(
        self,
        registry: Any = None,
        limit: Callable[[], tuple[int, str]] = memory_limit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import prometheus_client as prom

        kw: dict[str, Any] = {} if registry is None else {"registry": registry}
        per_process: dict[str, Any] = {"multiprocess_mode": "liveall", **kw}
        self.cpu = prom.Gauge(
            "sentiment_process_cpu_cores",
            "CPU cores in use by one serving process over the last sampling interval",
            ["role"],
            **per_process,
        )
        self.rss = prom.Gauge(
            "sentiment_process_resident_memory_bytes",
            "Resident memory (RSS) of one serving process",
            ["role"],
            **per_process,
        )
        self.limit = prom.Gauge(
            "sentiment_memory_limit_bytes",
            "Memory the serving processes may use: the cgroup limit, else the machine's RAM",
            ["source"],
            multiprocess_mode="livemax",
            **kw,
        )
        self._read_limit = limit
        self._clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._roles: set[str] = set()
        self._limit_source: str | None = None

    def sample(self, pids: Mapping[str, int]) -> dict[str, tuple[float, int]]:
        """Read every process once; returns {role: (cores, rss bytes)} as set on the gauges."""
        seen: dict[str, tuple[float, int]] = {}
        for role, pid in pids.items():
            reading = self._read(role, pid)
            if reading is not None:
                seen[role] = reading
        # Roles that are gone (or could not be read): 0, not their last value.
        for role in (self._roles | set(pids)) - set(seen):
            self._tracked.pop(role, None)
            seen[role] = (0.0, 0)
        self._roles |= set(pids)
        for role, (cores, rss) in seen.items():
            self.cpu.labels(role=role).set(cores)
            self.rss.labels(role=role).set(rss)
        self._sample_limit()
        return seen

    def _read(self, role: str, pid: int) -> tuple[float, int] | None:
        tracked = self._tracked.get(role)
        try:
            if tracked is None or tracked.pid != pid:
                process = psutil.Process(pid)
                tracked = None
            else:
                process = tracked.process
            with process.oneshot():
                if process.status() == psutil.STATUS_ZOMBIE:
                    return None  # exited, not yet reaped by its parent
                times = process.cpu_times()
                rss = int(process.memory_info().rss)
                started = process.create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        cpu_s = float(times.user + times.system)
        now = self._clock()
        if tracked is not None and now > tracked.at:
            cores = max(0.0, cpu_s - tracked.cpu_s) / (now - tracked.at)
        else:
            # First reading of this process: its average since it started.
            cores = cpu_s / max(time.time() - started, 1e-3)
        self._tracked[role] = _Tracked(pid, process, cpu_s, now)
        return cores, rss

    def _sample_limit(self) -> None:
        limit, source = self._read_limit()
        if self._limit_source not in (None, source):
            # The limit moved between cgroup and host: the old series would keep its value.
            self.limit.labels(source=self._limit_source).set(0)
        self._limit_source = source
        self.limit.labels(source=source).set(limit)


_DEFAULT: SystemMetrics | None = None
_LOCK = threading.Lock()


def default_system_metrics() -> SystemMetrics:
    """The process's system gauges on the default registry, created once."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = SystemMetrics()
        return _DEFAULT


def start_system_metrics(
    pids: Callable[[], Mapping[str, int]],
    stop: threading.Event,
    interval_s: float = 5.0,
    metrics: SystemMetrics | None = None,
) -> threading.Thread:
    """A daemon thread that samples `pids()` ({role: pid}, asked again each time, so replaced
    model processes are followed) at once and then every `interval_s` until `stop` is set.
    A failed sample is logged and never ends the thread."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")

    def run() -> None:
        target = metrics or default_system_metrics()
        failing = False
        while True:
            try:
                target.sample(pids())
                failing = False
            except Exception:
                # Once per run of failures: the next success logs nothing and re-arms it.
                if not failing:
                    logger.exception("system metrics: sampling failed")
                failing = True
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=run, name="system-metrics", daemon=True)
    thread.start()
    return thread
