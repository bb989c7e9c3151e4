"""Debian's Prometheus scrapes a real `bentoml serve`, then every Grafana panel query and every
alert rule is evaluated against what it scraped."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from loadtests.servers import free_port
from sentiment.data import read_tsv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "sentiment.json"
# Range variables for a 1 s scrape interval, wide enough for a busy machine where sending the
# traffic and the monitor's first drift computation take minutes.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "5s", "$__range": "30m"}
TEXTS_PER_REQUEST = 16


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


class Prometheus:
    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
        # The compose file's config, pointed at the test's service and sped up.
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(DOCKER / name) for name in config["rule_files"]]
        for job in config["scrape_configs"]:
            job.pop("scrape_timeout", None)
            if job["job_name"] == "sentiment-api":
                job["static_configs"] = [{"targets": [target]}]
            else:
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.port}"]}]
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prometheus not ready: {self.log_path.read_text()[-2000:]}")

    def query(self, expr: str) -> dict[str, Any]:
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body: dict[str, Any] = resp.json()
        return body

    def value(self, expr: str) -> float:
        result = self.query(expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else math.nan

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def prometheus(served_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "prometheus not found: install Debian's prometheus package (apt-get install prometheus)"
        )
    server = Prometheus(binary, tmp_path_factory.mktemp("prometheus"), urlparse(served_url).netloc)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def traffic(served_url: str, sst2_dir: Path, prometheus: Prometheus) -> int:
    """Enough /predict traffic to fill the drift window's and the accuracy estimate's minimum,
    labels for some of it, plus one rejected request; returns the number of predictions, once
    Prometheus has scraped all of them."""
    monitoring = yaml.safe_load((ROOT / "configs" / "monitoring_config.yaml").read_text())
    least = max(monitoring["drift"]["min_window"], monitoring["performance"]["min_window"])
    wanted = int(least) + 4 * TEXTS_PER_REQUEST
    texts = read_tsv(sst2_dir / "validation.tsv").texts[:wanted]
    client = httpx.Client(base_url=served_url, timeout=120)

    def send(batch: list[str]) -> list[dict[str, Any]]:
        resp = client.post("/predict", json={"texts": batch})
        assert resp.status_code == 200, resp.text
        predictions: list[dict[str, Any]] = resp.json()["predictions"]
        return predictions

    with client:
        for start in range(0, len(texts), TEXTS_PER_REQUEST):
            shown = send(texts[start : start + TEXTS_PER_REQUEST])
        labels = [{"id": p["id"], "label": p["sentiment"]} for p in shown]
        resp = client.post("/feedback", json={"feedback": labels})
        assert resp.status_code == 200, resp.text
        assert client.post("/predict", json={"texts": []}).status_code == 400
        # The monitor refreshes its gauges in the background; Prometheus scrapes every second.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            seen = prometheus.value('sum(prediction_total{job="sentiment-api"})')
            window = prometheus.value('sum(drift_window_size{job="sentiment-api"})')
            estimated = prometheus.value('max(model_estimated_accuracy{job="sentiment-api"})')
            realized = prometheus.value('max(model_realized_accuracy{job="sentiment-api"})')
            accuracies = math.isfinite(estimated) and math.isfinite(realized)
            if seen >= len(texts) and window >= len(texts) and accuracies:
                # Fresh requests, then a few scrapes, so every rate() window holds traffic.
                send(texts[:TEXTS_PER_REQUEST])
                time.sleep(5)
                return len(texts) + TEXTS_PER_REQUEST
            time.sleep(1)
    pytest.fail(
        f"Prometheus saw {seen} predictions and a drift window of {window}, sent {len(texts)};"
        f" estimated accuracy {estimated}, realized {realized}"
    )


def panel_targets() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (f"{p['title']} [{t['refId']}]", substitute(t["expr"]))
        for p in panels
        if p["type"] != "row"
        for t in p["targets"]
    ]


def test_service_is_scraped(prometheus: Prometheus, traffic: int) -> None:
    assert prometheus.value('up{job="sentiment-api"}') == 1.0
    assert prometheus.value('sum(prediction_total{job="sentiment-api"})') >= traffic


# Panels with series only while a challenger runs in shadow (shadow.model): checked to parse.
NEEDS_SHADOW = ("Challenger in shadow",)


def test_every_panel_query_returns_data(prometheus: Prometheus, traffic: int) -> None:
    problems: list[str] = []
    for name, expr in panel_targets():
        body = prometheus.query(expr)
        if body.get("status") != "success":
            problems.append(f"{name}: {body.get('errorType')}: {body.get('error')}")
            continue
        if name.startswith(NEEDS_SHADOW):
            continue
        result = body["data"]["result"]
        values = [float(s["value"][1]) for s in result] if isinstance(result, list) else []
        if not values:
            problems.append(f"{name}: no series after {traffic} predictions: {expr}")
        elif not any(math.isfinite(v) for v in values):
            problems.append(f"{name}: only NaN/Inf after {traffic} predictions: {expr}")
    assert not problems, "\n".join(problems)


def test_metric_names_in_alerts_exist(prometheus: Prometheus, traffic: int) -> None:
    """A renamed metric would leave an alert silently evaluating nothing."""
    rules = yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"]
    names = {
        name
        for group in rules
        for rule in group["rules"]
        for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", rule["expr"])
    }
    missing = [
        n
        for n in sorted(names)
        if math.isnan(prometheus.value(f'count({n}{{job="sentiment-api"}})'))
    ]
    assert not missing, f"alerts read metrics the service does not export: {missing}"


def test_alert_rules_evaluate_cleanly(prometheus: Prometheus, traffic: int) -> None:
    time.sleep(2)  # at least one rule evaluation after the traffic
    groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    expected = {
        r["alert"]
        for g in yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    assert {r["name"] for r in rules} == expected
    unhealthy = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    # With a loaded model, traffic and no errors, none of these may even be pending.
    active = {r["name"] for r in rules if r["state"] != "inactive"}
    assert (
        active & {"SentimentServiceDown", "SentimentHighErrorRate", "SentimentModelNotLoaded"}
        == set()
    )
