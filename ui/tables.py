"""CSV uploads for batch analysis: read and check them, pick the text column, build the result.

Every refusal is an InputProblem whose message is shown in the page as it is, so each one says
what is wrong with the file and what to do about it, in one line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

ACCEPTED_SUFFIXES = (".csv", ".tsv", ".txt")
DELIMITERS = (",", "\t", ";", "|")
# Column names that say "this is the text", most specific first.
TEXT_COLUMN_NAMES = (
    "text",
    "sentence",
    "review",
    "review_text",
    "comment",
    "content",
    "body",
    "message",
    "feedback",
    "tweet",
    "description",
    "title",
)

# The download of a file scored by the service's file code (see `file_job_frame`).
FILE_JOB_COLUMNS = ("row", "text", "sentiment", "confidence", "error")

T = TypeVar("T")


class InputProblem(ValueError):
    """Input the UI refuses; str(exc) is the message shown to the user."""


@dataclass(frozen=True)
class CsvUpload:
    name: str
    frame: pd.DataFrame  # every cell a str, exactly as in the file
    delimiter: str


def check_file(path: str | Path, max_bytes: int) -> bytes:
    """The file's bytes, or InputProblem when it is not a CSV-like name or is too large."""
    path = Path(path)
    if path.suffix.lower() not in ACCEPTED_SUFFIXES:
        raise InputProblem(
            f"'{path.name}' is not a CSV file: upload a .csv (or .tsv) file with a header row."
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise InputProblem(
            f"'{path.name}' is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:g} MB limit: "
            "split it into smaller files."
        )
    return path.read_bytes()


def detect_delimiter(header_line: str) -> str:
    """The delimiter used most in the header line (outside quotes); ',' when none is."""
    counts = {d: 0 for d in DELIMITERS}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_csv(data: bytes, name: str, max_rows: int) -> CsvUpload:
    """Decode UTF-8 CSV bytes into a frame of strings, refusing what the UI cannot use."""
    if b"\x00" in data[:8192]:
        raise InputProblem(f"'{name}' is a binary file, not CSV text: export it as CSV (UTF-8).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputProblem(
            f"'{name}' is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start}): "
            "save it as 'CSV UTF-8' and upload it again."
        ) from None
    lines = text.splitlines()
    header = next((line for line in lines if line.strip()), None)
    if header is None:
        raise InputProblem(f"'{name}' is empty: it needs a header row and at least one row.")
    delimiter = detect_delimiter(header)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            nrows=max_rows + 1,
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, csv.Error) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "malformed CSV"
        detail = detail.removeprefix("Error tokenizing data. C error: ").rstrip(".")
        raise InputProblem(f"'{name}' could not be read as CSV: {detail}.") from None
    except pd.errors.EmptyDataError:
        raise InputProblem(f"'{name}' is empty: it needs a header row and data rows.") from None
    if len(frame) > max_rows:
        raise InputProblem(
            f"'{name}' has more than {max_rows:,} rows, the limit for one upload: "
            "split it into smaller files."
        )
    if frame.empty:
        raise InputProblem(f"'{name}' has a header row but no data rows.")
    frame.columns = [str(c) for c in frame.columns]
    return CsvUpload(name=name, frame=frame, delimiter=delimiter)


def read_upload(path: str | Path, max_rows: int, max_bytes: int) -> CsvUpload:
    return parse_csv(check_file(path, max_bytes), Path(path).name, max_rows)


def is_text(cell: str) -> bool:
    """A cell a sentiment model can read: it has letters and is not a number."""
    stripped = cell.strip()
    if not any(ch.isalpha() for ch in stripped):
        return False
    try:
        float(stripped)  # "nan", "inf", "1e5" have letters but are numbers
    except ValueError:
        return True
    return False


def text_share(values: Sequence[str]) -> float:
    """Share of the non-empty cells that are text; 0 when every cell is empty."""
    filled = [v for v in values if v.strip()]
    if not filled:
        return 0.0
    return sum(is_text(v) for v in filled) / len(filled)


def text_columns(frame: pd.DataFrame, min_share: float = 0.5) -> list[str]:
    """Columns where at least `min_share` of the non-empty cells are text, in file order."""
    return [c for c in frame.columns if text_share(frame[c].tolist()) >= min_share]


