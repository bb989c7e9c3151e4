"""`python -m loadtests.pod_memory`: the memory a serving pod needs, and where it writes.

Starts `bentoml serve` with the serving defaults (or measures --pid), sends a load of
full-size requests (64 texts of SST-2, the largest `/predict` accepts by default), samples the
memory of the whole process tree while it runs and reports the peak. A pod's memory cgroup
charges each page once, so the proportional set size summed over the tree (PSS: shared pages
divided among the processes sharing them) is the figure a limit must cover; the plain RSS sum
counts the pages that the forked model processes share with their parent twice and is reported
beside it.

With --home/--cwd it also lists the files the server created or changed there (a marker file's
time before the start), which is how the Kubernetes manifests' writable volumes were chosen
(deploy/k8s/base/deployment.yaml).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from loadtests.servers import ServerProcess, own_bentoml_home
from sentiment.data import read_tsv, resolve_sst2_dir

MIB = 2**20


def tree_memory(root_pid: int) -> dict[str, float]:
    """RSS and PSS summed over a process and its descendants (MiB), and the process count."""
    root = psutil.Process(root_pid)
    rss = pss = 0.0
    count = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        count += 1
    return {"rss_mib": round(rss / MIB, 1), "pss_mib": round(pss / MIB, 1), "processes": count}


class PeakSampler:
    """Samples tree_memory every `interval` seconds in a thread; keeps the peak of each figure."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak: dict[str, float] = {"rss_mib": 0.0, "pss_mib": 0.0, "processes": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = tree_memory(self.pid)
            except psutil.NoSuchProcess:
                return
            for key, value in now.items():
                self.peak[key] = max(self.peak[key], value)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def full_size_load(url: str, texts: list[str], requests: int, clients: int) -> float:
    """`requests` requests of 64 texts each from `clients` loops; returns the seconds taken."""
    started = time.perf_counter()
    counter = iter(range(requests))

    async def loop(client: httpx.AsyncClient) -> None:
        for i in counter:
            start = (i * 64) % max(1, len(texts) - 64)
            resp = await client.post("/predict", json={"texts": texts[start : start + 64]})
            resp.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(loop(client) for _ in range(clients)))
    return time.perf_counter() - started


def written_since(marker: float, folders: list[Path]) -> list[str]:
    """Files under `folders` created or modified after the time `marker`."""
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime >= marker:
                    found.append(str(path))
            except OSError:
                continue
    return sorted(found)


def measure(env: dict[str, str], requests: int, clients: int, watch: list[Path]) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pod-memory-"))
    env = own_bentoml_home(env, folder)
    watch = [*watch, Path(env["BENTOML_HOME"])]
    marker = time.time()
    proc = ServerProcess.bentoml(env, folder / "bentoml.log")
    try:
        proc.wait_ready(timeout=240)
        idle = tree_memory(proc.proc.pid)
        sst2 = resolve_sst2_dir(env.get("SENTIMENT_DATA_DIR"))
        if sst2 is None:
            raise SystemExit("SST-2 not found: set SENTIMENT_DATA_DIR")
        texts = read_tsv(sst2 / "validation.tsv").texts
        with PeakSampler(proc.proc.pid) as sampler:
            seconds = asyncio.run(full_size_load(proc.url, texts, requests, clients))
        after = tree_memory(proc.proc.pid)
        return {
            "idle": idle,
            "peak_under_load": sampler.peak,
            "after_load": after,
            "load": {"requests": requests, "texts_per_request": 64, "clients": clients},
            "load_seconds": round(seconds, 1),
            "written": written_since(marker, watch),
        }
    finally:
        proc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--watch", action="append", default=[], help="folder to list writes in")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    result = measure(env, args.requests, args.clients, [Path(w) for w in args.watch])
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
