"""System health metrics: the cgroup parsers on sample file contents, the sampler on this test's
own process, the background thread, multiprocess mode, and the names the dashboard and the
memory alert read."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitoring.system import (
    SystemMetrics,
    cgroup_memory_limit,
    memory_limit,
    parse_memory_limit,
    parse_proc_cgroup,
    start_system_metrics,
)

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
GIB = 1 << 30


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def metrics(
    clock: FakeClock | None = None, limit: tuple[int, str] = (4 * GIB, "cgroup")
) -> tuple[SystemMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return SystemMetrics(registry, limit=lambda: limit, clock=clock or FakeClock()), registry


# --- cgroup files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max\n", None),  # v2, no limit
        ("536870912\n", 536870912),  # v2 or v1, 512 MiB
        ("9223372036854771712\n", None),  # v1's "no limit"
        ("0\n", None),
        ("", None),
        ("lots\n", None),
    ],
)
def test_parse_memory_limit(text: str, expected: int | None) -> None:
    assert parse_memory_limit(text) == expected


def test_parse_proc_cgroup_v2_and_v1() -> None:
    assert parse_proc_cgroup("0::/system.slice/docker-abc.scope\n") == (
        "/system.slice/docker-abc.scope",
        None,
    )
    hybrid = "5:devices:/\n4:memory:/process_api/313d\n3:cpu,cpuacct:/\n0::/\n"
    assert parse_proc_cgroup(hybrid) == ("/", "/process_api/313d")
    assert parse_proc_cgroup("2:cpu,memory:/docker/abc\nnot a line\n") == (None, "/docker/abc")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_limit_is_the_smallest_on_the_way_up(tmp_path: Path) -> None:
    proc = tmp_path / "proc_cgroup"
    write(proc, "0::/app.slice/svc.scope\n")
    root = tmp_path / "cgroup"
    write(root / "app.slice" / "svc.scope" / "memory.max", "max\n")
    write(root / "app.slice" / "memory.max", f"{GIB}\n")
    assert cgroup_memory_limit(root, proc) == GIB
    write(root / "app.slice" / "svc.scope" / "memory.max", f"{GIB // 2}\n")
    assert cgroup_memory_limit(root, proc) == GIB // 2


def test_v2_container_with_its_own_cgroup_namespace(tmp_path: Path) -> None:
    proc = tmp_path / "proc_cgroup"
    write(proc, "0::/\n")
    write(tmp_path / "memory.max", "2147483648\n")
    assert cgroup_memory_limit(tmp_path, proc) == 2 * GIB
    write(tmp_path / "memory.max", "max\n")
    assert cgroup_memory_limit(tmp_path, proc) is None


def test_v1_container_whose_path_is_not_under_the_mount(tmp_path: Path) -> None:
    """Docker on cgroup v1 mounts the container's own memory cgroup at /sys/fs/cgroup/memory,
    while /proc/self/cgroup still names /docker/<id>: the walk ends at the mount."""
    proc = tmp_path / "proc_cgroup"
    write(proc, "9:memory:/docker/0123abcd\n1:name=systemd:/docker/0123abcd\n")
    write(tmp_path / "memory" / "memory.limit_in_bytes", "268435456\n")
    assert cgroup_memory_limit(tmp_path, proc) == 256 << 20


def test_no_limit_anywhere_or_nothing_readable(tmp_path: Path) -> None:
    proc = tmp_path / "proc_cgroup"
    write(proc, "4:memory:/a\n0::/\n")
    write(tmp_path / "memory" / "a" / "memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroup_memory_limit(tmp_path, proc) is None
    assert cgroup_memory_limit(tmp_path / "missing", tmp_path / "missing_proc") is None


def test_memory_limit_falls_back_to_the_machines_ram() -> None:
    host = psutil.virtual_memory().total
    assert memory_limit(lambda: GIB) == (GIB, "cgroup")
    assert memory_limit(lambda: None) == (host, "host")
    # A cgroup limit above the RAM is not what stops the processes.
    assert memory_limit(lambda: host * 2) == (host, "host")


def test_memory_limit_on_this_machine() -> None:
    limit, source = memory_limit()
    assert source in {"cgroup", "host"}
    assert 0 < limit <= psutil.virtual_memory().total


# --- the sampler ---------------------------------------------------------------------------------


def test_sampler_reads_this_process() -> None:
    clock = FakeClock()
    sampler, registry = metrics(clock)
    first = sampler.sample({"worker": os.getpid()})
    rss = psutil.Process().memory_info().rss
    assert abs(first["worker"][1] - rss) < 64 << 20
    assert first["worker"][0] >= 0  # the average since this process started
    labels = {"role": "worker"}
    assert registry.get_sample_value("sentiment_process_resident_memory_bytes", labels) == float(
        first["worker"][1]
    )

    burn_cpu(0.3)
    clock.now += 0.5  # 0.3 s or more of CPU in 0.5 s of (fake) wall time
    cores = sampler.sample({"worker": os.getpid()})["worker"][0]
    assert cores >= 0.5
    assert registry.get_sample_value("sentiment_process_cpu_cores", labels) == cores
    assert registry.get_sample_value("sentiment_memory_limit_bytes", {"source": "cgroup"}) == float(
        4 * GIB
    )


def test_an_exited_or_dropped_process_reads_zero() -> None:
    sampler, registry = metrics()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler.sample({"worker": os.getpid(), "model-0": child.pid, "model-1": child.pid})
        assert registry.get_sample_value(
            "sentiment_process_resident_memory_bytes", {"role": "model-0"}
        )
    finally:
        child.kill()
        child.wait(timeout=10)
    seen = sampler.sample({"worker": os.getpid(), "model-0": child.pid})
    assert seen["model-0"] == (0.0, 0)  # exited
    assert seen["model-1"] == (0.0, 0)  # no longer named by the caller
    for role in ("model-0", "model-1"):
        labels = {"role": role}
        assert registry.get_sample_value("sentiment_process_resident_memory_bytes", labels) == 0
        assert registry.get_sample_value("sentiment_process_cpu_cores", labels) == 0
    assert seen["worker"][1] > 0


def test_a_killed_process_not_yet_reaped_reads_zero() -> None:
    """A model process killed between batches stays a zombie until the pool replaces it."""
    sampler, _ = metrics()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler.sample({"model-0": child.pid})
        child.kill()
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert sampler.sample({"model-0": child.pid})["model-0"] == (0.0, 0)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_replaced_process_is_read_afresh() -> None:
    """A new pid under the same role (a model process restarted) starts a new CPU reading
    instead of subtracting the old process's CPU time."""
    clock = FakeClock()
    sampler, _ = metrics(clock)
    sampler.sample({"model-0": os.getpid()})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        clock.now += 1
        cores, rss = sampler.sample({"model-0": child.pid})["model-0"]
        assert rss > 0 and 0 <= cores < 5
    finally:
        child.kill()
        child.wait(timeout=10)


