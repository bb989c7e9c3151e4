"""Retraining for real.

1. The trigger: Debian's Alertmanager with docker/alertmanager.yml (the listener's address, the
   secret file and the groupings made local and second-long) takes two retraining alerts
   through its API within the cool-down; the listener, its own process (`python -m
   deploy.retrain_listener`), starts a stub RETRAIN_COMMAND that appends to a marker file:
   exactly once, the second alert answered `cooldown`. A call without the secret changes
   nothing.
2. `python -m training.retrain` on a copy of the session's tiny registry (the tiny profile of
   tests/conftest.py) with a feedback database built by PredictionStore: a new version @candidate
   whose run holds the feedback's lineage (datasets with their digests, counts, time range), the
   held-out feedback's accuracy, and the gate's decision tag.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadtests.servers import ServerProcess, free_port

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SECRET = "integration-retrain-secret-0123456789"
READY = "/-/ready"
DEADLINE_S = 60

STUB = """
import sys, time
with open(sys.argv[1], "a") as out:
    out.write(f"retrain {time.time()}\\n")
print("stub retrain done")
"""


def alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):
        if path := shutil.which(name):
            return path
    pytest.fail("alertmanager not found: install Debian's prometheus-alertmanager")


def alertmanager_config(listener_url: str, secret_file: Path, slack_url_file: Path) -> Any:
    """docker/alertmanager.yml with the test's listener, secret file and Slack URL file, and
    second-long grouping."""
    config: dict[str, Any] = yaml.safe_load((DOCKER / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"]["routes"]]:
        route["group_wait"] = "1s"
        route["group_interval"] = "1s"
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(slack_url_file)
        for hook in receiver.get("webhook_configs", []):
            assert hook["url"] == "http://retrain-listener:9095/alertmanager"
            hook["url"] = listener_url
            auth = hook["http_config"]["authorization"]
            assert auth["credentials_file"] == "/run/alertmanager/retrain_webhook_secret"
            auth["credentials_file"] = str(secret_file)
    return config


def listener_metrics(url: str) -> dict[str, float]:
    """`name{labels}` -> value of the listener's /metrics."""
    out = {}
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def wait_for(what: str, check: Any, logs: Any) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {DEADLINE_S} s\n{logs()}")
        time.sleep(0.2)


