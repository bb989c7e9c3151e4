"""The Gradio Blocks app: single prediction, batch CSV analysis, model and monitoring.

`build_ui(backend, cfg)` makes the page; `UIHandlers` holds what its events do, so unit tests
drive the same code with a fake backend and no browser. A CSV file of up to `batch.max_rows`
rows is analyzed in the page, a batch of texts per model call; a larger one (within
`ui.config.file_limits`) is scored by the service's `score_file`, the `/predict_file` task's
code, with its progress shown the same way. Where the service explains predictions, an
Explain button shows which words made the model say what it said (the single tab's text, or a
row of the batch tab's results table). `prepare_for_mount` does what
`launch()` would have done for theme and CSS: BentoML mounts the Blocks without launching it,
and a Blocks without a theme answers 500 on GET /ui/.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from sentiment.config import ApiSection
from sentiment.labels import LABEL_NAMES
from ui import charts, guard, tables, uploads, views
from ui.backend import ServiceBackend, UIBackend
from ui.config import FileLimits, UIConfig, file_limits, load_file_limits, load_ui_config
from ui.style import CSS

logger = logging.getLogger("sentiment.ui")

Progress = Callable[..., Any]
DOWNLOAD_MAX_AGE_S = 3600
BATCH_PLACEHOLDER = views.placeholder_html(
    "Upload a CSV file and press Analyze file: a summary, charts and the results table appear here."
)
FAILED_CALL = "The model did not answer ({reason}){where}. Try again in a moment."
# The suffix of what the service's file code is sent: JSON lines (see tables.file_job_lines).
FILE_JOB_SUFFIX = ".jsonl"
FILE_JOB_PROGRESS = "Scoring rows (file job)"
# Longer than any id the service makes: a state holding more is not one of its ids.
MAX_PREDICTION_ID_CHARS = 200
EXPLAIN_OFF = "Explanations are off on this server."
EXPLAIN_BUSY = "The explainer is busy with other texts: try again in a moment."
EXPLAIN_FIRST_ROW = "Analyze a file first: then any row of its results table can be explained."


def _no_progress(*args: Any, **kwargs: Any) -> None:
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def no_feedback() -> tuple[Any, ...]:
    """The right / wrong control where no prediction can be answered: no shown prediction,
    the buttons' row hidden, no note."""
    return None, gr.update(visible=False), ""


def other_label(label: str) -> str | None:
    """The label a "wrong" answer records: the one other class, None unless there is exactly
    one."""
    others = [name for name in LABEL_NAMES if name != label]
    return others[0] if label in LABEL_NAMES and len(others) == 1 else None


def _opaque_id(value: Any) -> bool:
    """A prediction id is an opaque string to the UI: only its type and size are checked."""
    return isinstance(value, str) and 0 < len(value) <= MAX_PREDICTION_ID_CHARS


def download_dir() -> Path:
    """Where analyzed CSV files wait to be downloaded; older ones are removed as new ones come."""
    path = Path(tempfile.gettempdir()) / "sentiment-ui-downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def prune_downloads(folder: Path, max_age_s: float, now: float | None = None) -> int:
    now = time.time() if now is None else now
    removed = 0
    for file in folder.glob("*/*.csv"):
        try:
            if now - file.stat().st_mtime <= max_age_s:
                continue
            file.unlink()
            file.parent.rmdir()
        except OSError:  # another request pruned it first, or the folder is not empty
            continue
        removed += 1
    return removed


def analyzed_name(upload_name: str) -> str:
    return f"{Path(upload_name).stem or 'file'}_analyzed.csv"