def test_the_limit_source_can_change() -> None:
    registry = CollectorRegistry()
    limits = iter([(GIB, "cgroup"), (8 * GIB, "host")])
    sampler = SystemMetrics(registry, limit=lambda: next(limits))
    sampler.sample({})
    sampler.sample({})
    assert registry.get_sample_value("sentiment_memory_limit_bytes", {"source": "cgroup"}) == 0
    assert registry.get_sample_value("sentiment_memory_limit_bytes", {"source": "host"}) == float(
        8 * GIB
    )


# --- the thread ----------------------------------------------------------------------------------


def test_thread_samples_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    sampler, registry = metrics()
    calls = 0
    sampled = threading.Event()

    def pids() -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the replica pool is restarting")
        if calls >= 3:
            sampled.set()
        return {"worker": os.getpid()}

    stop = threading.Event()
    with caplog.at_level(logging.ERROR, logger="monitoring.system"):
        thread = start_system_metrics(pids, stop, interval_s=0.02, metrics=sampler)
        assert thread.daemon
        assert sampled.wait(10), "the thread stopped after a failed sample"
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert "sampling failed" in caplog.text
    assert registry.get_sample_value("sentiment_process_resident_memory_bytes", {"role": "worker"})


def test_thread_refuses_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        start_system_metrics(dict, threading.Event(), interval_s=0)


def test_gauges_work_in_prometheus_multiprocess_mode(tmp_path: Path) -> None:
    """As under BentoML: PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported, the
    gauges written to files and read back by a MultiProcessCollector."""
    script = textwrap.dedent(
        """
        import json, os
        from monitoring.system import default_system_metrics
        default_system_metrics().sample({"worker": os.getpid(), "model-0": os.getpid()})
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        print(json.dumps([
            [s.name, s.labels, s.value]
            for m in registry.collect() for s in m.samples
        ]))
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    samples = json.loads(result.stdout.strip().splitlines()[-1])
    roles = {
        s[1]["role"]: s[1]["pid"]
        for s in samples
        if s[0] == "sentiment_process_resident_memory_bytes" and s[2] > 0
    }
    assert set(roles) == {"worker", "model-0"}  # per worker: `pid` is the sampling worker
    limits = [s for s in samples if s[0] == "sentiment_memory_limit_bytes"]
    assert len(limits) == 1 and "pid" not in limits[0][1] and limits[0][2] > 0


# --- what reads these metrics --------------------------------------------------------------------


METRICS = (
    "sentiment_process_cpu_cores",
    "sentiment_process_resident_memory_bytes",
    "sentiment_memory_limit_bytes",
)


def test_dashboard_has_a_system_health_row_reading_these_metrics() -> None:
    panels = json.loads((DOCKER / "grafana" / "dashboards" / "sentiment.json").read_text())[
        "panels"
    ]
    rows = [i for i, p in enumerate(panels) if p["type"] == "row"]
    start = next(i for i in rows if panels[i]["title"] == "System health")
    end = next((i for i in rows if i > start), len(panels))
    row = panels[start + 1 : end]
    titles = {p["title"] for p in row}
    assert {"CPU per process", "Memory per process (RSS)"} <= titles
    exprs = " ".join(t["expr"] for p in row for t in p["targets"])
    for name in METRICS:
        assert name in exprs, name


def test_memory_alert_reads_these_metrics() -> None:
    rules = yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"]
    rule = next(
        r for g in rules for r in g["rules"] if r.get("alert") == "SentimentMemoryNearLimit"
    )
    assert "sentiment_process_resident_memory_bytes" in rule["expr"]
    assert "sentiment_memory_limit_bytes" in rule["expr"]
    assert rule["for"] == "5m"
