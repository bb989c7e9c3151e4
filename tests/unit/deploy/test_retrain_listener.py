"""deploy/retrain_listener.py in process (Starlette's TestClient): the secret, bad bodies,
ignored alerts, a fake retrain command started once, busy, the cool-down, the metrics. With a
real Alertmanager and the listener as its own process: tests/integration/test_retrain_trigger.py.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from deploy.retrain_listener import (
    DEFAULT_ALERTS,
    ListenerMetrics,
    ListenerSettings,
    RetrainTrigger,
    bearer_token,
    create_app,
    load_secret,
    load_settings,
    result_of,
)
from sentiment.config import ConfigError

SECRET = "s3cret-for-the-webhook-0123456789"
AUTH = {"Authorization": f"Bearer {SECRET}"}

# A fake retrain: appends a line to MARKER (with whether it saw the secret), waits while the
# file HOLD exists (at most 20 s), exits with the code in the file EXIT (default 0).
FAKE = """
import os, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
with open(folder / "marker", "a") as out:
    out.write(f"ran secret={'RETRAIN_WEBHOOK_SECRET' in os.environ}\\n")
print("fake retrain output")
deadline = time.monotonic() + 20
while (folder / "hold").exists() and time.monotonic() < deadline:
    time.sleep(0.02)
