"""Under concurrent load every request gets an answer."""

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
    # Many rounds of 32 concurrent requests merged by the batcher, not a handful.
    assert result.requests >= 200, summary
