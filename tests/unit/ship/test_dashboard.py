"""Grafana dashboard and provisioning, and the compose file that mounts them.

Every panel query is parsed by Debian's promtool (as a recording rule); a live Prometheus
evaluates them in tests/integration/test_prometheus_dashboard.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "sentiment.json"
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DOCKER / "grafana" / "provisioning" / "dashboards" / "sentiment.yml"
# What the dashboard must show (issue: request rate, error rate, latency p50/p95/p99, batch size
# distribution, prediction rate by sentiment, confidence distribution, drift score, drift tests).
REQUIRED_TITLES = {
    "Request rate",
    "Error rate",
    "Latency p50 / p95 / p99",
    "Adaptive batch size distribution",
    "Prediction rate by sentiment",
    "Confidence distribution",
    "Drift score",
    "Drift test p-values",
    "Drift test statistics",
    # Issue "Is the model still right?": estimated vs realized accuracy against the floor.
    "Estimated vs realized accuracy",
    "Labelled predictions",
}
ACCURACY_ROW = "Model accuracy"
MONITORING = ROOT / "monitoring"
# Grafana's range variables, replaced by durations Prometheus accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def substitute(expr: str, variables: dict[str, str] = GRAFANA_VARIABLES) -> str:
    for name, value in variables.items():
        expr = expr.replace(name, value)
    return expr


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def query_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_has_the_required_panels() -> None:
    titles = {p["title"] for p in query_panels()}
    assert REQUIRED_TITLES - titles == set()


def test_latency_panel_has_p50_p95_p99() -> None:
    panel = next(p for p in query_panels() if p["title"] == "Latency p50 / p95 / p99")
    quantiles = sorted(
        re.findall(r"histogram_quantile\((0\.\d+)", t["expr"])[0] for t in panel["targets"]
    )
    assert quantiles == ["0.5", "0.95", "0.99"]


def test_panels_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uids = {d["uid"] for d in provisioned if d["type"] == "prometheus"}
    assert len(uids) == 1
    for panel in query_panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]


def test_panel_layout_is_consistent() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in query_panels():
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_panels_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    for i, a in enumerate(panels):
        for b in panels[i + 1 :]:
            assert not overlaps(a["gridPos"], b["gridPos"]), (a["title"], b["title"])


def row_of(title: str) -> str:
    """The title of the row a panel sits under (rows are expanded: panels follow by y)."""
    panels = dashboard()["panels"]
    y = next(p["gridPos"]["y"] for p in panels if p["title"] == title)
    rows = [p for p in panels if p["type"] == "row" and p["gridPos"]["y"] < y]
    return max(rows, key=lambda r: r["gridPos"]["y"])["title"]


def test_accuracy_panels_query_the_accuracy_gauges() -> None:
    panels = {p["title"]: p for p in query_panels()}
    series = panels["Estimated vs realized accuracy"]
    assert series["type"] == "timeseries"
    assert series["fieldConfig"]["defaults"]["unit"] == "percentunit"
    exprs = " ".join(t["expr"] for t in series["targets"])
    for metric in ("model_estimated_accuracy", "model_realized_accuracy", "model_accuracy_floor"):
        assert f"{metric}{{" in exprs, metric
    # The floor is drawn as its own series, from the gauge the alert reads.
    legends = {t["legendFormat"] for t in series["targets"]}
    assert "floor" in legends
    labelled = panels["Labelled predictions"]
    assert labelled["type"] == "stat"
    assert "model_labelled_predictions{" in labelled["targets"][0]["expr"]
    for title in ("Estimated vs realized accuracy", "Labelled predictions"):
        assert row_of(title) == ACCURACY_ROW, title


def test_panels_query_metrics_the_monitor_declares() -> None:
    source = "".join(p.read_text() for p in MONITORING.glob("*.py"))
    for panel in query_panels():
        for target in panel["targets"]:
            for metric in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", target["expr"]):
                if metric == "up" or metric.startswith("bentoml_"):
                    continue
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                assert f'"{metric}"' in source or f'"{base}"' in source, (panel["title"], metric)


def test_every_panel_query_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package (apt-get install prometheus)"
        )
    rules = [
        {
            "record": f"dashboard:panel_{panel['id']}_{target['refId']}",
            "expr": substitute(target["expr"]),
        }
        for panel in query_panels()
        for target in panel["targets"]
    ]
    assert not any("$" in r["expr"] for r in rules), "a Grafana variable the test does not know"
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_compose_mounts_existing_files_and_scrapes_the_service() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    job = next(c for c in prometheus["scrape_configs"] if c["job_name"] == "sentiment-api")
    target = job["static_configs"][0]["targets"][0]
    host, port = target.split(":")
    assert host in compose["services"]
    published = compose["services"][host]["ports"][0]
    assert published.endswith(f":{port}")
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:${PROMETHEUS_PORT}"
    grafana_env = compose["services"]["grafana"]["environment"]
    assert grafana_env["PROMETHEUS_PORT"] == "${PROMETHEUS_PORT:-9090}"
    assert (
        "--web.listen-address=:${PROMETHEUS_PORT:-9090}"
        in compose["services"]["prometheus"]["command"]
    )
    assert "prometheus" in compose["services"]


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose not found: install Debian's docker-compose package")
    return subprocess.run(
        [tool, "-f", str(DOCKER / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_compose_file_is_valid_for_docker_compose() -> None:
    secrets = ("GRAFANA_ADMIN_PASSWORD", "MLFLOW_DB_PASSWORD")
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    result = compose_config({**env, **{name: "not-a-default" for name in secrets}})
    assert result.returncode == 0, result.stderr
    # No default passwords: compose refuses to start without each one.
    for missing in secrets:
        given = {name: "not-a-default" for name in secrets if name != missing}
        refused = compose_config({**env, **given})
        assert refused.returncode != 0 and missing in refused.stderr


def test_only_the_api_and_grafana_are_published() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert sorted(name for name, svc in services.items() if svc.get("ports")) == [
        "grafana",
        "sentiment-api",
    ]
    assert services["prometheus"]["networks"] == ["internal"]
    assert services["mlflow-db"]["networks"] == ["internal"]
    assert "internal" in services["mlflow"]["networks"]
    assert compose["networks"]["internal"] == {"internal": True}
    assert "admin" not in str(services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"])
