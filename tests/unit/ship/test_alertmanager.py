"""Alertmanager in the compose stack: docker/alertmanager.yml checked by Debian's amtool and
started with Debian's Alertmanager, its routes, where the webhook URL comes from, the compose
service and Prometheus's `alerting:` section. Delivery end to end:
tests/integration/test_alert_delivery.py."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.retrain_listener import DEFAULT_ALERTS as RETRAIN_ALERTS

DOCKER = Path(__file__).resolve().parents[3] / "docker"
CONFIG = DOCKER / "alertmanager.yml"


def load(name: str) -> Any:
    return yaml.safe_load((DOCKER / name).read_text())


def alertmanager_binary() -> str | None:
    # Debian names it prometheus-alertmanager; upstream builds, alertmanager.
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail(
            "amtool not found: install Debian's prometheus-alertmanager package "
            "(apt-get install prometheus-alertmanager)"
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=DOCKER, capture_output=True, text=True, timeout=60)


def compose_service() -> dict[str, Any]:
    service: dict[str, Any] = load("docker-compose.yml")["services"]["alertmanager"]
    return service


def slack_configs() -> list[dict[str, Any]]:
    return [c for r in load("alertmanager.yml")["receivers"] for c in r.get("slack_configs", [])]


def test_config_is_valid(amtool: str) -> None:
    result = run(amtool, "check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_routed_to_the_webhook(amtool: str) -> None:
    receivers = {r["name"] for r in load("alertmanager.yml")["receivers"]}
    assert receivers == {"slack", "retrain"}
    for group in load("alerts.yml")["groups"]:
        for rule in group["rules"]:
            labels = {"alertname": rule["alert"], "job": "sentiment-api", **rule["labels"]}
            # The retraining alerts also go to the retrain listener (test_retrain_listener.py).
            expected = "retrain,slack" if rule["alert"] in RETRAIN_ALERTS else "slack"
            result = run(
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={CONFIG}",
                f"--verify.receivers={expected}",
                *(f"{k}={v}" for k, v in labels.items()),
            )
            assert result.returncode == 0, rule["alert"] + result.stdout + result.stderr


def test_the_webhook_url_is_read_from_a_file_not_written_here() -> None:
    config = load("alertmanager.yml")
    assert "slack_api_url" not in config.get("global", {})
    assert slack_configs()
    for slack in slack_configs():
        assert "api_url" not in slack
        assert slack["api_url_file"] == "/run/alertmanager/slack_webhook_url"
        assert slack["send_resolved"] is True
    assert "hooks.slack.com" not in CONFIG.read_text()


def test_the_image_is_the_release_line_that_tests_the_file(amtool: str) -> None:
    binary = alertmanager_binary() or amtool
    version = re.search(r"version (\d+)\.(\d+)\.", run(binary, "--version").stdout)
    assert version, "no version in --version"
    image = compose_service()["image"]
    tag = re.fullmatch(r"prom/alertmanager:v(\d+)\.(\d+)\.\d+", image)
    assert tag, f"image not pinned to a release: {image}"
    assert tag.groups() == version.groups()


def test_compose_service_is_not_published_and_reads_this_file() -> None:
    service = compose_service()
    assert "ports" not in service
    assert "internal" in service["networks"]
    assert service["expose"] == ["9093"]
    mounts = dict(v.split(":")[:2] for v in service["volumes"] if v.startswith("./"))
    script = service["command"][0]
    flag = re.search(r"--config\.file=(\S+)", script)
    assert flag and mounts["./alertmanager.yml"] == flag.group(1)
    # The URL file lies on a tmpfs: written at start, never on a volume.
    url_file = Path(slack_configs()[0]["api_url_file"])
    assert str(url_file.parent) in service["tmpfs"]
    assert str(url_file) in script
    # Optional: without it the stack starts, and the entrypoint says alerts go nowhere.
    assert service["environment"]["SLACK_WEBHOOK_URL"] == "${SLACK_WEBHOOK_URL:-}"


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    prometheus = load("prometheus.yml")
    targets = [
        t
        for am in prometheus["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    services = load("docker-compose.yml")["services"]
    assert set(services["prometheus"]["networks"]) & set(services["alertmanager"]["networks"])


def entrypoint(tmp_path: Path, url: str | None) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The compose entrypoint script run by sh, with its paths moved under tmp_path and a stub
    in place of /bin/alertmanager that records its arguments."""
    service = compose_service()
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stub = tmp_path / "alertmanager"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n')
    stub.chmod(0o755)
    script = (
        service["command"][0]
        .replace("$$", "$")  # compose's escape for a literal $
        .replace("/run/alertmanager", str(run_dir))
        .replace("/bin/alertmanager", str(stub))
    )
    env = {"PATH": os.environ["PATH"], "ARGS_FILE": str(tmp_path / "args")}
    if url is not None:
        env["SLACK_WEBHOOK_URL"] = url
    result = subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    return result, run_dir / "slack_webhook_url"


def test_entrypoint_writes_the_url_for_api_url_file(tmp_path: Path) -> None:
    url = "https://hooks.slack.example/services/T000/B000/XXXX"
    result, url_file = entrypoint(tmp_path, url)
    assert result.returncode == 0, result.stderr
    assert url_file.read_text() == url  # no newline: the notifier would send to it verbatim
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    args = (tmp_path / "args").read_text().split()
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in args
    assert result.stderr == ""


def test_entrypoint_without_a_url_says_so(tmp_path: Path) -> None:
    result, url_file = entrypoint(tmp_path, None)
    assert result.returncode == 0, result.stderr
    assert url_file.read_text() == ""
    assert "SLACK_WEBHOOK_URL is not set" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_alertmanager_starts_with_this_config(tmp_path: Path) -> None:
    binary = alertmanager_binary()
    if binary is None:
        pytest.fail(
            "alertmanager not found: install Debian's prometheus-alertmanager package "
            "(apt-get install prometheus-alertmanager)"
        )
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={CONFIG}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            status: dict[str, Any] = {}
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    resp = httpx.get(f"http://127.0.0.1:{port}/api/v2/status", timeout=2)
                    if resp.status_code == 200:
                        status = resp.json()
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            assert status, f"alertmanager did not come up: {log.read_text()[-2000:]}"
            loaded = yaml.safe_load(status["config"]["original"])
            assert loaded["route"]["receiver"] == "slack"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
