"""Files over the batch tab's inline limit: scored by the service's file code (`score_file`,
the `/predict_file` task's), with progress, a download that lists refused rows, and the
service's refusals as user-facing errors. The fake backend runs serving.files itself."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import pytest
from starlette.testclient import TestClient

from sentiment.config import ApiSection
from ui import guard, tables, uploads
from ui.app import (
    FILE_JOB_PROGRESS,
    UIHandlers,
    batch_hint,
    build_ui,
    download_dir,
    prepare_for_mount,
)
from ui.config import BatchSection, FileLimits, file_limits, load_file_limits, load_ui_config

from .test_app import FakeBackend, config, run, write

LONG = "x" * 60  # over the fake service's 50-character limit below
ROWS = [
    ("1", "good one"),
    ("2", ""),
    ("3", "bad one"),
    ("4", 'a "quoted", good\nsecond line'),
    ("5", LONG),
    *[(str(i), "good" if i % 2 else "bad") for i in range(6, 13)],
]


def big_csv(tmp_path: Path, name: str = "big.csv") -> str:
    frame = pd.DataFrame(ROWS, columns=["id", "review"])
    return write(tmp_path, name, frame.to_csv(index=False).encode())


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, int], str]] = []

    def __call__(self, value: tuple[int, int], desc: str = "", **_: Any) -> None:
        self.calls.append((value, desc))


# --- limits ------------------------------------------------------------------------------------


def test_the_service_limits_hold_unless_the_ui_sets_lower_ones() -> None:
    api = ApiSection(max_file_bytes=20_000_000, max_file_rows=100_000)
    assert file_limits(BatchSection(), api) == FileLimits(5000, 100_000, 20_000_000)
    lower = BatchSection(max_file_mb=5, max_file_rows=30_000)
    assert file_limits(lower, api) == FileLimits(5000, 30_000, 5_000_000)
    higher = BatchSection(max_file_mb=50, max_file_rows=500_000)
    assert file_limits(higher, api) == FileLimits(5000, 100_000, 20_000_000)
    # A service limit under the inline limit: files up to the inline limit are still analyzed.
    assert file_limits(BatchSection(), ApiSection(max_file_rows=100)).max_rows == 5000


def test_limits_from_both_config_files_and_their_environment() -> None:
    assert load_file_limits(env={}) == FileLimits(5000, 100_000, 20_000_000)
    env = {
        "SENTIMENT_MAX_FILE_BYTES": "8000000",
        "SENTIMENT_MAX_FILE_ROWS": "50000",
        "SENTIMENT_UI_MAX_FILE_ROWS": "40000",
        "SENTIMENT_UI_MAX_ROWS": "100",
    }
    assert load_file_limits(env=env) == FileLimits(100, 40_000, 8_000_000)
    ui = load_ui_config(env={"SENTIMENT_UI_MAX_FILE_MB": "2.5"})
    assert load_file_limits(ui, env={}).max_bytes == 2_500_000


def test_the_page_says_which_files_become_file_jobs() -> None:
    hint = batch_hint(FileLimits(5000, 100_000, 20_000_000))
    assert "up to 100,000 rows and 20 MB" in hint
    assert "Up to 5,000 rows, the download keeps every column" in hint
    assert "Over that, the file is scored as a file job" in hint
    only_inline = batch_hint(FileLimits(5000, 5000, 10_000_000))
    assert "file job" not in only_inline and "The download keeps every column" in only_inline


def test_the_model_panel_lists_the_limits() -> None:
    settings = dict(UIHandlers(FakeBackend(), config()).settings())
    assert settings["UI: rows analyzed in the page"] == "10"
    assert settings["UI: row limit per upload (file job above)"] == "100,000"
    assert settings["UI: file size limit"] == "20 MB"


# --- what the service is sent ------------------------------------------------------------------


def test_file_job_lines_keep_one_row_per_line_whatever_the_text() -> None:
    cells = ["plain", "", "a\nb\rc", "sep\u2028\u2029\x85\x0b\x0c\x1c", 'quote " , ; |', "é😊"]
    frame = pd.DataFrame({"my text": cells, "other": ["x"] * len(cells)})
    data = tables.file_job_lines(frame, "my text")
    lines = data.decode("ascii").splitlines()
    assert [json.loads(line) for line in lines] == [{"my text": c} for c in cells]


def test_file_job_frame_places_predictions_and_refusals_by_row() -> None:
    frame = pd.DataFrame({"t": ["good", "", "bad"]})
    result = {
        "rows": 3,
        "predictions": [
            {"row": 3, "sentiment": "negative", "confidence": 0.812345},
            {"row": 1, "sentiment": "positive", "confidence": 0.9},
        ],
        "errors": [{"row": 2, "error": "'t' is empty"}],
    }
    out = tables.file_job_frame(frame, "t", result)
    assert tables.to_csv_bytes(out).decode() == (
        "row,text,sentiment,confidence,error\n"
        "1,good,positive,0.9,\n2,,,,'t' is empty\n3,bad,negative,0.8123,\n"
    )
    with pytest.raises(ValueError, match="read 4 rows of 3"):
        tables.file_job_frame(frame, "t", {**result, "rows": 4})
    with pytest.raises(ValueError, match="row 4 is not a row"):
        bad = {**result, "errors": [{"row": 4, "error": "?"}]}
        tables.file_job_frame(frame, "t", bad)


# --- the handler -------------------------------------------------------------------------------


def test_a_file_over_the_inline_limit_is_scored_as_a_file_job(tmp_path: Path) -> None:
    backend = FakeBackend(file_limits=(100_000, 50))
    progress = Progress()
    status, summary, results, table, download, dist, hist = run(
        UIHandlers(backend, config()).analyze_file(big_csv(tmp_path), "review", False, progress)
    )
    # Not a batch of the inline path: one call of the service's file code, as JSON lines.
    [sent] = backend.files
    assert sent["job_id"].startswith("ui-") and sent["suffix"] == ".jsonl"
    assert sent["column"] == "review"
    assert [json.loads(x)["review"] for x in sent["data"].splitlines()] == [t for _, t in ROWS]
    # The fake service scored 4 texts at a time; done counts the 2 refused rows from the start.
    assert progress.calls == [
        ((0, 12), FILE_JOB_PROGRESS),
        ((6, 12), FILE_JOB_PROGRESS),
        ((10, 12), FILE_JOB_PROGRESS),
        ((12, 12), FILE_JOB_PROGRESS),
    ]
    assert backend.file_jobs.active == set()

    assert "Scored 10 of 12 rows of 'big.csv' as a file job" in status
    assert "not logged" not in status
    assert "2 rows were refused (the download's error column says why)" in summary
    assert results == {"__type__": "update", "visible": True}
    assert list(table.columns) == ["text", "sentiment", "confidence"] and len(table) == 12
    saved = Path(download["value"])
    assert saved.name == "big_analyzed.csv"
    got = pd.read_csv(io.BytesIO(saved.read_bytes()), dtype=str, keep_default_na=False)
    assert list(got.columns) == ["row", "text", "sentiment", "confidence", "error"]
    assert got["row"].tolist() == [str(i) for i in range(1, 13)]
    assert got["text"].tolist() == [t for _, t in ROWS]
    assert got.iloc[0].tolist() == ["1", "good one", "positive", "0.9", ""]
    assert got.iloc[1].tolist() == ["2", "", "", "", "'review' is empty"]
    assert got.iloc[3, 2] == "positive"  # the quoted two-line cell, scored whole
    assert got.iloc[4].tolist() == [
        "5",
        LONG,
        "",
        "",
        "'review' has 60 characters, over the limit of 50",
    ]
    assert (got["error"] == "").sum() == 10
    assert dist.to_dict("list") == {"sentiment": ["negative", "positive"], "rows": [5, 5]}
    assert hist["rows"].sum() == 10


def test_a_file_job_says_it_is_not_logged_when_logging_was_asked(tmp_path: Path) -> None:
    backend = FakeBackend()
    status, *_ = run(UIHandlers(backend, config()).analyze_file(big_csv(tmp_path), "review", True))
    assert "not logged to monitoring" in status and backend.logged == []


def test_a_file_at_the_inline_limit_stays_in_the_page(tmp_path: Path) -> None:
    backend = FakeBackend()
    path = big_csv(tmp_path)
    run(UIHandlers(backend, config(max_rows=12)).analyze_file(path, "review", False))
    assert backend.files == [] and len(backend.batches) == 6  # 11 texts (1 empty), 2 per call


def test_the_service_refusing_the_file_is_a_user_facing_error(tmp_path: Path) -> None:
    backend = FakeBackend(file_limits=(11, 20_000))  # the service's row limit is lower
    handlers = UIHandlers(backend, config())
    with pytest.raises(gr.Error) as refused:
        run(handlers.analyze_file(big_csv(tmp_path), "review", False))
    assert refused.value.message == (
        "'big.csv' could not be scored: the file has more than 11 rows, the limit."
    )
    assert backend.batches == []


def test_too_many_file_jobs_is_a_user_facing_error(tmp_path: Path) -> None:
    backend = FakeBackend()
    for n in range(4):
        backend.file_jobs.start(f"api-{n}", 10)
    with pytest.raises(gr.Error, match="4 files are being scored; retry later"):
        run(UIHandlers(backend, config()).analyze_file(big_csv(tmp_path), "review", False))


def test_a_model_failure_part_way_is_a_message(tmp_path: Path) -> None:
    backend = FakeBackend(fail_after=1)
    status, _, results, *_ = run(
        UIHandlers(backend, config()).analyze_file(big_csv(tmp_path), "review", False)
    )
    # 1 empty row refused, then 4 scored before the model failed.
    assert "did not answer (RuntimeError: model down) after 5 of 12 rows" in status
    assert results == {"__type__": "update", "visible": False}
    assert backend.file_jobs.active == set()  # the service's job was closed


def test_a_malformed_service_answer_is_a_message(tmp_path: Path) -> None:
    class Short(FakeBackend):
        async def score_file(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return {**await super().score_file(*args, **kwargs), "rows": 3}

    status, *_ = run(UIHandlers(Short(), config()).analyze_file(big_csv(tmp_path), "review", False))
    assert "results could not be prepared (ValueError: the service read 3 rows of 12)" in status


def test_a_file_job_still_checks_the_column_first(tmp_path: Path) -> None:
    backend = FakeBackend()
    status, *_ = run(UIHandlers(backend, config()).analyze_file(big_csv(tmp_path), "id", False))
    assert "Column 'id' holds numbers or codes" in status and backend.files == []


def test_a_large_file_not_uploaded_through_the_page_is_not_sent(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    root.mkdir()
    handlers = UIHandlers(FakeBackend(), config(), upload_roots=[root])
    status, *_ = run(handlers.analyze_file(big_csv(tmp_path), "review", False))
    assert "not uploaded through this page" in status
    assert handlers.backend.files == []  # type: ignore[attr-defined]


def test_the_service_backend_hands_the_file_to_the_service() -> None:
    from ui.backend import ServiceBackend

    calls: list[tuple[Any, ...]] = []

    class Service:
        async def score_file(self, *args: Any) -> dict[str, Any]:
            calls.append(args)
            args[-1](1, 1)
            return {"rows": 1}

    seen: list[tuple[int, int]] = []
    backend = ServiceBackend(service=Service)
    answer = run(backend.score_file("ui-1", b"{}", ".jsonl", "t", lambda d, r: seen.append((d, r))))
    assert answer == {"rows": 1} and seen == [(1, 1)]
    assert calls[0][:4] == ("ui-1", b"{}", ".jsonl", "t")


# --- in-process: the page's own event, through Gradio's queue ----------------------------------


def run_event(
    client: TestClient, session: str, fn_index: int, data: list[Any]
) -> list[dict[str, Any]]:
    """Every message of one event, sent through the queue as the page sends it, until it
    completes. Events of one page share its `session` (the column choice lives there)."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "trigger_id": None}
    joined = client.post("/gradio_api/queue/join", json=body)
    assert joined.status_code == 200, joined.text
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as sse:
        for line in sse.iter_lines():
            assert time.monotonic() < deadline, "the event did not complete"
            if line.startswith("data:"):
                messages.append(json.loads(line[5:]))
                if messages[-1].get("msg") == "process_completed":
                    return messages
    raise AssertionError(f"the stream ended first: {messages}")


