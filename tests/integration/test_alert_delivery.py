"""A firing alert travels the whole way: Debian's Prometheus scrapes a real `bentoml serve` and
evaluates a rule of docker/alerts.yml against it, Debian's Alertmanager routes the alert with
docker/alertmanager.yml, and a Slack-compatible webhook receiver (a small HTTP server in this
test) gets the message with the alert's name and labels.

The rule is the real SentimentNoTraffic (no /predict requests while the service is up) with its
30-minute window and `for` shortened to seconds: this test sends no requests, so it holds for
the live service once its window has passed. Its second half, `max(up) == 1`, holds only while
Prometheus scrapes the service. Prometheus's external label `stack` must arrive as well.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from loadtests.servers import ServerProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
RULE = "SentimentNoTraffic"
WEBHOOK_PATH = "/services/T0TEST/B0TEST/alert-delivery"
MAX_BODY = 1 << 20
DELIVERY_TIMEOUT_S = 90
READY = "/-/ready"  # Prometheus's and Alertmanager's readiness route


class Webhook:
    """A Slack-compatible incoming webhook on 127.0.0.1: keeps each JSON body it is posted
    (at most 1 MiB each, at most 100) and answers 200 "ok" as Slack does."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.arrived = threading.Condition()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= MAX_BODY or len(webhook.received) >= 100:
                    self.send_response(413)
                    self.end_headers()
                    return
                body = json.loads(self.rfile.read(length))
                with webhook.arrived:
                    webhook.received.append((self.path, body))
                    webhook.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 5
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{WEBHOOK_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, title_part: str, deadline: float) -> tuple[str, dict[str, Any]] | None:
        with self.arrived:
            while True:
                for path, body in self.received:
                    if any(title_part in a.get("title", "") for a in body.get("attachments", [])):
                        return path, body
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.arrived.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{names[0]} not found: install Debian's prometheus and prometheus-alertmanager")


def fast_rule() -> dict[str, Any]:
    """SentimentNoTraffic from docker/alerts.yml, with its window and `for` shortened."""
    rule = next(
        r
        for g in yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == RULE
    )
    assert "[30m]" in rule["expr"] and rule["for"] == "30m", "the rule changed: update this test"
    return {**rule, "expr": rule["expr"].replace("[30m]", "[10s]"), "for": "2s"}


def alertmanager_config(url_file: Path) -> dict[str, Any]:
    """docker/alertmanager.yml with the test's webhook URL file and second-long grouping."""
    config: dict[str, Any] = yaml.safe_load((DOCKER / "alertmanager.yml").read_text())
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        for key in ("group_wait", "group_interval"):
            route[key] = "1s"
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(url_file)
    return config


def prometheus_config(target: str, rules: Path, alertmanager: str) -> dict[str, Any]:
    """docker/prometheus.yml scraping the test's service every second, with the fast rule and
    the test's Alertmanager in its `alerting:` section."""
    config: dict[str, Any] = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(rules)]
    job = next(c for c in config["scrape_configs"] if c["job_name"] == "sentiment-api")
    job.pop("scrape_timeout", None)
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [job]
    (manager,) = config["alerting"]["alertmanagers"]
    manager["static_configs"] = [{"targets": [alertmanager]}]
    return config


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    try:
        yield server
    finally:
        server.close()


def test_a_firing_alert_reaches_the_webhook(
    served_url: str, webhook: Webhook, tmp_path: Path
) -> None:
    started = time.monotonic()
    url_file = tmp_path / "slack_webhook_url"
    url_file.write_text(webhook.url)
    am_port, prom_port = free_port(), free_port()

    am_yml = tmp_path / "alertmanager.yml"
    am_yml.write_text(yaml.safe_dump(alertmanager_config(url_file)))
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "delivery", "rules": [fast_rule()]}]}))
    prom_yml = tmp_path / "prometheus.yml"
    prom_yml.write_text(
        yaml.safe_dump(
            prometheus_config(urlparse(served_url).netloc, rules, f"127.0.0.1:{am_port}")
        )
    )

    alertmanager = ServerProcess(
        [
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={am_yml}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        dict(os.environ),
        tmp_path / "alertmanager.log",
        am_port,
        ready_path=READY,
    )
    prometheus: ServerProcess | None = None
    try:
        alertmanager.wait_ready()
        prometheus = ServerProcess(
            [
                binary("prometheus"),
                f"--config.file={prom_yml}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            dict(os.environ),
            tmp_path / "prometheus.log",
            prom_port,
            ready_path=READY,
        )
        prometheus.wait_ready()

        delivered = webhook.wait_for(RULE, started + DELIVERY_TIMEOUT_S)
        if delivered is None:
            alerts = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=10).text
            pytest.fail(
                f"no {RULE} message within {DELIVERY_TIMEOUT_S} s; webhook got "
                f"{webhook.received}; Prometheus alerts: {alerts}\n"
                f"alertmanager: {alertmanager.log_tail(3000)}\n"
                f"prometheus: {prometheus.log_tail(3000)}"
            )
        path, body = delivered
        print(f"\n{RULE} delivered {time.monotonic() - started:.1f} s after the test started")

        # The URL came from the file, as in the compose stack.
        assert path == WEBHOOK_PATH
        (attachment,) = body["attachments"]
        assert attachment["title"] == f"[FIRING:1] {RULE}"
        assert attachment["color"] == "danger"
        assert body["username"] == "sentiment-alertmanager"
        text = attachment["text"]
        for label in (f"alertname={RULE}", "severity=warning", "stack=sentiment-platform"):
            assert label in text, text
        assert "No /predict requests for 30 minutes" in text

        # The same alert, labels exact, as Alertmanager holds it.
        alerts = httpx.get(f"{alertmanager.url}/api/v2/alerts", timeout=10).json()
        labels = [a["labels"] for a in alerts if a["labels"].get("alertname") == RULE]
        assert labels == [{"alertname": RULE, "severity": "warning", "stack": "sentiment-platform"}]
    finally:
        if prometheus is not None:
            prometheus.stop()
        alertmanager.stop()
