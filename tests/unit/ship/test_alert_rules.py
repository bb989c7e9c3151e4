"""Prometheus config and alert rules, checked and unit-tested with Debian's promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[3] / "docker"
REQUIRED_ALERTS = {
    "SentimentHighErrorRate",
    "SentimentHighLatencyP95",
    "SentimentDriftDetected",
    "SentimentModelNotLoaded",
    "SentimentNoTraffic",
    "SentimentEstimatedAccuracyLow",
}
# The accuracy alerts and the gauges they read (monitoring/metrics.py): per worker (pid label),
# the floor exported from the monitoring config rather than copied into the rule.
ACCURACY_ALERTS = {
    "SentimentEstimatedAccuracyLow": "model_estimated_accuracy",
    "SentimentRealizedAccuracyLow": "model_realized_accuracy",
}
FLOOR_GAUGE = "model_accuracy_floor"
MONITORING = DOCKER.parent / "monitoring"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package (apt-get install prometheus)"
        )
    return path


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=DOCKER, capture_output=True, text=True, timeout=120
    )


def load(name: str) -> Any:
    return yaml.safe_load((DOCKER / name).read_text())


def alert_names() -> list[str]:
    return [r["alert"] for g in load("alerts.yml")["groups"] for r in g["rules"] if "alert" in r]


def alert_rules() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in load("alerts.yml")["groups"] for r in g["rules"] if "alert" in r}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))


def test_prometheus_config_is_valid(promtool: str) -> None:
    result = run_promtool(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_alert_unit_tests_pass(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_required_alerts_exist_once() -> None:
    names = alert_names()
    assert set(names) >= REQUIRED_ALERTS
    assert len(names) == len(set(names))


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load("alerts_test.yml")["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alert_names())
    assert names - firing == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"


def test_every_alert_has_severity_and_summary() -> None:
    for group in load("alerts.yml")["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule.get("for"), f"{rule['alert']} would fire on a single evaluation"


def test_rules_only_read_the_scraped_job() -> None:
    """The compose scrape job's name is what every alert filters on."""
    jobs = {c["job_name"] for c in load("prometheus.yml")["scrape_configs"]}
    assert "sentiment-api" in jobs
    for group in load("alerts.yml")["groups"]:
        for rule in group["rules"]:
            assert 'job="sentiment-api"' in rule["expr"], rule["alert"]


def test_accuracy_alerts_compare_with_the_floor_gauge() -> None:
    rules = alert_rules()
    drift = rules["SentimentDriftDetected"]
    for name, gauge in ACCURACY_ALERTS.items():
        rule = rules[name]
        expr = rule["expr"]
        assert {gauge, FLOOR_GAUGE} <= metric_names(expr), name
        # The floor comes from the gauge, not from a number copied into the rule.
        assert not re.search(r"(?<![\w.])0?\.\d+", expr), f"{name} compares with a literal"
        # Per-worker gauges: the pid label is aggregated away on both sides of the comparison.
        for metric in (gauge, FLOOR_GAUGE):
            assert re.search(rf"without \(pid\) \({metric}\{{", expr), f"{name}: {metric}"
        assert rule["for"] == drift["for"], name
        assert rule["labels"]["severity"] == drift["labels"]["severity"], name
        description = rule["annotations"]["description"]
        assert "$value | humanizePercentage" in description, name
        assert FLOOR_GAUGE in description, f"{name} does not state the floor"


def test_realized_accuracy_alert_waits_for_enough_labels() -> None:
    expr = alert_rules()["SentimentRealizedAccuracyLow"]["expr"]
    gate = re.search(r"\(model_labelled_predictions\{[^}]*\}\) >= (\d+)", expr)
    assert gate and int(gate.group(1)) >= 100, expr


def test_alerts_read_metrics_the_monitor_declares() -> None:
    """A renamed gauge would leave an alert evaluating nothing; the live check is in
    tests/integration/test_prometheus_dashboard.py."""
    source = "".join(p.read_text() for p in MONITORING.glob("*.py"))
    for name, rule in alert_rules().items():
        for metric in metric_names(rule["expr"]):
            if metric == "up" or metric.startswith("bentoml_"):
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert f'"{metric}"' in source or f'"{base}"' in source, f"{name}: {metric}"
