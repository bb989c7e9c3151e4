"""The original project's commands, typed as its users type them: each make target exists,
`make help` lists it, and it runs the step this platform has for it (`make -n` shows it)."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from deploy.monitor import sample_line, watch
from sentiment.config import PROJECT_ROOT


def make(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("security-scan", "scripts/security_scan.sh"),
        ("deploy-staging", "deploy ENV=staging"),
        ("test-staging", "-m deploy --env staging --smoke"),
        ("deploy-production", "deploy ENV=production"),
        ("monitor-deployment", "-m deploy --env production --monitor 6 --interval 10"),
        ("run-app", "serve service:SentimentAPI --host 0.0.0.0 --port 3000"),
        ("docker-build", "containerize"),
    ],
)
def test_the_original_targets_run_this_platforms_step(target: str, expected: str) -> None:
    assert target in make("help")
    # -W: pretend the venv stamp is fresh, so -n prints the target's own commands.
    assert expected in make("-n", "-W", ".venv/.installed", target)


def test_run_app_binds_the_gradio_address_and_port() -> None:
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": "7861"}
    assert "--host 127.0.0.1 --port 7861" in make("-n", "run-app", env=env)


def test_monitor_samples_health_and_monitoring() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(
                200, json={"status": "degraded", "replicas_alive": 1, "replicas": 2}
            )
        return httpx.Response(
            200,
            json={
                "total_predictions": 42,
                "average_confidence": 0.91234,
                "drift_status": {"status": "no drift", "drift_score": 0.125},
            },
        )

    client = httpx.Client(transport=httpx.MockTransport(handler))
    samples = list(watch("http://svc", 2, 5.0, client, sleep=lambda s: None))
    line = (
        "degraded (1/2 model processes)  predictions=42  mean confidence=0.912"
        "  drift=no drift (score 0.125)"
    )
    assert samples == [(True, line), (True, line)]


def test_monitor_says_unreachable_and_counts_it_unhealthy() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = httpx.Client(transport=httpx.MockTransport(handler))
    assert list(watch("http://svc", 1, 1.0, client)) == [(False, "unreachable: ConnectError")]
    assert "mean confidence=-" in sample_line({}, {"average_confidence": None})
