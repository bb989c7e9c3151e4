"""A closed-loop HTTP load generator: N clients, each sending its next request on an answer."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import uvloop


@dataclass
class LoadResult:
    clients: int
    texts_per_request: int
    seconds: float
    requests: int
    texts: int
    statuses: dict[str, int]
    latencies_ms: list[float] = field(repr=False)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "clients": self.clients,
            "texts_per_request": self.texts_per_request,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "ok": self.ok,
            "texts_per_s": round(self.ok * self.texts_per_request / self.seconds, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "statuses": self.statuses,
            "errors": self.errors,
        }


async def _run(
    url: str,
    texts: Sequence[str],
    clients: int,
    texts_per_request: int,
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
    honour_retry_after: bool,
) -> LoadResult:
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + duration_s
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def client(worker: int) -> None:
        i = worker * 7919
        rng = random.Random(worker)
        async with aiohttp.ClientSession(connector=connector, connector_owner=False) as session:
            while (now := time.perf_counter()) < stop_at:
                batch = [texts[(i + k) % len(texts)] for k in range(texts_per_request)]
                i += texts_per_request
                sent = time.perf_counter()
                try:
                    async with session.post(url, json={"texts": batch}, timeout=timeout) as resp:
                        await resp.read()
                        status = str(resp.status)
                        backoff = retry_after_s(resp.status, resp.headers.get("Retry-After"))
                except Exception as exc:  # a lost request: count it by type, keep going
                    status = "error"
                    backoff = None
                    if now >= measure_from:
                        errors[type(exc).__name__] += 1
                done = time.perf_counter()
                if sent >= measure_from and done <= stop_at + timeout_s:
                    statuses[status] += 1
                    if status == "200":
                        latencies.append((done - sent) * 1000)
                if honour_retry_after and backoff is not None:
                    # Jittered, so refused clients do not come back in one wave.
                    await asyncio.sleep(min(backoff * rng.uniform(0.5, 1.5), stop_at - now))

    try:
        await asyncio.gather(*(client(w) for w in range(clients)))
    finally:
        await connector.close()
    elapsed = min(time.perf_counter(), stop_at) - measure_from
    total = sum(statuses.values())
    return LoadResult(
        clients,
        texts_per_request,
        max(elapsed, 1e-9),
        total,
        statuses.get("200", 0) * texts_per_request,
        dict(statuses),
        latencies,
        dict(errors),
    )


def retry_after_s(status: int, header: str | None) -> float | None:
    """Seconds a well-behaved client waits after this answer: Retry-After on a 429 or 503
    (delay-seconds form; an HTTP date or garbage counts as 1 s), else None."""
    if status not in (429, 503) or header is None:
        return None
    try:
        return max(0.0, min(float(header), 60.0))
    except ValueError:
        return 1.0


def run_load(
    url: str,
    texts: Sequence[str],
    clients: int,
    texts_per_request: int = 1,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    timeout_s: float = 60.0,
    honour_retry_after: bool = True,
) -> LoadResult:
    """`clients` closed-loop clients for `duration_s` after `warmup_s`. They honour Retry-After
    as HTTP clients with a retry policy do (urllib3's Retry, for one); with
    `honour_retry_after=False` they come back at once, the worst case for the server."""
    # uvloop: the load generator shares the cores with the server it measures, so its own CPU
    # per request should be as small as possible.
    return uvloop.run(
        _run(
            url,
            texts,
            clients,
            texts_per_request,
            duration_s,
            warmup_s,
            timeout_s,
            honour_retry_after,
        )
    )


if __name__ == "__main__":
    import argparse
    import json

    from sentiment.data import read_tsv, resolve_sst2_dir

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:3000/predict")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--texts", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    folder = resolve_sst2_dir(None)
    assert folder is not None
    sentences = read_tsv(folder / "validation.tsv").texts
    result = run_load(args.url, sentences, args.clients, args.texts, args.seconds)
    print(json.dumps(result.summary()))
