"""Prometheus config and alert rules, checked and unit-tested with Debian's promtool."""

from __future__ import annotations

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
}


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