class UIHandlers:
    """What the page's events do. Each returns values for its outputs and never raises, but
    for one case: the service refusing a file sent to its file code is a `gr.Error`."""

    def __init__(
        self,
        backend: UIBackend,
        cfg: UIConfig,
        upload_roots: Sequence[Path] | None = None,
        limits: FileLimits | None = None,
    ) -> None:
        """`upload_roots`: the only folders batch files are read from (Gradio's upload folder in
        the service, see `service_ui`); None reads any path, for tests with hand-made files.
        `limits`: the batch tab's file limits; None takes the serving config's defaults."""
        self.backend = backend
        self.cfg = cfg
        self.upload_roots = None if upload_roots is None else tuple(upload_roots)
        self.limits = limits or file_limits(cfg.batch)

    # --- monitoring --------------------------------------------------------------------------

    async def _summary(self) -> dict[str, Any] | None:
        try:
            return await self.backend.monitoring_summary()
        except Exception:
            logger.exception("monitoring summary failed")
            return None

    async def _log(self, texts: list[str], raw: list[dict[str, Any]], latency_s: float) -> bool:
        try:
            return await self.backend.log_predictions(texts, raw, latency_s)
        except Exception:
            logger.exception("logging predictions to monitoring failed")
            return False

    async def running_summary(self) -> str:
        return views.summary_html(await self._summary())

    # --- single prediction -------------------------------------------------------------------

    def _text_problem(self, text: str) -> str | None:
        """Why a (stripped) text of the single tab cannot be sent, or None."""
        limit = self.cfg.single.max_text_chars
        if not text:
            return "Type or paste a sentence first, or pick one of the examples."
        if len(text) > limit:
            return f"The text has {len(text):,} characters; the limit is {limit:,}. Shorten it."
        return None

    async def predict_one(self, text: str | None, log: bool) -> tuple[Any, ...]:
        """Result card, probability bars, running summary, then the right / wrong control:
        the shown prediction (the feedback state), the buttons' row and the feedback note."""
        empty = charts.probability_frame({"probabilities": {"negative": 0.0, "positive": 0.0}})
        text = (text or "").strip()
        problem = self._text_problem(text)
        if problem is not None:
            message = views.message_html("warning", problem)
            return message, empty, await self.running_summary(), *no_feedback()
        started = time.perf_counter()
        try:
            raw = await self.backend.predict([text])
        except Exception as exc:
            logger.exception("single prediction failed")
            message = views.message_html("error", FAILED_CALL.format(reason=_reason(exc), where=""))
            return message, empty, await self.running_summary(), *no_feedback()
        latency = time.perf_counter() - started
        # True: logged; False: the toggle is off; None: asked for but monitoring is unavailable.
        logged: bool | None = False
        if log:
            logged = True if await self._log([text], raw, latency) else None
        shown = await self._remember(text, raw[0])
        card = views.prediction_html(raw[0], latency, logged)
        feedback = no_feedback() if shown is None else (shown, gr.update(visible=True), "")
        return card, charts.probability_frame(raw[0]), await self.running_summary(), *feedback

    # --- explanations ------------------------------------------------------------------------

    def _explain_enabled(self) -> bool:
        try:
            return bool(self.backend.explain_enabled())
        except Exception as exc:  # asked on every refresh: one line, not a traceback each time
            logger.warning("asking whether explanations are on failed: %s", _reason(exc))
            return False

    def explain_controls(self) -> tuple[Any, Any]:
        """The single tab's Explain button and the batch tab's explain-row controls: shown
        only where the service explains predictions."""
        enabled = self._explain_enabled()
        return gr.update(visible=enabled), gr.update(visible=enabled)

    async def _explain(self, text: str, title: str) -> tuple[str, bool]:
        """The explanation of one text (or a one-line message), and whether the service
        explains at all (False: it answered that explanations are off)."""
        try:
            explained = await self.backend.explain([text])
        except ValueError as exc:  # the service's one-line refusal (a RequestError)
            status = getattr(exc, "status", 400)
            reason = (str(exc).strip().splitlines() or ["refused"])[0][:300].rstrip(".")
            logger.info("explanation refused (%s): %s", status, reason)
            if status == 404:
                return views.message_html("info", EXPLAIN_OFF), False
            if status == 429:
                return views.message_html("warning", EXPLAIN_BUSY), True
            return views.message_html("error", f"The explanation was refused: {reason}."), True
        except Exception as exc:
            logger.exception("explanation failed")
            message = f"The explanation failed ({_reason(exc)}). Try again in a moment."
            return views.message_html("error", message), True
        try:
            if not isinstance(explained, list) or len(explained) != 1:
                raise ValueError("the service did not answer one explanation for one text")
            return views.explanation_html(explained[0], title), True
        except Exception as exc:  # a malformed answer: still a message, not a 500
            logger.exception("showing an explanation failed")
            message = f"The explanation could not be shown ({_reason(exc)})."
            return views.message_html("error", message), True

    async def explain_one(self, text: str | None) -> tuple[str, Any]:
        """The single tab's text explained (or a one-line message), and the Explain button:
        hidden once the service says explanations are off."""
        text = (text or "").strip()
        problem = self._text_problem(text)
        if problem is not None:
            return views.message_html("warning", problem), gr.update()
        shown, available = await self._explain(text, "Explained prediction")
        return shown, gr.update(visible=available)

    @staticmethod
    def kept_texts(table: Any) -> list[str | None]:
        """The texts of the batch results table's rows, in its order, for "Explain row"
        (None: a row without text). The table's first column is the text (see `_results`
        and `_file_job_results`), and it holds at most `batch.preview_rows` rows: a bounded
        state."""
        if not isinstance(table, pd.DataFrame) or table.empty or len(table.columns) == 0:
            return []
        return [v if isinstance(v, str) else None for v in table.iloc[:, 0].tolist()]

    async def explain_row(self, rows: Any, number: Any) -> tuple[str, Any]:
        """One row of the batch results table explained (or a one-line message), and the
        explain-row controls: hidden once the service says explanations are off.
        `rows`: `kept_texts` of the shown table; `number`: the row, 1 = the table's first."""
        keep = gr.update()
        texts = rows if isinstance(rows, list) else []
        if not texts:
            return views.message_html("warning", EXPLAIN_FIRST_ROW), keep
        choose = f"choose a row from 1 to {len(texts):,} (the results table's rows)."
        whole = isinstance(number, int | float) and not isinstance(number, bool)
        if not whole or not math.isfinite(number) or number != int(number):
            return views.message_html("warning", f"Enter a row number: {choose}"), keep
        row = int(number)
        if not 1 <= row <= len(texts):
            shown = f"Row {row:,} is not in the results table: {choose}"
            return views.message_html("warning", shown), keep
        text = (texts[row - 1] or "").strip()
        if not text:
            return views.message_html("warning", f"Row {row:,} has no text to explain."), keep
        limit = self.cfg.single.max_text_chars
        if len(text) > limit:
            problem = (
                f"Row {row:,} has {len(text):,} characters; explanations take up to {limit:,}."
            )
            return views.message_html("warning", problem), keep
        shown, available = await self._explain(text, f"Row {row:,}")
        return shown, gr.update(visible=available)

    # --- feedback on the shown prediction ----------------------------------------------------

    def _feedback_enabled(self) -> bool:
        try:
            return bool(self.backend.feedback_enabled())
        except Exception:
            logger.exception("asking whether the feedback store is on failed")
            return False

    async def _remember(self, text: str, prediction: dict[str, Any]) -> dict[str, str] | None:
        """The shown prediction as the feedback control keeps it ({"id", "label"}), or None
        where there is nothing to answer: the feedback store is off, or the id is missing."""
        label = prediction.get("label")
        if label not in LABEL_NAMES or not self._feedback_enabled():
            return None
        try:
            ids = await self.backend.remember([text], [prediction])
        except Exception:
            logger.exception("remembering a prediction for feedback failed")
            return None
        if len(ids) != 1 or not _opaque_id(ids[0]):
            logger.error("the service gave %d prediction ids for 1 prediction", len(ids))
            return None
        return {"id": ids[0], "label": str(label)}

    async def feedback_right(self, shown: Any) -> tuple[Any, ...]:
        """The shown prediction was right: its label is sent as the true one."""
        return await self._send_feedback(shown, right=True)

    async def feedback_wrong(self, shown: Any) -> tuple[Any, ...]:
        """The shown prediction was wrong: the other label is sent as the true one."""
        return await self._send_feedback(shown, right=False)

    async def _send_feedback(self, shown: Any, right: bool) -> tuple[Any, ...]:
        """The feedback state, the buttons' row, the Right and Wrong buttons (enabled again
        for the next prediction), and a one-line note."""
        enabled = gr.update(interactive=True)
        done = (None, gr.update(visible=False), enabled, enabled)
        if (
            not isinstance(shown, dict)
            or not _opaque_id(shown.get("id"))
            or shown.get("label") not in LABEL_NAMES
        ):
            note = "Analyze a text first: the answer is about the prediction shown."
            return (*done, views.message_html("warning", note))
        prediction_id, predicted = str(shown["id"]), str(shown["label"])
        label = predicted if right else other_label(predicted)
        if label is None:
            note = f"There is no single other label than {predicted} to record."
            return (*done, views.message_html("warning", note))
        # Where the answer may go through later, the prediction stays shown and unanswered:
        # the buttons stay for another try.
        again = (shown, gr.update(visible=True), enabled, enabled)
        try:
            answer = await self.backend.send_feedback(prediction_id, label)
        except ValueError as exc:  # the service's one-line refusal (a RequestError)
            reason = (str(exc).strip().splitlines() or ["refused"])[0][:300].rstrip(".")
            logger.info("feedback on %s refused: %s", prediction_id, reason)
            note = views.message_html("error", f"The answer was not recorded: {reason}.")
            # A status of 5xx (the store is away) is worth another try; a bad item is not.
            transient = getattr(exc, "status", 400) >= 500
            return (*(again if transient else done), note)
        except Exception as exc:
            logger.exception("sending feedback on %s failed", prediction_id)
            note = f"The answer could not be sent ({_reason(exc)}). Try again in a moment."
            return (*again, views.message_html("error", note))
        if isinstance(answer, dict) and int(answer.get("accepted") or 0) >= 1:
            return (*done, views.message_html("success", f"Thanks — recorded as {label}."))
        note = (
            "The service no longer holds this prediction, so the answer was not recorded: "
            "analyze the text again to answer."
        )
        return (*done, views.message_html("warning", note))

    # --- batch -------------------------------------------------------------------------------

    def _read(self, path: str) -> tables.CsvUpload:
        if self.upload_roots is not None and not uploads.is_confined(path, self.upload_roots):
            logger.warning("batch tab refused a file outside the upload folder: %r", path)
            raise tables.InputProblem(uploads.FOREIGN_FILE)
        return tables.read_upload(path, self.limits.max_rows, self.limits.max_bytes)

    def _prepare(
        self, path: str, column: str | None
    ) -> tuple[tables.CsvUpload, list[str], list[int]]:
        upload = self._read(path)
        return (upload, *tables.texts_to_score(upload.frame, column))

    def _inline(self, upload: tables.CsvUpload) -> bool:
        """Analyzed in the page (True), or scored by the service's file code."""
        return len(upload.frame) <= self.limits.inline_rows

    @staticmethod
    def no_results() -> tuple[Any, ...]:
        """Batch summary, results column, table, download, distribution, histogram: cleared."""
        return (
            BATCH_PLACEHOLDER,
            gr.update(visible=False),
            pd.DataFrame(),
            gr.update(value=None, visible=False),
            charts.distribution_frame([]),
            charts.confidence_histogram([], []),
        )

    def inspect_upload(self, path: str | None) -> tuple[Any, ...]:
        """Column choice (guessed), a status line, the Analyze button, and cleared results."""
        return self._inspect(path) + self.no_results()

    def _inspect(self, path: str | None) -> tuple[dict[str, Any], str, dict[str, Any]]:
        if not path:
            return gr.update(choices=[], value=None), "", gr.update(interactive=False)
        try:
            upload = self._read(path)
        except tables.InputProblem as exc:
            no_choice = gr.update(choices=[], value=None)
            return no_choice, views.message_html("error", str(exc)), gr.update(interactive=False)
        columns = list(upload.frame.columns)
        guess = tables.guess_text_column(upload.frame)
        if guess is None:
            problem = (
                f"'{upload.name}' has no column of text (columns: {', '.join(columns)}): "
                "the file needs one column with the sentences to analyze."
            )
            return (
                gr.update(choices=columns, value=None),
                views.message_html("error", problem),
                gr.update(interactive=False),
            )
        rows = len(upload.frame)
        note = (
            f"'{upload.name}': {rows:,} row{'s' if rows != 1 else ''}, "
            f"{len(columns)} column{'s' if len(columns) != 1 else ''}. "
            f"Text column: '{guess}' (change it above if that is wrong)."
        )
        if not self._inline(upload):
            note += (
                f" Over {self.limits.inline_rows:,} rows, the file is scored as a file job: "
                "the download lists each row's text, sentiment and confidence, or why it was "
                "refused."
            )
        return (
            gr.update(choices=columns, value=guess),
            views.message_html("info", note),
            gr.update(interactive=True),
        )

    async def analyze_file(
        self, path: str | None, column: str | None, log: bool, progress: Progress = _no_progress
    ) -> tuple[Any, ...]:
        """Status, summary, results column, table, download, distribution, histogram."""

        def refused(kind: views.Kind, message: str) -> tuple[Any, ...]:
            return (views.message_html(kind, message), *self.no_results())

        if not path:
            return refused("warning", "Upload a CSV file first.")
        try:
            # Off the event loop, which the API shares: 100,000 rows take about a second.
            upload, texts, positions = await asyncio.to_thread(self._prepare, path, column)
        except tables.InputProblem as exc:
            return refused("error", str(exc))
        if column and not self._inline(upload):
            return await self._score_as_file(upload, column, log, progress)
        limit = self.cfg.single.max_text_chars
        # The tokenizer keeps only the first max_length tokens; sending megabytes is pointless.
        texts = [t[: limit * 4] for t in texts]
        raw: list[dict[str, Any]] = []
        started = time.perf_counter()
        progress((0, len(texts)), desc="Analyzing rows", unit="rows")
        try:
            for batch in tables.batched(texts, self.cfg.batch.batch_size):
                batch_started = time.perf_counter()
                predictions = await self.backend.predict(batch)
                if log:
                    await self._log(batch, predictions, time.perf_counter() - batch_started)
                raw.extend(predictions)
                progress((len(raw), len(texts)), desc="Analyzing rows", unit="rows")
        except Exception as exc:
            logger.exception("batch prediction failed")
            done = f" after {len(raw):,} of {len(texts):,} rows" if raw else ""
            return refused("error", FAILED_CALL.format(reason=_reason(exc), where=done))
        seconds = time.perf_counter() - started
        try:
            return self._results(upload, column, raw, positions, seconds)
        except Exception as exc:  # a malformed answer, a full disk: still a message, not a 500
            logger.exception("preparing batch results failed")
            return refused("error", f"The results could not be prepared ({_reason(exc)}).")

    async def _score_as_file(
        self, upload: tables.CsvUpload, column: str, log: bool, progress: Progress
    ) -> tuple[Any, ...]:
        """A file over the inline limit, scored by the service's file code (the `/predict_file`
        task's): its rows' checks, the file-job cap, a batch at a time with progress."""
        rows = len(upload.frame)
        done = 0

        def advance(scored: int, total: int) -> None:
            nonlocal done
            done = scored
            progress((scored, total), desc=FILE_JOB_PROGRESS, unit="rows")

        progress((0, rows), desc=FILE_JOB_PROGRESS, unit="rows")
        data = await asyncio.to_thread(tables.file_job_lines, upload.frame, column)
        job_id = f"ui-{uuid.uuid4().hex}"
        started = time.perf_counter()
        try:
            result = await self.backend.score_file(job_id, data, FILE_JOB_SUFFIX, column, advance)
        except ValueError as exc:  # the service's one-line refusal of the file as a whole
            reason = (str(exc).strip().splitlines() or ["the file could not be used"])[0]
            logger.info("file job %s refused %r: %s", job_id, upload.name, reason)
            raise gr.Error(
                f"'{upload.name}' could not be scored: {reason[:300].rstrip('.')}.",
                print_exception=False,
            ) from None
        except Exception as exc:
            logger.exception("file job %s failed", job_id)
            where = f" after {done:,} of {rows:,} rows" if done else ""
            message = FAILED_CALL.format(reason=_reason(exc), where=where)
            return (views.message_html("error", message), *self.no_results())
        seconds = time.perf_counter() - started
        try:
            # A CSV of every row to write: off the event loop too.
            return await asyncio.to_thread(
                self._file_job_results, upload, column, result, seconds, log
            )
        except Exception as exc:  # a malformed answer, a full disk: still a message, not a 500
            logger.exception("preparing file job results failed")
            message = f"The results could not be prepared ({_reason(exc)})."
            return (views.message_html("error", message), *self.no_results())

    def _file_job_results(
        self,
        upload: tables.CsvUpload,
        column: str,
        result: dict[str, Any],
        seconds: float,
        log: bool,
    ) -> tuple[Any, ...]:
        frame = tables.file_job_frame(upload.frame, column, result)
        scored = frame[frame["sentiment"].notna()]
        labels = scored["sentiment"].astype(str).tolist()
        confidences = scored["confidence"].astype(float).tolist()
        distribution = charts.distribution_frame(labels)
        counts = dict(zip(distribution["sentiment"], distribution["rows"], strict=True))
        target = self._save(upload.name, frame)

        preview = frame[["text", "sentiment", "confidence"]].head(self.cfg.batch.preview_rows)
        cut = len(preview) < len(frame)
        shown_note = f"; the table shows the first {len(preview):,}" if cut else ""
        not_logged = " Files scored as a file job are not logged to monitoring." if log else ""
        status = views.message_html(
            "success",
            f"Scored {len(scored):,} of {len(frame):,} rows of '{upload.name}' as a file "
            f"job{shown_note}. The download lists every row: its text, sentiment and "
            f"confidence, or why it was refused.{not_logged}",
        )
        summary = views.batch_summary_html(
            upload.name,
            len(frame),
            len(scored),
            seconds,
            counts,
            refused_why="(the download's error column says why).",
        )
        return (
            status,
            summary,
            gr.update(visible=True),
            preview,
            gr.update(value=str(target), visible=True),
            distribution,
            charts.confidence_histogram(confidences, labels),
        )

    @staticmethod
    def _save(upload_name: str, frame: pd.DataFrame) -> Path:
        """The analyzed CSV, in a folder of its own, ready for the download button."""
        folder = download_dir()
        prune_downloads(folder, DOWNLOAD_MAX_AGE_S)
        # One folder per run keeps the file's own name for the browser's download.
        target = folder / uuid.uuid4().hex / analyzed_name(upload_name)
        target.parent.mkdir()
        target.write_bytes(tables.to_csv_bytes(frame))
        return target

    def _results(
        self,
        upload: tables.CsvUpload,
        column: str | None,
        raw: list[dict[str, Any]],
        positions: list[int],
        seconds: float,
    ) -> tuple[Any, ...]:

        result = tables.analyzed_frame(upload.frame, positions, raw)
        labels = [str(r["label"]) for r in raw]
        confidences = [float(r["confidence"]) for r in raw]
        distribution = charts.distribution_frame(labels)
        counts = dict(zip(distribution["sentiment"], distribution["rows"], strict=True))
        target = self._save(upload.name, result)

        sentiment_col, confidence_col = tables.output_columns(list(upload.frame.columns))
        shown = [column, sentiment_col, confidence_col] if column else []
        preview = result[shown].head(self.cfg.batch.preview_rows)
        cut = len(preview) < len(result)
        shown_note = f"; the table shows the first {len(preview):,}" if cut else ""
        status = views.message_html(
            "success",
            f"Analyzed {len(raw):,} texts from '{upload.name}'{shown_note}. "
            "The download has every row and column.",
        )
        summary = views.batch_summary_html(upload.name, len(result), len(raw), seconds, counts)
        return (
            status,
            summary,
            gr.update(visible=True),
            preview,
            gr.update(value=str(target), visible=True),
            distribution,
            charts.confidence_histogram(confidences, labels),
        )

    # --- model -------------------------------------------------------------------------------

    def settings(self) -> list[tuple[str, Any]]:
        return [
            ("UI: batch size (texts per call)", self.cfg.batch.batch_size),
            ("UI: rows analyzed in the page", f"{self.limits.inline_rows:,}"),
            ("UI: row limit per upload (file job above)", f"{self.limits.max_rows:,}"),
            ("UI: file size limit", f"{self.limits.max_mb:g} MB"),
        ]

    async def model_panel(self) -> tuple[str, str]:
        """Model and system panel, monitoring panel."""
        try:
            info = await self.backend.model_info()
            model = views.model_info_html(info, self.settings())
        except Exception as exc:
            logger.exception("model info failed")
            model = views.message_html("error", FAILED_CALL.format(reason=_reason(exc), where=""))
        return model, views.monitoring_html(await self._summary())

    async def live(self) -> tuple[str, str, str]:
        """Header, running summary and monitoring panel, refreshed on a timer."""
        summary = await self._summary()
        return await self.header(), views.summary_html(summary), views.monitoring_html(summary)

    async def live_page(self) -> tuple[Any, ...]:
        """`live`, then `explain_controls`: on the page's load and its timer."""
        return *(await self.live()), *self.explain_controls()

    async def header(self) -> str:
        try:
            info = await self.backend.model_info()
        except Exception as exc:
            logger.warning("model info for the page header failed: %s", _reason(exc))
            return views.header_html(None)
        return views.header_html(info)


