"""Under concurrent load every request gets an answer (regression: the front's model client
used to recycle its session every 100 requests and cut off requests in flight)."""

from __future__ import annotations

import pytest

from loadtests.http_load import run_load

pytestmark = [pytest.mark.performance, pytest.mark.integration, pytest.mark.slow]


def test_32_clients_lose_nothing(served_url: str) -> None:
    texts = [f"sentence number {i} is {'great' if i % 2 else 'awful'}" for i in range(500)]
    result = run_load(f"{served_url}/predict", texts, clients=32, duration_s=20, warmup_s=2)
    summary = result.summary()
    print(f"\n32 single-text clients: {summary}")
    assert result.errors == {}
    assert result.statuses == {"200": result.requests}
    # Several times the client's old 100-request session lifetime.
    assert result.requests >= 200, summary
