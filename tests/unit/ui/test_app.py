"""The UI's event handlers and page, driven with a fake backend: no server, no browser."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sentiment.config import ConfigError
from serving.files import FileJobs, read_rows, score_rows
from ui.app import (
    UIHandlers,
    analyzed_name,
    build_ui,
    configure_queue,
    prepare_for_mount,
    prune_downloads,
)
from ui.config import UIConfig, load_ui_config


class FakeBackend:
    """Positive when the text says 'good'; records every call. `score_file` runs the service's
    own file code (serving.files: the row checks, the file-job cap, scoring a chunk at a time)
    over this fake model, with the service's default limits unless given."""

    def __init__(
        self,
        monitoring: bool = True,
        fail_after: int | None = None,
        file_limits: tuple[int, int] = (100_000, 20_000),
        file_chunk: int = 4,
        feedback: bool = True,
        explain: bool = True,
    ) -> None:
        self.monitoring = monitoring
        self.feedback = feedback
        self.explaining = explain
        self.explain_error: Exception | None = None  # raised by `explain` when set
        self.explained: list[list[str]] = []
        self.remembered: dict[str, tuple[str, str]] = {}  # id: (text, predicted label)
        self.feedback_sent: list[tuple[str, str]] = []  # (id, label)
        self.fail_after = fail_after
        self.batches: list[list[str]] = []
        self.logged: list[tuple[list[str], int, float]] = []
        self.file_rows, self.file_text_chars = file_limits
        self.file_chunk = file_chunk
        self.file_jobs = FileJobs(max_active=4)
        self.files: list[dict[str, Any]] = []

    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("model down")
        self.batches.append(list(texts))
        out = []
        for text in texts:
            positive = "good" in text
            p = 0.9 if positive else 0.2
            out.append(
                {
                    "label": "positive" if positive else "negative",
                    "confidence": p if positive else 1 - p,
                    "probabilities": {"negative": 1 - p, "positive": p},
                    "n_tokens": len(text.split()),
                }
            )
        return out

    async def score_file(
        self,
        job_id: str,
        data: bytes,
        suffix: str,
        text_column: str | None,
        on_progress: Callable[[int, int], None],
    ) -> dict[str, Any]:
        """What SentimentAPI.score_file does, over this fake model."""
        self.files.append({"job_id": job_id, "data": data, "suffix": suffix, "column": text_column})
        rows = read_rows(data, suffix, text_column, self.file_rows, self.file_text_chars)
        self.file_jobs.start(job_id, rows.rows)
        try:
            result = await score_rows(
                rows, self.predict, self.file_chunk, lambda done: on_progress(done, rows.rows)
            )
        finally:
            self.file_jobs.finish(job_id)
        return {**result, "model_version": "v3-abc", "timestamp": "2024-01-01T00:00:00Z"}

    async def model_info(self) -> dict[str, Any]:
        return {
            "name": "sentiment",
            "version": "v3-abc",
            "tag": "sentiment:v3-abc",
            "labels": ["negative", "positive"],
            "device": "cpu",
            "max_length": 64,
            "max_batch_size": 64,
            "validation_metrics": {"accuracy": 0.91},
            "mlflow": {"run_id": "r123", "alias": "champion"},
        }

    async def monitoring_summary(self) -> dict[str, Any] | None:
        if not self.monitoring:
            return None
        return {
            "total_predictions": sum(n for _, n, _ in self.logged),
            "average_confidence": 0.8,
            "positive_ratio": 0.5,
            "latency_p50": 0.012,
            "latency_p95": 0.05,
            "latency_p99": None,
            "drift_status": {"status": "no drift", "drift_detected": False, "drift_score": 0.2},
        }

    async def log_predictions(
        self, texts: list[str], raw: list[dict[str, Any]], latency_s: float
    ) -> bool:
        if not self.monitoring:
            return False
        self.logged.append((list(texts), len(raw), latency_s))
        return True

    async def remember(self, texts: list[str], raw: list[dict[str, Any]]) -> list[str]:
        ids = [f"pred-{len(self.remembered) + i}" for i in range(len(texts))]
        if self.feedback:
            for prediction_id, text, prediction in zip(ids, texts, raw, strict=True):
                self.remembered[prediction_id] = (text, prediction["label"])
        return ids

    def feedback_enabled(self) -> bool:
        return self.feedback

    def explain_enabled(self) -> bool:
        return self.explaining

    async def explain(self, texts: list[str]) -> list[dict[str, Any]]:
        """What SentimentAPI.explanations answers: the prediction, and per word "good"
        +0.4 towards positive, "bad" towards negative, any other word nothing."""
        if self.explain_error is not None:
            raise self.explain_error
        self.explained.append(list(texts))
        out = []
        for text in texts:
            positive = "good" in text
            p = 0.9 if positive else 0.2
            sign = 1.0 if positive else -1.0  # signed towards the predicted label
            words = [
                {
                    "word": w,
                    "attribution": sign * (0.4 if "good" in w else -0.2 if "bad" in w else 0),
                }
                for w in text.split()
            ]
            out.append(
                {
                    "sentiment": "positive" if positive else "negative",
                    "confidence": p if positive else 1 - p,
                    "probabilities": {"negative": 1 - p, "positive": p},
                    "words": words,
                }
            )
        return out

    async def send_feedback(self, prediction_id: str, label: str) -> dict[str, int]:
        """What SentimentAPI.accept_feedback answers for one item."""
        from serving.http import RequestError

        if label not in ("negative", "positive"):
            raise RequestError(f"item 0: label must be one of negative, positive, not {label!r}")
        self.feedback_sent.append((prediction_id, label))
        known = prediction_id in self.remembered
        return {"accepted": int(known), "unknown": int(not known)}