def build_ui(
    backend: UIBackend,
    cfg: UIConfig | None = None,
    upload_roots: Sequence[Path] | None = None,
    limits: FileLimits | None = None,
) -> gr.Blocks:
    cfg = cfg or load_ui_config()
    handlers = UIHandlers(backend, cfg, upload_roots, limits)
    limits = handlers.limits
    color_map = dict(charts.COLORS)

    with gr.Blocks(title="Sentiment analysis", analytics_enabled=False) as demo:
        header = gr.HTML(views.header_html(None), elem_id="ui-header")

        with gr.Tabs():
            with gr.Tab("Single prediction", id="single", elem_id="tab-single"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5):
                        text = gr.Textbox(
                            label="Text",
                            placeholder="Type a review or any sentence, then press Analyze…",
                            lines=5,
                            max_lines=12,
                            elem_id="single-text",
                        )
                        with gr.Row():
                            log_one = gr.Checkbox(
                                value=cfg.single.log_by_default,
                                label="Log this prediction to monitoring",
                                elem_id="single-log",
                            )
                            analyze = gr.Button("Analyze", variant="primary", elem_id="single-go")
                            # Apart from Analyze, so that plain predictions stay fast; shown
                            # once the page knows that the service explains (explain_controls).
                            explain = gr.Button("Explain", visible=False, elem_id="single-explain")
                        if cfg.examples:
                            examples = [[e] for e in cfg.examples]
                            gr.Examples(examples=examples, inputs=[text], label="Examples")
                    with gr.Column(scale=4):
                        result = gr.HTML(
                            views.placeholder_html("The sentiment will appear here."),
                            elem_id="single-result",
                        )
                        # Right / wrong on the shown prediction: shown only once there is one
                        # to answer, and only where the service keeps a feedback store.
                        shown = gr.State(None)
                        with gr.Row(
                            visible=False, equal_height=True, elem_id="single-feedback"
                        ) as feedback_row:
                            gr.HTML('<div class="ui-feedback-question">Was this right?</div>')
                            right = gr.Button(
                                "Right", size="sm", scale=0, min_width=90, elem_id="feedback-right"
                            )
                            wrong = gr.Button(
                                "Wrong", size="sm", scale=0, min_width=90, elem_id="feedback-wrong"
                            )
                        feedback_note = gr.HTML(elem_id="single-feedback-note")
                        probs = gr.BarPlot(
                            charts.probability_frame(
                                {"probabilities": {"negative": 0.0, "positive": 0.0}}
                            ),
                            x="sentiment",
                            y="probability",
                            color="sentiment",
                            color_map=color_map,
                            y_lim=[0, 1],
                            sort=list(LABEL_NAMES),
                            title="Probability of each sentiment",
                            y_axis_format=".0%",
                            height=220,
                            show_label=False,
                            elem_id="single-probs",
                        )
                explanation = gr.HTML(elem_id="single-explanation")
                summary = gr.HTML(elem_id="single-summary")

            with (
                gr.Tab("Batch analysis", id="batch", elem_id="tab-batch"),
                gr.Row(equal_height=False),
            ):
                with gr.Column(scale=2, min_width=280):
                    # Reads only files that Gradio stored on upload (see ui/uploads.py).
                    upload = uploads.accept_only_uploads(
                        gr.File(label="CSV file", type="filepath", elem_id="batch-file")
                    )
                    # Right under the file, where the eye is when a file is refused.
                    status = gr.HTML(elem_id="batch-status")
                    column = gr.Dropdown(
                        label="Text column",
                        choices=[],
                        value=None,
                        interactive=True,
                        elem_id="batch-column",
                    )
                    log_batch = gr.Checkbox(
                        value=cfg.batch.log_by_default,
                        label="Log these predictions to monitoring",
                        elem_id="batch-log",
                    )
                    run = gr.Button(
                        "Analyze file", variant="primary", interactive=False, elem_id="batch-go"
                    )
                    gr.HTML(views.hint_html(batch_hint(limits)))
                with gr.Column(scale=5):
                    batch_summary = gr.HTML(BATCH_PLACEHOLDER, elem_id="batch-summary")
                    results = gr.Column(visible=False, elem_id="batch-results")
                    with results, gr.Row():
                        dist = gr.BarPlot(
                            charts.distribution_frame([]),
                            x="sentiment",
                            y="rows",
                            color="sentiment",
                            color_map=color_map,
                            sort=list(LABEL_NAMES),
                            y_lim=[0, None],
                            title="Sentiment distribution",
                            height=260,
                            show_label=False,
                            elem_id="batch-distribution",
                        )
                        hist = gr.BarPlot(
                            charts.confidence_histogram([], []),
                            x="confidence",
                            y="rows",
                            color="sentiment",
                            color_map=color_map,
                            sort=charts.histogram_order(),
                            y_lim=[0, None],
                            title="Confidence histogram",
                            x_label_angle=-45,
                            height=260,
                            show_label=False,
                            elem_id="batch-histogram",
                        )
                    with results:
                        download = gr.DownloadButton(
                            "Download analyzed CSV", visible=False, elem_id="batch-download"
                        )
                        table = gr.Dataframe(
                            label="Results",
                            interactive=False,
                            wrap=True,
                            max_height=420,
                            column_widths=["70%", "15%", "15%"],
                            elem_id="batch-table",
                        )
                        # The texts of the table's rows (at most batch.preview_rows), kept on
                        # the server for "Explain row".
                        batch_rows = gr.State([])
                        with gr.Row(
                            visible=False, equal_height=True, elem_id="batch-explain"
                        ) as batch_explain:
                            row_number = gr.Number(
                                value=1,
                                label="Row of the results table",
                                precision=0,
                                scale=1,
                                min_width=160,
                                elem_id="batch-explain-row",
                            )
                            explain_row = gr.Button(
                                "Explain row", scale=0, min_width=140, elem_id="batch-explain-go"
                            )
                        batch_explanation = gr.HTML(elem_id="batch-explanation")

            with gr.Tab("Model & monitoring", id="model", elem_id="tab-model") as model_tab:
                with gr.Row(equal_height=True):
                    gr.HTML('<h2 class="ui-section">Served model</h2>')
                    refresh = gr.Button(
                        "↻ Refresh", size="sm", scale=0, min_width=110, elem_id="model-refresh"
                    )
                model_html = gr.HTML(views.placeholder_html("Loading model information…"))
                gr.HTML('<h2 class="ui-section">Live monitoring</h2>')
                monitoring_html = gr.HTML(elem_id="model-monitoring")

        gr.HTML(views.footer_html(), elem_id="ui-footer")

        single_outputs = [result, probs, summary, shown, feedback_row, feedback_note]
        analyze.click(handlers.predict_one, [text, log_one], single_outputs)
        text.submit(handlers.predict_one, [text, log_one], single_outputs)

        explain.click(
            handlers.explain_one, [text], [explanation, explain], show_progress_on=[explanation]
        )
        # An explanation is of the text it shows: a changed text clears it (in the browser).
        text.change(None, None, [explanation], js="() => ''")

        def hold_buttons() -> tuple[Any, Any]:
            """Both buttons off at once, so a prediction is answered once."""
            return gr.update(interactive=False), gr.update(interactive=False)

        feedback_outputs = [shown, feedback_row, right, wrong, feedback_note]
        for button, answer in ((right, handlers.feedback_right), (wrong, handlers.feedback_wrong)):
            button.click(hold_buttons, None, [right, wrong], show_progress="hidden").then(
                answer, [shown], feedback_outputs, show_progress="hidden"
            )

        batch_results = [batch_summary, results, table, download, dist, hist]
        # Every new result (or none) replaces the kept rows and clears a row's explanation.
        kept = [batch_rows, batch_explanation]

        def inspect_upload(path: str | None) -> tuple[Any, ...]:
            return *handlers.inspect_upload(path), [], ""

        upload.upload(inspect_upload, [upload], [column, status, run, *batch_results, *kept])
        upload.clear(inspect_upload, [upload], [column, status, run, *batch_results, *kept])

        # Gradio finds the progress tracker by this default value and passes a fresh one per call.
        async def analyze_file(
            path: str | None,
            col: str | None,
            log: bool,
            progress: Any = gr.Progress(),  # noqa: B008
        ) -> Any:
            done = await handlers.analyze_file(path, col, log, progress)
            # (status, summary, results column, table, ...): the table's texts are kept.
            return *done, handlers.kept_texts(done[3]), ""

        run.click(
            analyze_file,
            [upload, column, log_batch],
            [status, *batch_results, *kept],
            show_progress_on=[batch_summary],  # one progress bar, where the results will be
        )
        explain_row.click(
            handlers.explain_row,
            [batch_rows, row_number],
            [batch_explanation, batch_explain],
            show_progress_on=[batch_explanation],
        )

        model_outputs = [model_html, monitoring_html]
        model_tab.select(handlers.model_panel, None, model_outputs)
        refresh.click(handlers.model_panel, None, model_outputs)

        live_outputs = [header, summary, monitoring_html, explain, batch_explain]
        # One load event, not one per output: under load, gradio's client was seen to leave the
        # second of two load events unprocessed on a fresh server.
        demo.load(handlers.live_page, None, live_outputs)
        # Keeps the monitoring figures live, and fills the header and shows the Explain controls
        # should the first load fail.
        timer = gr.Timer(cfg.live_refresh_s)
        timer.tick(handlers.live_page, None, live_outputs, show_progress="hidden")
    return demo