code = folder / "exit"
sys.exit(int(code.read_text()) if code.exists() else 0)
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Listener:
    def __init__(self, folder: Path, clock: Clock, cooldown_s: float = 600.0) -> None:
        script = folder / "fake_retrain.py"
        script.write_text(FAKE)
        self.folder = folder
        self.settings = ListenerSettings(
            command=[sys.executable, str(script), str(folder)],
            cooldown_s=cooldown_s,
            log_dir=str(folder / "logs"),
            max_body_bytes=4096,
        )
        env = {"PATH": "/usr/bin:/bin", "RETRAIN_WEBHOOK_SECRET": SECRET, "KEEP": "1"}
        self.trigger = RetrainTrigger(self.settings, ListenerMetrics(), clock=clock, env=env)
        self.client = TestClient(create_app(self.settings, load_secret(env), self.trigger))

    @property
    def runs(self) -> list[str]:
        marker = self.folder / "marker"
        return marker.read_text().splitlines() if marker.exists() else []

    def post(self, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(
            "/alertmanager", content=json.dumps(body), headers=AUTH if headers is None else headers
        )

    def wait_idle(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.trigger.running:
            assert time.monotonic() < deadline, "the fake run did not finish"
            time.sleep(0.02)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.client.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.metrics()[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def listener(tmp_path: Path, clock: Clock) -> Iterator[Listener]:
    made = Listener(tmp_path, clock)
    with made.client:
        yield made


def webhook(*alerts: tuple[str, str], status: str = "firing") -> dict[str, Any]:
    """Alertmanager's webhook JSON (version 4) with (alertname, status) alerts."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="x"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "retrain",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": st,
                "labels": {"alertname": name, "severity": "warning"},
                "annotations": {"summary": "s"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": "abc",
            }
            for name, st in alerts
        ],
    }


DRIFT_ALERT = ("SentimentDriftDetected", "firing")
DRIFT = webhook(DRIFT_ALERT)


# --- authentication and bad bodies ------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-secret-0123456789abcdef"},
        {"Authorization": f"Bearer {SECRET}x"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": "Bearer "},
    ],
)
def test_without_the_secret_nothing_happens(listener: Listener, headers: dict[str, str]) -> None:
    answer = listener.post(DRIFT, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert listener.runs == []
    assert listener.value("retrain_triggers_total", outcome="unauthorized") == 1
    assert listener.value("retrain_triggers_total", outcome="started") == 0
    assert listener.value("retrain_last_start_timestamp_seconds") == 0
    assert list((listener.folder / "logs").iterdir()) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[]",
        b'{"version": "4"}',
        b'{"alerts": [{"status": "burning", "labels": {"alertname": "SentimentDriftDetected"}}]}',
        b'{"alerts": [{"status": "firing", "labels": {"alertname": 3}}]}',
        b'{"alerts": "SentimentDriftDetected"}',
    ],
)
def test_a_malformed_body_is_400_and_changes_nothing(listener: Listener, body: bytes) -> None:
    answer = listener.client.post("/alertmanager", content=body, headers=AUTH)
    assert answer.status_code == 400
    assert listener.runs == []
    assert listener.value("retrain_triggers_total", outcome="bad_request") == 1
    assert listener.value("retrain_triggers_total", outcome="started") == 0


def test_a_body_over_the_limit_is_413(listener: Listener) -> None:
    big = webhook(*[("SentimentDriftDetected", "firing")] * 40)
    assert len(json.dumps(big)) > listener.settings.max_body_bytes
    assert listener.post(big).status_code == 413
    assert listener.runs == []
    assert listener.value("retrain_triggers_total", outcome="bad_request") == 1


def test_the_secret_is_checked_before_the_body_is_read(listener: Listener) -> None:
    answer = listener.client.post("/alertmanager", content=b"x" * 10_000)
    assert answer.status_code == 401


def test_other_methods_and_paths(listener: Listener) -> None:
    assert listener.client.get("/alertmanager", headers=AUTH).status_code == 405
    assert listener.client.post("/", headers=AUTH).status_code == 404


# --- what starts a run ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        webhook(("SentimentDriftDetected", "resolved"), status="resolved"),
        webhook(("SentimentHighLatencyP95", "firing")),
        webhook(("SentimentNoTraffic", "firing"), ("SentimentDriftDetected", "resolved")),
        webhook(),
    ],
)
def test_resolved_alerts_and_other_names_are_ignored(listener: Listener, body: Any) -> None:
    answer = listener.post(body)
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "ignored"
    assert listener.runs == []
    assert listener.value("retrain_triggers_total", outcome="ignored") == 1
    assert listener.value("retrain_triggers_total", outcome="started") == 0


def test_a_firing_alert_starts_the_command_once(listener: Listener) -> None:
    answer = listener.post(webhook(("SentimentNoTraffic", "firing"), DRIFT_ALERT))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "started"
    listener.wait_idle()
    # It ran once, without the webhook secret in its environment.
    assert listener.runs == ["ran secret=False"]
    (log,) = (listener.folder / "logs").glob("retrain-*.log")
    text = log.read_text()
    assert "started" in text and "SentimentDriftDetected" in text
    assert "fake retrain output" in text
    assert SECRET not in text
    assert listener.value("retrain_triggers_total", outcome="started") == 1
    assert listener.value("retrain_runs_total", result="succeeded") == 1
    assert listener.value("retrain_running") == 0
    assert listener.value("retrain_last_start_timestamp_seconds") == 1_700_000_000.0
    assert listener.value("retrain_alerts_received_total", status="firing", matched="true") == 1
    assert listener.value("retrain_alerts_received_total", status="firing", matched="false") == 1
    health = listener.client.get("/health").json()
    assert health["running"] is False and health["last_result"] == "succeeded"
    assert health["cooldown_left_s"] == 600.0


def test_busy_while_running_then_cooling_down_then_again(listener: Listener, clock: Clock) -> None:
    hold = listener.folder / "hold"
    hold.touch()
    assert listener.post(DRIFT).json()["outcome"] == "started"
    assert listener.value("retrain_running") == 1
    busy = listener.post(webhook(("SentimentEstimatedAccuracyLow", "firing"))).json()
    assert busy["outcome"] == "busy"
    assert listener.client.get("/health").json()["running"] is True
    hold.unlink()
    listener.wait_idle()

    clock.now += 599
    cooling = listener.post(DRIFT).json()
    assert cooling["outcome"] == "cooldown"
    assert "1 s of the 600 s cool-down left" in cooling["detail"]
    clock.now += 1
    assert listener.post(DRIFT).json()["outcome"] == "started"
    listener.wait_idle()

    assert listener.runs == ["ran secret=False", "ran secret=False"]
    counts = {o: listener.value("retrain_triggers_total", outcome=o) for o in ("started", "busy")}
    assert counts == {"started": 2, "busy": 1}
    assert listener.value("retrain_triggers_total", outcome="cooldown") == 1
    assert listener.value("retrain_runs_total", result="succeeded") == 2
    assert listener.value("retrain_last_start_timestamp_seconds") == 1_700_000_600.0


@pytest.mark.parametrize(("code", "result"), [(1, "failed"), (3, "skipped"), (0, "succeeded")])
def test_the_run_result_follows_its_exit_status(listener: Listener, code: int, result: str) -> None:
    (listener.folder / "exit").write_text(str(code))
    assert listener.post(DRIFT).json()["outcome"] == "started"
    listener.wait_idle()
    assert listener.value("retrain_runs_total", result=result) == 1
    results = ("succeeded", "failed", "skipped")
    assert sum(listener.value("retrain_runs_total", result=r) for r in results) == 1
    assert result_of(code) == result


def test_a_command_that_cannot_start_counts_as_failed(tmp_path: Path, clock: Clock) -> None:
    settings = ListenerSettings(command=[str(tmp_path / "missing")], log_dir=str(tmp_path / "l"))
    trigger = RetrainTrigger(settings, ListenerMetrics(), clock=clock, env={})
    app = create_app(settings, load_secret({"RETRAIN_WEBHOOK_SECRET": SECRET}), trigger)
    with TestClient(app) as client:
        answer = client.post("/alertmanager", content=json.dumps(DRIFT), headers=AUTH).json()
        assert answer["outcome"] == "started" and "could not start" in answer["detail"]
        assert trigger.metrics.runs.labels("failed")._value.get() == 1
        # The cool-down still holds: a broken command is not retried on every notification.
        again = client.post("/alertmanager", content=json.dumps(DRIFT), headers=AUTH).json()
        assert again["outcome"] == "cooldown"


def test_the_cooldown_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    first = Listener(tmp_path, clock)
    with first.client:
        assert first.post(DRIFT).json()["outcome"] == "started"
        first.wait_idle()
    clock.now += 60
    second = Listener(tmp_path, clock)
    with second.client:
        assert second.value("retrain_last_start_timestamp_seconds") == 1_700_000_000.0
        assert second.post(DRIFT).json()["outcome"] == "cooldown"
    assert second.runs == ["ran secret=False"]


def test_closing_stops_a_run_in_progress(tmp_path: Path, clock: Clock) -> None:
    made = Listener(tmp_path, clock)
    (tmp_path / "hold").touch()
    with made.client:
        assert made.post(DRIFT).json()["outcome"] == "started"
        assert made.trigger.running
    # Leaving the client ran the lifespan's shutdown: the run was stopped and counted.
    assert not made.trigger.running
    assert made.trigger.metrics.runs.labels("failed")._value.get() == 1


def test_nothing_logs_the_secret(listener: Listener, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    listener.post(DRIFT, headers={"Authorization": "Bearer wrong-secret-0123456789abcdef"})
    listener.post(DRIFT)
    listener.wait_idle()
    assert caplog.records
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert all("wrong-secret" not in r.getMessage() for r in caplog.records)
    lines = [r.getMessage() for r in caplog.records if "retrain" in r.getMessage()]
    assert any(line.startswith("retrain trigger unauthorized") for line in lines)
    assert any(line.startswith("retrain trigger started") for line in lines)
    assert any(line.startswith("retrain run succeeded") for line in lines)


# --- settings ---------------------------------------------------------------------------------


def test_settings_from_the_environment() -> None:
    default = load_settings({})
    assert default.alerts == list(DEFAULT_ALERTS)
    assert default.cooldown_s == 3600
    assert default.argv() == [sys.executable, "-m", "training.retrain"]
    settings = load_settings(
        {
            "RETRAIN_ALERTS": "A, B,,C",
            "RETRAIN_COOLDOWN_S": "5",
            "RETRAIN_COMMAND": "make retrain 'CONFIG=my config.yaml'",
            "RETRAIN_LOG_DIR": "/tmp/x",
            "RETRAIN_LISTENER_PORT": "9200",
        }
    )
    assert settings.alerts == ["A", "B", "C"]
    assert settings.cooldown_s == 5
    assert settings.argv() == ["make", "retrain", "CONFIG=my config.yaml"]
    assert settings.log_dir == "/tmp/x" and settings.port == 9200
    with pytest.raises(ConfigError, match="cooldown_s"):
        load_settings({"RETRAIN_COOLDOWN_S": "-1"})
    with pytest.raises(ConfigError, match="alerts"):
        load_settings({"RETRAIN_ALERTS": " , "})


def test_the_secret_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert load_secret({"RETRAIN_WEBHOOK_SECRET": SECRET}).get_secret_value() == SECRET
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert load_secret({"RETRAIN_WEBHOOK_SECRET_FILE": str(path)}).get_secret_value() == SECRET
    with pytest.raises(ConfigError, match="no webhook secret"):
        load_secret({})
    with pytest.raises(ConfigError, match="cannot read") as missing:
        load_secret({"RETRAIN_WEBHOOK_SECRET_FILE": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="at least 16") as short:
        load_secret({"RETRAIN_WEBHOOK_SECRET": "short"})
    assert "short" not in str(short.value)
    assert SECRET not in str(missing.value)
    assert repr(load_secret({"RETRAIN_WEBHOOK_SECRET": SECRET})) == "SecretStr('**********')"


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"bearer  abc ")], b"abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")], None),
        ([(b"x-other", b"Bearer abc")], None),
    ],
)
def test_bearer_token(headers: list[tuple[bytes, bytes]], token: bytes | None) -> None:
    assert bearer_token(headers) == token


# --- the compose stack and alertmanager.yml ---------------------------------------------------

DOCKER = Path(__file__).resolve().parents[3] / "docker"


def docker_yaml(name: str) -> Any:
    import yaml

    return yaml.safe_load((DOCKER / name).read_text())


def test_alertmanager_sends_the_retraining_alerts_to_the_listener_with_the_secret() -> None:
    config = docker_yaml("alertmanager.yml")
    alerts = {r["alert"] for g in docker_yaml("alerts.yml")["groups"] for r in g["rules"]}
    assert set(DEFAULT_ALERTS) <= alerts
    (route,) = [r for r in config["route"]["routes"] if r.get("receiver") == "retrain"]
    assert route["continue"] is True  # Slack still gets them
    (matcher,) = route["matchers"]
    assert matcher == f'alertname=~"{"|".join(DEFAULT_ALERTS)}"'
    (receiver,) = [r for r in config["receivers"] if r["name"] == "retrain"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == "http://retrain-listener:9095/alertmanager"
    assert hook["send_resolved"] is False
    auth = hook["http_config"]["authorization"]
    assert auth == {
        "type": "Bearer",
        "credentials_file": "/run/alertmanager/retrain_webhook_secret",
    }


def test_the_compose_listener_is_internal_and_matches_the_route() -> None:
    services = docker_yaml("docker-compose.yml")["services"]
    listener = services["retrain-listener"]
    assert "ports" not in listener and listener["networks"] == ["internal"]
    assert "internal" in services["alertmanager"]["networks"]
    assert listener["profiles"] == ["retrain"]
    assert listener["expose"] == ["9095"]
    assert listener["entrypoint"][:3] == ["python", "-m", "deploy.retrain_listener"]
    assert listener["entrypoint"][-2:] == ["--port", "9095"]
    assert listener["environment"]["RETRAIN_WEBHOOK_SECRET"] == "${RETRAIN_WEBHOOK_SECRET:-}"
    assert "/run/alertmanager" in services["alertmanager"]["tmpfs"]
    assert services["alertmanager"]["environment"]["RETRAIN_WEBHOOK_SECRET"] == (
        "${RETRAIN_WEBHOOK_SECRET:-}"
    )


def test_the_alertmanager_entrypoint_writes_the_secret_file(tmp_path: Path) -> None:
    import os
    import stat
    import subprocess

    service = docker_yaml("docker-compose.yml")["services"]["alertmanager"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stub = tmp_path / "alertmanager"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    script = (
        service["command"][0]
        .replace("$$", "$")
        .replace("/run/alertmanager", str(run_dir))
        .replace("/bin/alertmanager", str(stub))
    )
    env = {"PATH": os.environ["PATH"], "RETRAIN_WEBHOOK_SECRET": SECRET, "SLACK_WEBHOOK_URL": "u"}
    done = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    secret_file = run_dir / "retrain_webhook_secret"
    assert secret_file.read_text() == SECRET  # no newline
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