def config(**batch: Any) -> UIConfig:
    return UIConfig.model_validate({"batch": {"batch_size": 2, "max_rows": 10, **batch}})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- single prediction ---------------------------------------------------------------------


def test_empty_text_is_a_message_and_no_call() -> None:
    backend = FakeBackend()
    card, probs, *_ = run(UIHandlers(backend, config()).predict_one("   ", True))
    assert "Type or paste a sentence first" in card and "ui-alert-warning" in card
    assert probs["probability"].tolist() == [0.0, 0.0]
    assert backend.batches == []


def test_too_long_text_is_refused() -> None:
    cfg = UIConfig.model_validate({"single": {"max_text_chars": 10}})
    card, *_ = run(UIHandlers(FakeBackend(), cfg).predict_one("a" * 11, True))
    assert "11 characters; the limit is 10" in card


def test_prediction_card_chart_and_logging() -> None:
    backend = FakeBackend()
    card, probs, summary, *_ = run(UIHandlers(backend, config()).predict_one(" a good film ", True))
    assert backend.batches == [["a good film"]]
    assert 'data-testid="sentiment-label"' in card and "Positive" in card
    assert "90.0%" in card and "logged" in card
    assert probs.to_dict("list") == {
        "sentiment": ["negative", "positive"],
        "probability": [pytest.approx(0.1), 0.9],
    }
    assert [(t, n) for t, n, _ in backend.logged] == [(["a good film"], 1)]
    assert '<b data-testid="total-predictions">1</b> prediction logged' in summary
    assert "no drift" in summary


def test_toggle_off_does_not_log() -> None:
    backend = FakeBackend()
    card, *_ = run(UIHandlers(backend, config()).predict_one("bad", False))
    assert backend.logged == [] and "not logged" in card and "Negative" in card


def test_without_monitoring_the_page_says_so() -> None:
    card, _, summary, *_ = run(
        UIHandlers(FakeBackend(monitoring=False), config()).predict_one("x", True)
    )
    assert "unavailable" in card
    assert "Monitoring is not available" in summary


def test_model_failure_is_a_message_not_an_exception() -> None:
    backend = FakeBackend(fail_after=0)
    card, probs, *_ = run(UIHandlers(backend, config()).predict_one("good", True))
    assert "ui-alert-error" in card
    assert "The model did not answer (RuntimeError: model down)" in card
    assert probs["probability"].sum() == 0


# --- batch ---------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_inspect_upload_guesses_the_column(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", b"id,review\n1,good\n2,bad\n")
    column, status, button, *cleared = UIHandlers(FakeBackend(), config()).inspect_upload(path)
    assert column["choices"] == ["id", "review"] and column["value"] == "review"
    assert "2 rows, 2 columns" in status and "Text column: 'review'" in status
    assert button["interactive"] is True
    assert cleared[1] == {"__type__": "update", "visible": False}  # old results hidden


