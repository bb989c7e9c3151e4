"""The original project's calls, made as its users make them, against a real `bentoml serve`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.servers import ServerProcess, own_bentoml_home
from sentiment.config import PROJECT_ROOT
from tests.integration.conftest import json_answer

SAMPLE = PROJECT_ROOT / "data" / "sample_reviews.csv"


def test_model_info_answers_the_original_keys(served_url: str) -> None:
    info = httpx.get(f"{served_url}/model/info", timeout=30).json()
    assert info["model_name"] == "sentiment" and info["model_version"] == info["version"]
    assert info["labels"] == ["negative", "positive"] and info["max_length"] == 64


def test_metrics_is_json_for_a_json_client_and_prometheus_text_otherwise(served_url: str) -> None:
    httpx.post(f"{served_url}/predict", json={"texts": ["lovely", "awful"]}, timeout=30)
    metrics = httpx.get(
        f"{served_url}/metrics", headers={"Accept": "application/json"}, timeout=30
    ).json()
    assert metrics["total_predictions"] >= 2
    assert 0.5 <= metrics["average_confidence"] <= 1.0
    assert 0.0 <= metrics["positive_ratio"] <= 1.0
    assert {"drift_detected", "drift_score"} <= set(metrics["drift_status"])
    text = httpx.get(f"{served_url}/metrics", timeout=30)
    assert text.headers["content-type"].startswith("text/plain")
    assert "# HELP" in text.text and "prediction_total" in text.text


def pandas_column(rows: int) -> list[str]:
    """A whole CSV column, as the original's pandas example sends it."""
    import pandas as pd

    frame = pd.read_csv(SAMPLE)
    return (frame["text"].tolist() * (rows // len(frame) + 1))[:rows]


def test_a_whole_column_of_2048_texts_is_answered_and_2049_is_refused(served_url: str) -> None:
    texts = pandas_column(2048)
    resp = httpx.post(f"{served_url}/predict", json={"texts": texts}, timeout=300)
    assert resp.status_code == 200, resp.text[:300]
    predictions = resp.json()["predictions"]
    assert len(predictions) == 2048
    # Cut into batches, answered in order: the same text gets the same answer everywhere, each
    # with an id of its own.
    answers = [(p["sentiment"], p["confidence"]) for p in predictions]
    assert answers[0] == answers[30] == answers[2040]
    assert len({p["id"] for p in predictions}) == 2048
    over = httpx.post(f"{served_url}/predict", json={"texts": [*texts, "x"]}, timeout=60)
    assert over.status_code == 413 and "2049 texts" in over.json()["error"]


def poll(url: str, task_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status: dict[str, Any] = httpx.get(
            f"{url}/predict_file/status", params={"task_id": task_id}, timeout=30
        ).json()
        if status["status"] != "in_progress":
            return status
        time.sleep(0.3)
    raise TimeoutError(task_id)


def test_a_file_is_scored_as_a_task_with_progress(served_url: str) -> None:
    submitted = httpx.post(
        f"{served_url}/predict_file/submit",
        files={"file": ("sample_reviews.csv", SAMPLE.read_bytes(), "text/csv")},
        timeout=60,
    )
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    assert poll(served_url, task_id)["status"] == "completed"
    result = httpx.get(f"{served_url}/predict_file/get", params={"task_id": task_id}, timeout=30)
    body = result.json()
    assert (body["rows"], body["scored"], body["errors"]) == (30, 30, [])
    assert [p["row"] for p in body["predictions"]] == list(range(1, 31))
    progress = httpx.get(
        f"{served_url}/predict_file/progress", params={"task_id": task_id}, timeout=30
    ).json()
    assert progress["finished"] and progress["fraction"] == 1.0


def test_bad_rows_are_listed_and_a_bad_file_fails_with_its_reason(served_url: str) -> None:
    lines = b'{"text": "a warm film"}\n{"text": ""}\nnot json\n'
    direct = httpx.post(
        f"{served_url}/predict_file",
        files={"file": ("reviews.jsonl", lines, "application/x-ndjson")},
        timeout=60,
    )
    assert direct.status_code == 200
    assert direct.json()["errors"] == [
        {"row": 2, "error": "'text' is empty"},
        {"row": 3, "error": "not a JSON object"},
    ]
    task_id = httpx.post(
        f"{served_url}/predict_file/submit",
        files={"file": ("photo.png", b"\x89PNG\x00\x00binary", "image/png")},
        timeout=60,
    ).json()["task_id"]
    assert poll(served_url, task_id)["status"] == "failed"
    failed = httpx.get(f"{served_url}/predict_file/get", params={"task_id": task_id}, timeout=30)
    assert failed.status_code == 400
    assert "the file is binary" in failed.text and "/tmp" not in failed.text


def test_an_upload_over_the_limit_is_refused_before_it_is_read(served_url: str) -> None:
    """Only the headers are sent: the 413 comes back without a byte of the body."""
    host, port = served_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /predict_file/submit HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 20000001\r\n\r\n"
        )
        started = time.perf_counter()
        answer = json_answer(conn)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"file upload over 20000000 bytes" in answer
    assert time.perf_counter() - started < 2


def test_pytest_cov_is_accepted() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--cov",
            "--co",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/ui/test_sample_data.py",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.parametrize("path", ["/predict_file/progress"])
def test_unknown_task_progress_is_404(served_url: str, path: str) -> None:
    resp = httpx.get(f"{served_url}{path}", params={"task_id": "nope"}, timeout=30)
    assert resp.status_code == 404 and json.loads(resp.text)["error"]


def test_the_original_environment_variables_reach_the_served_model(
    bento_env: dict[str, str], tmp_path: Path
) -> None:
    """`export METRICS_ENABLED=false MAX_LENGTH=32 BATCH_SIZE=8`, then serve, as its users do."""
    env = {
        **own_bentoml_home(bento_env, tmp_path),
        "METRICS_ENABLED": "false",
        "MAX_LENGTH": "32",
        "BATCH_SIZE": "8",
    }
    server = ServerProcess.bentoml(env, tmp_path / "bentoml.log")
    try:
        server.wait_ready()
        info = httpx.get(f"{server.url}/model/info", timeout=30).json()
        assert (info["max_length"], info["max_batch_size"]) == (32, 8)
        resp = httpx.post(f"{server.url}/predict", json={"texts": ["fine"] * 20}, timeout=60)
        assert resp.status_code == 200 and len(resp.json()["predictions"]) == 20
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        for own in ("prediction_total", "sentiment_batch_texts", "sentiment_process_cpu_cores"):
            assert own not in metrics, own
        assert "bentoml_service_request_total" in metrics  # BentoML's own stay
        summary = httpx.get(f"{server.url}/monitoring", timeout=30).json()
        assert summary["total_predictions"] == 0
    finally:
        server.stop()
