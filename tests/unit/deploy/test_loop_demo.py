"""deploy/loop_demo.py's pure parts: the configurations it derives from docker/ and its timeline.
The loop itself runs in tests/integration/test_loop.py."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from deploy.loop_demo import (
    ALERT,
    JOB,
    LoopResult,
    Timeline,
    alertmanager_config,
    drift_rule,
    iso_seconds,
    prometheus_config,
    write_timeline,
)

ROOT = Path(__file__).resolve().parents[3]


def test_the_drift_rule_keeps_the_expression_and_changes_only_for() -> None:
    shipped = next(
        r
        for g in yaml.safe_load((ROOT / "docker" / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == ALERT
    )
    rule = drift_rule("5s")
    assert rule["for"] == "5s"
    assert {k: v for k, v in rule.items() if k != "for"} == {
        k: v for k, v in shipped.items() if k != "for"
    }


def test_prometheus_scrapes_the_loop_service_every_second(tmp_path: Path) -> None:
    config = prometheus_config("127.0.0.1:4000", tmp_path / "rules.yml", "127.0.0.1:9093")
    assert config["global"]["scrape_interval"] == "1s"
    assert config["rule_files"] == [str(tmp_path / "rules.yml")]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB and job["static_configs"] == [{"targets": ["127.0.0.1:4000"]}]
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]


def test_alertmanager_sends_the_drift_alert_to_the_loop_listener(tmp_path: Path) -> None:
    config = alertmanager_config("http://127.0.0.1:5/alertmanager", tmp_path / "s", tmp_path / "u")
    routes = config["route"]["routes"]
    assert all(r["group_wait"] == "1s" for r in [config["route"], *routes])
    retrain = next(r for r in routes if r.get("receiver") == "retrain")
    assert ALERT in retrain["matchers"][0]
    (hook,) = next(r for r in config["receivers"] if r["name"] == "retrain")["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:5/alertmanager"
    assert hook["http_config"]["authorization"]["credentials_file"] == str(tmp_path / "s")


def test_iso_seconds_reads_prometheus_nanosecond_times() -> None:
    assert iso_seconds("1970-01-01T00:01:00.123456789Z") == 60.123456


def test_the_timeline_prints_each_step_and_writes_the_intervals(tmp_path: Path) -> None:
    said: list[str] = []
    timeline = Timeline(said.append)
    timeline.started = 1000.0
    timeline.mark("alert fired", "firing", at=1010.0)
    timeline.note("a line for the person")
    timeline.mark("retrain started", "started 1", at=1011.5)
    assert said[0] == "[00:16:50   +10.0 s] alert fired: firing"
    assert "a line for the person" in said[1]
    assert timeline.at("retrain started") == 1011.5
    path = tmp_path / "t.json"
    write_timeline(timeline, LoopResult(candidate_version="2"), path, {"extra": 1})
    document = json.loads(path.read_text())
    assert [e["step"] for e in document["events"]] == ["alert fired", "retrain started"]
    assert document["intervals_s"]["alert fired -> retrain started"] == 1.5
    assert document["intervals_s"]["shadow agreement -> gate decision"] is None
    assert document["candidate"]["version"] == "2" and document["extra"] == 1