def batch_hint(limits: FileLimits) -> str:
    """The batch tab's note on what it accepts and what the download holds."""
    accepted = (
        f"UTF-8 text with a header row, up to {limits.max_rows:,} rows and {limits.max_mb:g} MB."
    )
    download = "the download keeps every column and adds sentiment and confidence."
    if limits.max_rows <= limits.inline_rows:
        return f"{accepted} {download[0].upper()}{download[1:]}"
    return (
        f"{accepted} Up to {limits.inline_rows:,} rows, {download} Over that, the file is "
        "scored as a file job: the download lists each row's text, sentiment and confidence, "
        "or why it was refused."
    )


def theme() -> gr.themes.Base:
    # Soft's fonts ship inside the gradio wheel, so the page needs no network for them.
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate")


def prepare_for_mount(blocks: gr.Blocks) -> gr.Blocks:
    """Theme, CSS and rendering mode that `launch()` would set, for a Blocks mounted unlaunched."""
    # The same attributes gradio's own mount_gradio_app sets; gradio types them as None.
    launch_settings: dict[str, Any] = {
        "theme": theme(),
        "css": CSS,
        "css_paths": [],
        "js": "",
        "head": "",
        "head_paths": [],
        "ssr_mode": False,
    }
    for name, value in launch_settings.items():
        setattr(blocks, name, value)
    blocks._set_html_css_theme_variables()
    return blocks