def test_the_page_scores_an_uploaded_large_file_with_progress(tmp_path: Path) -> None:
    class Slow(FakeBackend):
        async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
            await asyncio.sleep(0.2)  # so that Gradio's progress loop sees each step
            return await super().predict(texts)

    backend = Slow()
    blocks = prepare_for_mount(build_ui(backend, config(), upload_roots=uploads.upload_roots()))
    fn = {d["api_name"]: d["id"] for d in blocks.config["dependencies"] if d.get("api_name")}
    app = gr.routes.App.create_app(blocks)
    limits = UIHandlers(backend, config()).limits
    # As the service mounts it: upload limit, error and file settings, the guard in front.
    guard.harden(app, limits.max_bytes, guard.json_body_limit(5000), [download_dir()])
    data = Path(big_csv(tmp_path)).read_bytes()
    with TestClient(app) as client:
        # What gradio's mount_gradio_app does on startup: start the event queue.
        assert client.get("/gradio_api/startup-events").status_code == 200
        stored = client.post("/gradio_api/upload", files={"files": ("big.csv", data, "text/csv")})
        assert stored.status_code == 200
        file = {
            "path": stored.json()[0],
            "orig_name": "big.csv",
            "meta": {"_type": "gradio.FileData"},
        }
        # As the page does: the upload event fills in the column choice, then Analyze.
        page = uuid.uuid4().hex
        inspected = run_event(client, page, fn["inspect_upload"], [file])[-1]
        assert inspected["success"] is True, inspected
        assert "scored as a file job" in json.dumps(inspected["output"]["data"])

        messages = run_event(client, page, fn["analyze_file"], [file, "review", False])
        done = messages[-1]
        assert done["success"] is True, done
        steps = [
            unit["index"]
            for m in messages
            if m.get("msg") == "progress"
            for unit in m["progress_data"]
            if unit.get("desc") == FILE_JOB_PROGRESS
        ]
        assert steps and steps == sorted(steps) and set(steps) <= {0, 5, 9, 12}, steps
        status = done["output"]["data"][0]
        assert "Scored 11 of 12 rows of 'big.csv' as a file job" in status
        download = done["output"]["data"][4]["value"]
        got = client.get(download["url"])
        assert got.status_code == 200 and got.text.startswith("row,text,sentiment,confidence")
        assert "'review' is empty" in got.text

        # The service refusing the file: the page gets its one-line message as an error.
        backend.file_rows = 11
        refused = run_event(client, page, fn["analyze_file"], [file, "review", False])[-1]
        assert refused["success"] is False
        assert refused["output"]["error"] == (
            "'big.csv' could not be scored: the file has more than 11 rows, the limit."
        )