def post_alert(alertmanager: str, name: str) -> None:
    now = datetime.now(UTC).isoformat()
    alert = {
        "labels": {"alertname": name, "severity": "warning", "job": "sentiment-api"},
        "annotations": {"summary": f"{name} (test)"},
        "startsAt": now,
        "generatorURL": "http://prometheus.test/graph",
    }
    answer = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=10)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    stub = tmp_path / "stub_retrain.py"
    stub.write_text(STUB)
    marker = tmp_path / "marker"
    secret_file = tmp_path / "listener_secret"
    secret_file.write_text(SECRET + "\n")
    port = free_port()
    env = {
        **os.environ,
        "RETRAIN_WEBHOOK_SECRET_FILE": str(secret_file),
        "RETRAIN_COMMAND": f"{sys.executable} {stub} {marker}",
        "RETRAIN_COOLDOWN_S": "600",
        "RETRAIN_LOG_DIR": str(tmp_path / "runs"),
    }
    env.pop("RETRAIN_WEBHOOK_SECRET", None)
    proc = ServerProcess(
        [
            sys.executable,
            "-m",
            "deploy.retrain_listener",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env,
        tmp_path / "listener.log",
        port,
        ready_path="/health",
    )
    try:
        proc.wait_ready(timeout=60)
        yield proc, marker
    finally:
        proc.stop()


def test_two_alerts_within_the_cooldown_start_one_run(
    listener: tuple[ServerProcess, Path], tmp_path: Path
) -> None:
    started = time.monotonic()
    server, marker = listener
    secret_file = tmp_path / "am_secret"
    secret_file.write_text(SECRET)
    slack_url = tmp_path / "slack_url"
    slack_url.write_text("http://127.0.0.1:9/slack")  # nothing listens: Slack delivery fails
    am_port = free_port()
    am_yml = tmp_path / "alertmanager.yml"
    config = alertmanager_config(f"{server.url}/alertmanager", secret_file, slack_url)
    am_yml.write_text(yaml.safe_dump(config))
    alertmanager = ServerProcess(
        [
            alertmanager_binary(),
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

    def logs() -> str:
        return (
            f"listener metrics: {listener_metrics(server.url)}\n"
            f"listener log: {server.log_tail(3000)}\n"
            f"alertmanager log: {alertmanager.log_tail(3000)}"
        )

    def count(outcome: str) -> float:
        return listener_metrics(server.url).get(f'retrain_triggers_total{{outcome="{outcome}"}}', 0)

    try:
        alertmanager.wait_ready(timeout=60)

        # Without the secret: 401, nothing started.
        wrong = httpx.post(
            f"{server.url}/alertmanager",
            json={
                "alerts": [{"status": "firing", "labels": {"alertname": "SentimentDriftDetected"}}]
            },
            headers={"Authorization": "Bearer not-the-secret-0123456789"},
            timeout=10,
        )
        assert wrong.status_code == 401

        post_alert(alertmanager.url, "SentimentDriftDetected")
        wait_for("the first run", lambda: marker.exists() and count("started") == 1, logs)
        wait_for(
            "the first run's end",
            lambda: listener_metrics(server.url).get('retrain_runs_total{result="succeeded"}') == 1,
            logs,
        )
        first_at = time.monotonic() - started

        post_alert(alertmanager.url, "SentimentEstimatedAccuracyLow")
        wait_for("the second alert, cooling down", lambda: count("cooldown") >= 1, logs)

        assert len(marker.read_text().splitlines()) == 1
        metrics = listener_metrics(server.url)
        assert metrics['retrain_triggers_total{outcome="started"}'] == 1
        assert metrics['retrain_triggers_total{outcome="unauthorized"}'] == 1
        assert metrics['retrain_triggers_total{outcome="busy"}'] == 0
        assert metrics["retrain_running"] == 0
        assert metrics["retrain_last_start_timestamp_seconds"] > 0
        # One line per trigger and outcome in the listener's log; the run's output in its file.
        log = server.log_tail(20_000)
        assert re.search(r"retrain trigger started: SentimentDriftDetected: run started", log)
        assert "retrain trigger cooldown: SentimentEstimatedAccuracyLow" in log
        assert "retrain run succeeded: exit 0" in log
        assert SECRET not in log
        (run_log,) = (tmp_path / "runs").glob("retrain-*.log")
        assert "stub retrain done" in run_log.read_text()
        print(
            f"\nalert -> listener -> run in {first_at:.1f} s; "
            f"whole test {time.monotonic() - started:.1f} s"
        )
    finally:
        alertmanager.stop()


# --- python -m training.retrain ---------------------------------------------------------------

POSITIVE = [
    "an absolute joy from start to finish",
    "the best purchase i made this year",
    "works perfectly and looks great",
    "i love it, highly recommended",
    "wonderful quality, fast delivery",
    "exceeded every expectation i had",
    "a delightful, moving experience",
    "brilliant and beautifully made",
    "five stars, would buy again",
    "charming, funny and clever",
    "superb value for the money",
    "my kids adore this game",
]
NEGATIVE = [
    "broke after two days of use",
    "a complete waste of money",
    "terrible customer service, never again",
    "it stopped working within a week",
    "boring, slow and far too long",
    "cheap plastic that cracked at once",
    "the worst film i have seen in years",
    "arrived damaged and nobody answered",
    "do not buy this, it is junk",
    "dull characters and a silly plot",
    "smells awful and feels flimsy",
    "disappointing in every way",
]


def build_feedback_db(path: Path, validation_text: str) -> list[Any]:
    """Predictions with labels: every text once, one text relabelled later (the later label
    wins), one SST-2 validation sentence (dropped), one unlabelled prediction. Returns the
    FeedbackRows as training/feedback.py reads them back."""
    from monitoring.prediction_store import FeedbackItem, PredictionRecord, PredictionStore
    from training.feedback import read_feedback_rows

    url = f"sqlite:///{path}"
    store = PredictionStore(url)
    store.start()
    try:
        texts = [*POSITIVE, *NEGATIVE, validation_text, "never labelled"]
        now = time.time()
        store.record(
            [
                PredictionRecord(f"p{i}", now + i, "v1", "positive", 0.7, len(t), t)
                for i, t in enumerate(texts)
            ]
        )
        items = [FeedbackItem("positive", text=t) for t in POSITIVE]
        items += [FeedbackItem("negative", text=t) for t in NEGATIVE]
        items.append(FeedbackItem("positive", text=validation_text))
        assert store.add_feedback(items).accepted == len(items)
        # Relabelled: "boring, slow..." was negative, a second prediction of it says positive,
        # labelled later: the latest label wins.
        store.record([PredictionRecord("again", now + 99, "v1", "negative", 0.6, 5, NEGATIVE[4])])
        time.sleep(0.01)
        assert store.add_feedback([FeedbackItem("positive", prediction_id="again")]).accepted == 1
    finally:
        store.close()
    rows, textless = read_feedback_rows(url)
    assert textless == 0
    return rows


@pytest.mark.slow
def test_retrain_registers_a_candidate_with_the_feedback_lineage(
    trained_registry: dict[str, str], sst2_dir: Path, tmp_path: Path
) -> None:
    from sentiment.data import read_labelled
    from training.feedback import as_labelled, dataset_digest, iso_utc, prepare_feedback, time_range
    from training.registry import Registry

    shutil.copy(trained_registry["tracking_uri"].removeprefix("sqlite:///"), tmp_path / "m.db")
    tracking_uri = f"sqlite:///{tmp_path / 'm.db'}"
    validation = read_labelled(sst2_dir / "validation.tsv")
    rows = build_feedback_db(tmp_path / "feedback.sqlite3", validation.texts[0])
    expected, excluded = prepare_feedback(rows, 0.3, validation.texts)
    assert excluded == 1 and len(expected.examples) == 24
    assert expected.train and expected.holdout

    before = Registry(tracking_uri).resolve_alias("sentiment", "candidate").version
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "SENTIMENT_DATA_DIR": str(sst2_dir),
        "SENTIMENT_FEEDBACK_DATABASE": str(tmp_path / "feedback.sqlite3"),
        "RETRAIN_HOLDOUT_FRACTION": "0.3",
        "RESULTS_DIR": str(tmp_path / "results"),
        "EVAL_MAX_SAMPLES": "120",
    }
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.retrain",
            "--config",
            trained_registry["config"],
            "--json",
            str(tmp_path / "retrain.json"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [line for line in done.stdout.splitlines() if line.startswith("retrain: ")]
    assert [s.split(":")[1].strip() for s in steps] == [
        "feedback",
        "train",
        "evaluate sst2_validation",
        "evaluate feedback_holdout",
        "promotion gate",
        "done",
    ], steps
    assert "24 labelled texts" in steps[0] and "1 in the SST-2 evaluation split dropped" in steps[0]

    registry = Registry(tracking_uri)
    version = registry.resolve_alias("sentiment", "candidate")
    assert int(version.version) > int(before)
    record = registry.run_record(version.run_id)
    span = time_range(expected.examples)
    assert span is not None
    assert record.params["feedback.texts"] == "24"
    assert record.params["feedback.train"] == str(len(expected.train))
    assert record.params["feedback.holdout"] == str(len(expected.holdout))
    assert record.params["feedback.labels_read"] == "26"
    assert record.params["feedback.first_label_at"] == iso_utc(span[0])
    assert record.params["feedback.last_label_at"] == iso_utc(span[1])
    assert record.params["data.train_sentences"] == str(600 + len(expected.train))
    assert record.tags["sentiment.run_kind"] == "retrain"
    assert record.tags["retrain.feedback_count"] == "24"
    datasets = {d["name"]: d for d in record.datasets}
    assert set(datasets) == {"sst2_train", "feedback_train", "feedback_holdout", "sst2_validation"}
    assert datasets["feedback_train"]["digest"] == dataset_digest(as_labelled(expected.train))
    assert datasets["feedback_holdout"]["digest"] == dataset_digest(as_labelled(expected.holdout))
    assert datasets["feedback_holdout"]["context"] == "evaluation"
    assert datasets["sst2_train"]["context"] == "training"
    accuracy = record.metrics["feedback_holdout_accuracy"]
    assert 0 <= accuracy <= 1
    assert record.metrics["eval.feedback_holdout.accuracy"] == accuracy
    assert "eval.sst2_validation.accuracy" in record.metrics
    assert version.tags["retrain.feedback_holdout"] == str(len(expected.holdout))
    assert version.tags["promotion.decision"] in ("promoted", "rejected")

    report = json.loads((tmp_path / "retrain.json").read_text())
    assert report["version"] == version.version
    assert report["decision"] == version.tags["promotion.decision"]
    assert report["exit_code"] == 0
    print(f"\npython -m training.retrain: {took:.0f} s; {steps[-1]}")
