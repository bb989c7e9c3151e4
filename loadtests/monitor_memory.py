"""`python -m loadtests.monitor_memory`: does the served process's memory stay flat?

Starts `bentoml serve` (or uses --url), sends a warm-up that fills the drift window and the
latency ring, reads the resident memory of the server's processes, sends N more predictions
(20,000 by default) and reads it again. The worker, where the model and the monitor run, is
found through the `worker_pid` of GET /monitoring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from loadtests.servers import PROJECT_ROOT, ServerProcess
from monitoring.config import load_monitoring_config
from sentiment.data import read_tsv, resolve_reviews_file, resolve_sst2_dir


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def tree_rss_mb(root_pid: int) -> dict[str, float]:
    """Resident memory of a process and its descendants, by pid (MiB)."""
    root = psutil.Process(root_pid)
    out: dict[str, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            out[str(proc.pid)] = round(proc.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    return out


async def send(url: str, texts: list[str], total: int, per_request: int, clients: int) -> float:
    """Send `total` predictions, `per_request` texts per request, from `clients` loops."""
    requests = -(-total // per_request)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    started = time.perf_counter()

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            start = (i * per_request) % len(texts)
            batch = (texts[start:] + texts)[:per_request]
            resp = await client.post("/predict", json={"texts": batch})
            resp.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, help="default: twice the drift window")
    parser.add_argument("--per-request", type=int, default=50)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--url", help="a running server (its processes must be on this host)")
    parser.add_argument("--server-pid", type=int, help="with --url: the `bentoml serve` pid")
    parser.add_argument("--output", default=str(PROJECT_ROOT / "results" / "monitor_memory.json"))
    args = parser.parse_args(argv)

    folder = resolve_sst2_dir(os.environ.get("SENTIMENT_DATA_DIR"))
    if folder is None:
        print("error: SST-2 files not found; set SENTIMENT_DATA_DIR", file=sys.stderr)
        return 1
    # Both kinds of traffic, so the drift tests run on changing windows the whole time.
    texts = read_tsv(folder / "validation.tsv").texts + read_tsv(resolve_reviews_file()).texts
    warmup = args.warmup or 2 * load_monitoring_config().drift.window_size

    server: ServerProcess | None = None
    if args.url:
        url, server_pid = args.url.rstrip("/"), args.server_pid
    else:
        log = Path(tempfile.mkdtemp(prefix="monitor-memory-")) / "bentoml.log"
        server = ServerProcess.bentoml({**os.environ, "BENTOML_DO_NOT_TRACK": "true"}, log)
        url, server_pid = server.url, server.proc.pid
    try:
        if server is not None:
            server.wait_ready(timeout=600)
        print(f"warm-up: {warmup} predictions")
        asyncio.run(send(url, texts, warmup, args.per_request, args.clients))
        status: dict[str, Any] = httpx.get(f"{url}/monitoring", timeout=60).json()
        worker_pid = int(status["worker_pid"])
        worker_before = round(rss_mb(worker_pid), 1)
        tree_before = tree_rss_mb(server_pid) if server_pid else None
        print(f"before: worker {worker_before} MiB; sending {args.predictions}")
        seconds = asyncio.run(send(url, texts, args.predictions, args.per_request, args.clients))
        status = httpx.get(f"{url}/monitoring", timeout=60).json()
        worker_after = round(rss_mb(worker_pid), 1)
        tree_after = tree_rss_mb(server_pid) if server_pid else None
    finally:
        if server is not None:
            server.stop()
    result = {
        "predictions": args.predictions,
        "warmup": warmup,
        "seconds": round(seconds, 1),
        "worker_pid": worker_pid,
        "worker_rss_mb": {"before": worker_before, "after": worker_after},
        "worker_rss_growth_mb": round(worker_after - worker_before, 1),
        "process_rss_mb": {"before": tree_before, "after": tree_after},
        "monitoring_total_predictions": status["total_predictions"],
        "drift_window_size": status["drift_status"].get("window_size"),
        "dropped_predictions": status["dropped_predictions"],
    }
    print(json.dumps(result, indent=2))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