def service_ui(
    serving_max_batch_size: int | None = None,
    cfg: UIConfig | None = None,
    limits: FileLimits | None = None,
) -> gr.Blocks:
    """The Blocks that service.py mounts: the live service as backend, settings from config."""
    cfg = cfg or load_ui_config()
    if serving_max_batch_size is not None and cfg.batch.batch_size > serving_max_batch_size:
        # One UI batch should fit in one model call of the service's batcher.
        cfg.batch.batch_size = serving_max_batch_size
    limits = limits or load_file_limits(cfg)
    blocks = build_ui(ServiceBackend(), cfg, upload_roots=uploads.upload_roots(), limits=limits)
    return configure_queue(prepare_for_mount(blocks), cfg.queue_poll_s, cfg.queue_max_size)


def configure_queue(blocks: gr.Blocks, poll_s: float, max_size: int) -> gr.Blocks:
    """Make Gradio's event queue look for work every `poll_s` seconds instead of every 1 ms
    (and its progress loop at most every 0.1 s) and hold at most `max_size` events unless
    whoever makes the queue bounds it.

    The 1-ms wake-ups took CPU from /predict inside the API server; events now start up to
    `poll_s` later, unnoticeable on a page. BentoML's startup hook replaces the queue
    (`blocks.queue(default_concurrency_limit=...)`, unbounded) before starting it, so setting
    today's queue once is not enough: every queue `blocks.queue()` makes is set too. The first
    version set it once, and the served worker kept polling every 1 ms (1,660 event-loop
    wake-ups a second, 9 % of a core while idle; 120 and 3.5 % since)."""
    create_queue = blocks.queue

    def queue(*args: Any, **kwargs: Any) -> gr.Blocks:
        made = create_queue(*args, **kwargs)
        _set_queue(blocks._queue, poll_s, max_size)
        return made

    _set_queue(blocks._queue, poll_s, max_size)
    blocks.queue = queue
    return blocks


