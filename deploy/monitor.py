"""`make monitor-deployment`: what an environment's stable port serves, sampled a few times.

One line per sample: health (and live model processes), predictions so far, mean confidence,
drift. Read-only; it never changes what runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx


def sample_line(health: dict[str, Any], summary: dict[str, Any]) -> str:
    """One sample as a line a person reads at a glance."""
    drift = summary.get("drift_status") or {}
    confidence = summary.get("average_confidence")
    return (
        f"{health.get('status', '?')} "
        f"({health.get('replicas_alive', '?')}/{health.get('replicas', '?')} model processes)"
        f"  predictions={summary.get('total_predictions', 0)}"
        f"  mean confidence={'-' if confidence is None else f'{confidence:.3f}'}"
        f"  drift={drift.get('status', '?')} (score {drift.get('drift_score', 0.0):.3f})"
    )


def watch(
    url: str,
    rounds: int,
    interval_s: float,
    client: httpx.Client,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[bool, str]]:
    """`rounds` samples of `url`, `interval_s` apart: (healthy, line) each."""
    for i in range(rounds):
        if i:
            sleep(interval_s)
        try:
            health_resp = client.get(f"{url}/health")
            summary = client.get(f"{url}/monitoring").json()
            health = health_resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            yield False, f"unreachable: {type(exc).__name__}"
            continue
        yield health_resp.status_code == 200, sample_line(health, summary)