def test_inspect_upload_refuses_a_file_without_text(tmp_path: Path) -> None:
    path = write(tmp_path, "n.csv", b"id,score\n1,0.5\n2,0.7\n")
    column, status, button, *_ = UIHandlers(FakeBackend(), config()).inspect_upload(path)
    assert column["value"] is None and button["interactive"] is False
    assert "has no column of text (columns: id, score)" in status


def test_inspect_upload_refuses_too_many_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "big.csv", b"text\n" + b"good\n" * 21)
    handlers = UIHandlers(FakeBackend(), config(max_file_rows=20))
    _, status, button, *_ = handlers.inspect_upload(path)
    assert "more than 20 rows" in status and button["interactive"] is False


def test_inspect_upload_over_the_inline_limit_announces_a_file_job(tmp_path: Path) -> None:
    path = write(tmp_path, "big.csv", b"id,text\n" + b"1,good\n" * 11)
    column, status, button, *_ = UIHandlers(FakeBackend(), config()).inspect_upload(path)
    assert column["value"] == "text" and button["interactive"] is True
    assert "11 rows, 2 columns" in status
    assert "Over 10 rows, the file is scored as a file job" in status


def test_inspect_without_a_file_resets() -> None:
    column, status, button, *_ = UIHandlers(FakeBackend(), config()).inspect_upload(None)
    assert column["choices"] == [] and status == "" and button["interactive"] is False


def test_analyze_file_in_batches_with_progress_and_download(tmp_path: Path) -> None:
    data = b"id,text\n1,good one\n2,\n3,bad one\n4,good two\n5,meh\n"
    path = write(tmp_path, "reviews.csv", data)
    backend = FakeBackend()
    progress: list[tuple[int, int]] = []

    def track(value: tuple[int, int], **_: Any) -> None:
        progress.append(value)

    handlers = UIHandlers(backend, config())
    status, summary, results, table, download, dist, hist = run(
        handlers.analyze_file(path, "text", False, track)
    )
    assert backend.batches == [["good one", "bad one"], ["good two", "meh"]]
    assert progress == [(0, 4), (2, 4), (4, 4)]
    assert backend.logged == []
    assert "Analyzed 4 texts from 'reviews.csv'" in status
    assert "1 row with an empty text was left unscored" in summary
    assert results == {"__type__": "update", "visible": True}
    assert list(table.columns) == ["text", "sentiment", "confidence"] and len(table) == 5
    saved = Path(download["value"])
    assert saved.name == "reviews_analyzed.csv"
    assert saved.read_text() == (
        "id,text,sentiment,confidence\n"
        "1,good one,positive,0.9\n2,,,\n3,bad one,negative,0.8\n"
        "4,good two,positive,0.9\n5,meh,negative,0.8\n"
    )
    assert dist.to_dict("list") == {"sentiment": ["negative", "positive"], "rows": [2, 2]}
    assert hist["rows"].sum() == 4


def test_analyze_file_logs_each_batch_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", b"text\ngood\nbad\ngood\n")
    backend = FakeBackend()
    run(UIHandlers(backend, config()).analyze_file(path, "text", True))
    assert [(t, n) for t, n, _ in backend.logged] == [(["good", "bad"], 2), (["good"], 1)]