def guess_text_column(frame: pd.DataFrame) -> str | None:
    """A text column named like one, else the only text column, else the one with longest text."""
    candidates = text_columns(frame)
    if not candidates:
        return None
    by_name = {c.strip().lower(): c for c in candidates}
    for name in TEXT_COLUMN_NAMES:
        if name in by_name:
            return by_name[name]
    if len(candidates) == 1:
        return candidates[0]

    def mean_length(column: str) -> float:
        return float(frame[column].str.len().mean())

    return max(candidates, key=mean_length)


def texts_to_score(frame: pd.DataFrame, column: str | None) -> tuple[list[str], list[int]]:
    """The non-empty texts of `column` and their row positions; InputProblem if none is usable."""
    if not column:
        raise InputProblem("Choose the column that holds the text.")
    if column not in frame.columns:
        raise InputProblem(f"The file has no column '{column}': choose one from the list.")
    values = frame[column].tolist()
    positions = [i for i, v in enumerate(values) if v.strip()]
    if not positions:
        raise InputProblem(f"Column '{column}' is empty in every row: choose the text column.")
    if text_share(values) < 0.5:
        raise InputProblem(
            f"Column '{column}' holds numbers or codes, not text: choose the text column."
        )
    return [values[i] for i in positions], positions


def batched(items: Sequence[T], size: int) -> Iterator[list[T]]:
    if size < 1:
        raise ValueError("batch size must be at least 1")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def output_columns(existing: Sequence[str]) -> tuple[str, str]:
    """Names for the added columns that do not overwrite a column of the file."""

    def free(base: str) -> str:
        name = base
        while name in existing:
            name += "_pred"
        return name

    return free("sentiment"), free("confidence")


def analyzed_frame(
    frame: pd.DataFrame, positions: Sequence[int], raw: Sequence[dict[str, Any]]
) -> pd.DataFrame:
    """The file's columns plus sentiment and confidence; rows not scored get empty cells."""
    if len(positions) != len(raw):
        raise ValueError(f"{len(positions)} rows scored but {len(raw)} predictions")
    sentiment_col, confidence_col = output_columns(list(frame.columns))
    labels: list[str | None] = [None] * len(frame)
    confidences: list[float] = [math.nan] * len(frame)
    for pos, prediction in zip(positions, raw, strict=True):
        labels[pos] = str(prediction["label"])
        confidences[pos] = round(float(prediction["confidence"]), 4)
    out = frame.copy()
    out[sentiment_col] = pd.Series(labels, index=frame.index, dtype=object)
    out[confidence_col] = pd.Series(confidences, index=frame.index, dtype=float)
    return out


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


# --- files scored by the service's file code (over the inline limit) -----------------------------


def file_job_lines(frame: pd.DataFrame, column: str) -> bytes:
    """The column's cells as JSON lines (`{column: cell}`, one line per data row, empty cells
    too) for the service's file scoring: its row N is then this frame's row N, whatever the
    service's own CSV reading would make of the file. ASCII-escaped, so no text holds a line
    break of any kind (the service splits lines like `str.splitlines`)."""
    return "".join(json.dumps({column: cell}) + "\n" for cell in frame[column]).encode("ascii")


def file_job_frame(frame: pd.DataFrame, column: str, result: Mapping[str, Any]) -> pd.DataFrame:
    """Row number (1-based, as the service counts), text, sentiment, confidence, and why a row
    was refused, from the service's answer `{"rows", "predictions": [{"row", "sentiment",
    "confidence"}], "errors": [{"row", "error"}]}`. ValueError for an answer that does not fit
    the file."""
    n = len(frame)
    if int(result["rows"]) != n:
        raise ValueError(f"the service read {result['rows']} rows of {n}")
    sentiments: list[str | None] = [None] * n
    confidences: list[float] = [math.nan] * n
    errors: list[str | None] = [None] * n

    def index(row: Any) -> int:
        position = int(row) - 1
        if not 0 <= position < n:
            raise ValueError(f"row {row} is not a row of the file")
        return position

    for prediction in result["predictions"]:
        i = index(prediction["row"])
        sentiments[i] = str(prediction["sentiment"])
        confidences[i] = round(float(prediction["confidence"]), 4)
    for error in result["errors"]:
        errors[index(error["row"])] = str(error["error"])
    return pd.DataFrame(
        {
            "row": range(1, n + 1),
            "text": frame[column].tolist(),
            "sentiment": pd.Series(sentiments, dtype=object),
            "confidence": pd.Series(confidences, dtype=float),
            "error": pd.Series(errors, dtype=object),
        },
        columns=list(FILE_JOB_COLUMNS),
    )
