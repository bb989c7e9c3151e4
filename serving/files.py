"""Files scored by the task endpoint (`/predict_file`): CSV or JSON lines in, rows out.

A file is checked as a whole first (encoding, format, a text column, the row limit): any of
those is one 400 for the file. After that a bad row (empty text, too long, not a string) is
reported by its row number beside the predictions of the good ones, so one stray row never
costs the whole file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.http import RequestError

TEXT_COLUMNS = ("text", "review", "sentence", "feedback_text", "content", "comment")
MAX_CELL_CHARS = 1_000_000


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row (the header is row 0)
    error: str


@dataclass
class FileRows:
    """The texts to score with their row numbers, and the rows refused with their reason."""

    rows: int
    texts: list[str] = field(default_factory=list)
    row_numbers: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise RequestError("the file is binary: send CSV or JSON lines as UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the file is not UTF-8 text (byte {exc.start})") from None


def is_json_lines(suffix: str, text: str) -> bool:
    if suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    first = next((line for line in text.splitlines() if line.strip()), "")
    return first.lstrip().startswith("{")


def pick_column(header: Sequence[str], asked: str | None) -> str:
    if asked:
        if asked not in header:
            raise RequestError(f"the file has no column '{asked}' (columns: {', '.join(header)})")
        return asked
    by_lower = {h.strip().lower(): h for h in header}
    for candidate in TEXT_COLUMNS:
        if candidate in by_lower:
            return by_lower[candidate]
    if len(header) == 1:
        return header[0]
    raise RequestError(
        f"say which column holds the text (text_column); the file's columns: {', '.join(header)}"
    )


def csv_records(text: str) -> tuple[list[str], Iterator[dict[str, Any]]]:
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [h for h in (reader.fieldnames or []) if h is not None]
    if not header:
        raise RequestError("the file is empty: it needs a header row and data rows")
    return header, iter(reader)


def json_line_records(text: str) -> Iterator[dict[str, Any] | RowError]:
    row = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        row += 1
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            yield RowError(row, "not a JSON object")
            continue
        yield record if isinstance(record, dict) else RowError(row, "not a JSON object")


def read_rows(
    data: bytes, suffix: str, text_column: str | None, max_rows: int, max_text_chars: int
) -> FileRows:
    """The rows of a CSV or JSON-lines file (JSON lines by suffix, or when the first line is an
    object); RequestError when the file as a whole is unusable. Messages say "the file", never
    a server-side name."""
    text = decode(data)
    records: Iterator[dict[str, Any] | RowError]
    if is_json_lines(suffix, text):
        column = text_column or "text"
        records = json_line_records(text)
    else:
        csv.field_size_limit(MAX_CELL_CHARS)
        header, rows = csv_records(text)
        column = pick_column(header, text_column)
        records = rows
    out = FileRows(rows=0)
    try:
        for record in records:
            out.rows += 1
            if out.rows > max_rows:
                raise RequestError(f"the file has more than {max_rows:,} rows, the limit", 413)
            if isinstance(record, RowError):
                out.errors.append(record)
                continue
            value = record.get(column)
            problem = row_problem(value, column, max_text_chars)
            if problem:
                out.errors.append(RowError(out.rows, problem))
            else:
                out.texts.append(str(value))
                out.row_numbers.append(out.rows)
    except csv.Error as exc:
        raise RequestError(f"the file is not valid CSV at row {out.rows}: {exc}") from None
    if out.rows == 0:
        raise RequestError("the file has no data rows")
    return out


def row_problem(value: Any, column: str, max_text_chars: int) -> str | None:
    """Why a row cannot be scored, or None."""
    if value is None:
        return f"no '{column}' value"
    if not isinstance(value, str):
        return f"'{column}' is {type(value).__name__}, not a string"
    if not value.strip():
        return f"'{column}' is empty"
    if len(value) > max_text_chars:
        return f"'{column}' has {len(value)} characters, over the limit of {max_text_chars}"
    return None


class FileJobs:
    """Files being scored: their progress, and the cap on how many are accepted at once (a
    refused one is a 429 for the task, not a queue that grows without bound)."""

    def __init__(self, max_active: int, keep: int = 256) -> None:
        self.max_active = max_active
        self.keep = keep
        self.active: set[str] = set()
        self._progress: dict[str, dict[str, Any]] = {}

    def start(self, task_id: str, rows: int) -> None:
        if len(self.active) >= self.max_active:
            raise RequestError(f"{self.max_active} files are being scored; retry later", 429)
        self.active.add(task_id)
        self._progress[task_id] = {"task_id": task_id, "rows": rows, "done": 0, "finished": False}
        while len(self._progress) > self.keep:  # oldest first: dicts keep insertion order
            oldest = next(iter(self._progress))
            if oldest in self.active:
                break
            del self._progress[oldest]

    def advance(self, task_id: str, done: int) -> None:
        if task_id in self._progress:
            self._progress[task_id]["done"] = done

    def finish(self, task_id: str) -> None:
        self.active.discard(task_id)
        if task_id in self._progress:
            self._progress[task_id]["finished"] = True

    def progress(self, task_id: str) -> dict[str, Any] | None:
        entry = self._progress.get(task_id)
        if entry is None:
            return None
        rows = entry["rows"]
        return {**entry, "fraction": round(entry["done"] / rows, 4) if rows else 1.0}


async def score_rows(
    rows: FileRows,
    classify: Callable[[list[str]], Awaitable[list[dict[str, Any]]]],
    chunk_size: int,
    on_progress: Callable[[int], None],
) -> dict[str, Any]:
    """Predictions for the good rows, a chunk at a time (progress after each), and the
    refused rows with their reasons."""
    predictions: list[dict[str, Any]] = []
    done = len(rows.errors)
    for start in range(0, len(rows.texts), chunk_size):
        chunk = rows.texts[start : start + chunk_size]
        raw = await classify(chunk)
        for row, item in zip(rows.row_numbers[start : start + chunk_size], raw, strict=True):
            predictions.append(
                {"row": row, "sentiment": item["label"], "confidence": round(item["confidence"], 6)}
            )
        done += len(chunk)
        on_progress(done)
    return {
        "rows": rows.rows,
        "scored": len(predictions),
        "predictions": predictions,
        "errors": [{"row": e.row, "error": e.error} for e in rows.errors],
    }