def test_analyze_file_refuses_a_numeric_column(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", b"text,label\ngood,1\nbad,0\n")
    backend = FakeBackend()
    status, _, results, *_ = run(UIHandlers(backend, config()).analyze_file(path, "label", False))
    assert "Column 'label' holds numbers or codes" in status
    assert results == {"__type__": "update", "visible": False}
    assert backend.batches == []


def test_analyze_without_a_file_asks_for_one() -> None:
    status, *_ = run(UIHandlers(FakeBackend(), config()).analyze_file(None, None, False))
    assert "Upload a CSV file first" in status


def test_analyze_reports_a_failure_part_way(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", b"text\n" + b"good\n" * 5)
    status, *_ = run(
        UIHandlers(FakeBackend(fail_after=1), config()).analyze_file(path, "text", False)
    )
    assert "did not answer (RuntimeError: model down) after 2 of 5 rows" in status


def test_analyzed_name() -> None:
    assert analyzed_name("my reviews.csv") == "my reviews_analyzed.csv"


def test_prune_downloads_removes_only_old_files(tmp_path: Path) -> None:
    old, new = tmp_path / "a" / "old.csv", tmp_path / "b" / "new.csv"
    for f in (old, new):
        f.parent.mkdir()
        f.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert prune_downloads(tmp_path, max_age_s=3600) == 1
    assert not old.exists() and not old.parent.exists() and new.exists()


# --- model tab -----------------------------------------------------------------------------


def test_model_panel_shows_provenance_settings_and_monitoring() -> None:
    model, monitoring = run(UIHandlers(FakeBackend(), config()).model_panel())
    for expected in ("sentiment:v3-abc", "champion", "r123", "0.9100", "UI: batch size"):
        assert expected in model
    assert "Latency p50</th><td>12 ms" in monitoring and "Latency p99</th><td>—" in monitoring
    assert "ui-badge-good" in monitoring


def test_model_panel_survives_a_dead_model_service() -> None:
    class Down(FakeBackend):
        async def model_info(self) -> dict[str, Any]:
            raise ConnectionError("refused")

    model, _ = run(UIHandlers(Down(), config()).model_panel())
    assert "did not answer (ConnectionError: refused)" in model


# --- config and page -----------------------------------------------------------------------


def test_ui_config_file_and_env_overrides() -> None:
    default = load_ui_config(env={})
    assert default.path == "/ui" and default.batch.max_rows == 5000 and default.examples
    cfg = load_ui_config(env={"SENTIMENT_UI_MAX_ROWS": "10", "SENTIMENT_UI_BATCH_SIZE": "4"})
    assert (cfg.batch.max_rows, cfg.batch.batch_size) == (10, 4)
    with pytest.raises(ConfigError, match="max_rows"):
        load_ui_config(env={"SENTIMENT_UI_MAX_ROWS": "0"})


def test_ui_path_cannot_take_the_root(tmp_path: Path) -> None:
    bad = tmp_path / "ui.yaml"
    bad.write_text("path: /\n")
    with pytest.raises(ConfigError, match="path"):
        load_ui_config(bad, env={})


def test_mounted_page_answers_200_with_three_tabs() -> None:
    import gradio as gr
    from starlette.testclient import TestClient

    blocks = prepare_for_mount(build_ui(FakeBackend(), config()))
    tabs = [b.label for b in blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Single prediction", "Batch analysis", "Model & monitoring"]
    app = gr.routes.App.create_app(blocks)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "ui-alert" in client.get("/config").json()["css"]


def test_the_event_queue_polls_at_the_configured_interval_and_is_bounded() -> None:
    blocks = configure_queue(build_ui(FakeBackend(), config()), 0.02, 64)
    assert blocks._queue.sleep_when_free == 0.02
    assert blocks._queue.progress_update_sleep_when_free == 0.1
    assert blocks._queue.max_size == 64
    defaults = load_ui_config(env={})
    assert (defaults.queue_poll_s, defaults.queue_max_size) == (0.02, 64)
    overridden = load_ui_config(
        env={"SENTIMENT_UI_QUEUE_POLL_S": "0.05", "SENTIMENT_UI_QUEUE_MAX_SIZE": "8"}
    )
    assert (overridden.queue_poll_s, overridden.queue_max_size) == (0.05, 8)
    assert load_ui_config(env={"SENTIMENT_UI_QUEUE_MAX_SIZE": "1024"}).queue_max_size == 1024
    with pytest.raises(ConfigError, match="queue_max_size"):
        load_ui_config(env={"SENTIMENT_UI_QUEUE_MAX_SIZE": "1025"})


def test_a_queue_made_later_is_set_too() -> None:
    """BentoML's startup hook makes a new, unbounded queue
    (`blocks.queue(default_concurrency_limit=...)`) before starting it: that queue must get the
    interval and the bound as well."""
    blocks = configure_queue(build_ui(FakeBackend(), config()), 0.05, 8)
    before = blocks._queue
    assert blocks.queue(default_concurrency_limit=4) is blocks
    queue = blocks._queue
    assert queue is not before
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free, queue.max_size) == (
        0.05,
        0.1,
        8,
    )
    # A bound the caller gives stays.
    assert blocks.queue(max_size=3)._queue.max_size == 3


def test_escaping_in_views() -> None:
    from ui.views import batch_summary_html, message_html

    assert "<script>" not in message_html("error", "<script>x</script>")
    assert "&lt;b&gt;x.csv" in batch_summary_html("<b>x.csv", 1, 1, 0.5, {"positive": 1})


def test_results_table_is_a_frame() -> None:
    # Gradio's Dataframe takes the preview as is: the handler must hand it a DataFrame.
    assert isinstance(UIHandlers.no_results()[2], pd.DataFrame)


# --- the service backend -------------------------------------------------------------------


class FakeService:
    async def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        return [{"label": "positive", "n": len(t)} for t in texts]

    async def model_info(self) -> dict[str, Any]:
        return {"tag": "sentiment:v9"}


def test_service_backend_calls_the_service_and_the_monitoring_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    from ui.backend import ServiceBackend

    calls: list[tuple[Any, ...]] = []
    hook = types.ModuleType("fake_hook")
    hook.summary = lambda: {"total_predictions": 3}  # type: ignore[attr-defined]
    hook.log_predictions = lambda *a, **k: calls.append((a, k))  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "fake_hook", hook)

    backend = ServiceBackend(service=FakeService, monitoring_module="fake_hook")
    assert run(backend.predict(["abc"])) == [{"label": "positive", "n": 3}]
    assert run(backend.monitoring_summary()) == {"total_predictions": 3}
    assert run(backend.log_predictions(["abc"], [{"label": "positive"}], 0.5)) is True
    assert calls == [((["abc"], [{"label": "positive"}], 0.5), {"model_tag": "sentiment:v9"})]


def test_service_backend_without_monitoring() -> None:
    from ui.backend import ServiceBackend

    backend = ServiceBackend(service=FakeService, monitoring_module="no_such_monitoring_module")
    assert run(backend.monitoring_summary()) is None
    assert run(backend.log_predictions(["a"], [{}], 0.1)) is False


def test_live_refresh_returns_header_summary_and_panel() -> None:
    header, summary, panel = run(UIHandlers(FakeBackend(), config()).live())
    assert "sentiment:v3-abc" in header and "91.0%" in header
    assert "predictions logged" in summary
    assert "Latency p95" in panel


def test_a_malformed_model_answer_is_a_message(tmp_path: Path) -> None:
    class Short(FakeBackend):
        async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
            return (await super().predict(texts))[:-1]

    path = write(tmp_path, "r.csv", b"text\ngood\nbad\n")
    status, _, results, *_ = run(UIHandlers(Short(), config()).analyze_file(path, "text", False))
    assert "results could not be prepared (ValueError: 2 rows scored but 1 predictions)" in status
    assert results == {"__type__": "update", "visible": False}


def test_monitoring_panel_lists_each_drift_test() -> None:
    from ui.views import monitoring_html, summary_html

    summary = {
        "total_predictions": 161,
        "latency_p50": 0.3975,
        "drift_status": {
            "status": "drift",
            "drift_detected": True,
            "drift_score": 1.0,
            "threshold": 0.05,
            "window_size": 161,
            "min_window": 100,
            "tests": {
                "confidence_ks": {
                    "method": "ks",
                    "statistic": 0.17902,
                    "adjusted_p_value": 0.000831,
                    "drift_detected": True,
                },
                "label_chi2": {"method": "chi2", "statistic": 0.9674, "drift_detected": False},
                "new_test": {"status": "insufficient data"},
            },
        },
        "reference": {"source": "sst2/validation", "size": 872},
    }
    html = monitoring_html(summary)
    assert "<td>Confidence distribution</td><td>Kolmogorov–Smirnov</td>" in html
    assert "<td>0.1790</td><td>0.0008</td>" in html
    assert "<td>Predicted label mix</td><td>χ² test</td><td>0.9674</td><td>—</td>" in html
    assert "<td>new test</td>" in html and "insufficient data</span>" in html
    assert html.count("ui-badge-bad") == 2  # the overall status and one test
    assert "161 predictions" in html and "sst2/validation (872 texts)" in html
    assert "Latency p50</th><td>398 ms" in html
    assert "drift · score 1.000" in summary_html(summary)


def test_drift_badge_is_muted_when_nothing_was_tested() -> None:
    from ui.views import summary_html

    html = summary_html({"drift_status": {"status": "insufficient data", "drift_detected": False}})
    assert "ui-badge-muted" in html and "insufficient data</span>" in html
    assert "score" not in html