def _set_queue(queue: Any, poll_s: float, max_size: int) -> None:
    """Set one Gradio `Queue`: its idle polling, and `max_size` where its maker left it
    unbounded (a caller's own bound stays). Fails loudly if Gradio renamed the attributes."""
    for name in ("sleep_when_free", "progress_update_sleep_when_free"):
        if not isinstance(getattr(queue, name, None), float):
            raise RuntimeError(f"gradio's Queue has no float {name!r}: check configure_queue")
    if not hasattr(queue, "max_size"):
        raise RuntimeError("gradio's Queue has no max_size: check configure_queue")
    queue.sleep_when_free = poll_s
    queue.progress_update_sleep_when_free = max(poll_s, 0.1)
    if queue.max_size is None:
        queue.max_size = max_size


def mount_ui(
    serving_max_batch_size: int | None = None, api: ApiSection | None = None
) -> Callable[[Any], Any]:
    """The class decorator that mounts the UI on a BentoML service at the configured path.

    `api`: the service's API settings, whose file limits bound the batch tab's (None: loaded
    from the serving config, as the service loads them). BentoML's `mount_gradio_app` creates
    and mounts the Gradio app; `guard.harden` then sets its upload limit, error and file
    settings, hides its routes from /docs.json and puts `guard.GradioGuard` in front of them
    (see ui/guard.py)."""
    from bentoml.gradio import mount_gradio_app

    cfg = load_ui_config()
    limits = load_file_limits(cfg) if api is None else file_limits(cfg.batch, api)
    blocks = service_ui(serving_max_batch_size, cfg, limits)
    bentoml_mount = mount_gradio_app(blocks, path=cfg.path)

    def decorator(obj: Any) -> Any:
        obj = bentoml_mount(obj)
        guard.harden(
            guard.mounted_gradio_app(obj, blocks),
            max_upload_bytes=limits.max_bytes,
            max_body_bytes=guard.json_body_limit(cfg.single.max_text_chars),
            extra_blocked=[download_dir()],
        )
        return obj

    return decorator
