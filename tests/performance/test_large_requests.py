"""A 2,048-text request beside single-text clients: it must not starve them.

Reports the single-text clients' latency with and without the large request running (written
to test-output/large_request_fairness.json); asserts only that every request is answered.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.http_load import run_load

pytestmark = [pytest.mark.performance, pytest.mark.integration, pytest.mark.slow]

OUT = Path(__file__).resolve().parents[2] / "test-output" / "large_request_fairness.json"
SINGLES = [f"sentence number {i} is {'great' if i % 2 else 'awful'}" for i in range(500)]


def singles(url: str, seconds: float) -> dict[str, Any]:
    return run_load(f"{url}/predict", SINGLES, clients=4, duration_s=seconds, warmup_s=1).summary()


def test_single_text_clients_are_served_while_a_2048_text_request_runs(served_url: str) -> None:
    alone = singles(served_url, 8)
    big: dict[str, Any] = {}

    def large_request() -> None:
        started = time.perf_counter()
        resp = httpx.post(
            f"{served_url}/predict", json={"texts": (SINGLES * 5)[:2048]}, timeout=600
        )
        big.update(status=resp.status_code, seconds=round(time.perf_counter() - started, 2))

    thread = threading.Thread(target=large_request)
    thread.start()
    time.sleep(0.5)
    beside = singles(served_url, 8)
    thread.join(timeout=600)
    report = {"singles_alone": alone, "singles_beside_2048": beside, "large_request": big}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    print(f"\n{json.dumps(report)}")
    assert big["status"] == 200
    assert beside["statuses"] == {"200": beside["requests"]} and beside["errors"] == {}
    assert beside["requests"] > 0
