"""Files for the task endpoint: whole-file checks, per-row errors, progress, the task cap."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from serving.files import FileJobs, FileRows, RowError, read_rows, score_rows
from serving.http import RequestError


def rows(data: bytes, suffix: str = ".csv", column: str | None = None, max_rows: int = 10):
    return read_rows(data, suffix, column, max_rows, max_text_chars=20)


def test_csv_rows_with_the_text_column_found_and_bad_rows_named() -> None:
    out = rows(b'id,review\n1,"great, really"\n2,\n3,' + b"x" * 21 + b"\n4,fine\n")
    assert out.rows == 4
    assert out.texts == ["great, really", "fine"] and out.row_numbers == [1, 4]
    assert out.errors == [
        RowError(2, "'review' is empty"),
        RowError(3, "'review' has 21 characters, over the limit of 20"),
    ]


def test_semicolon_and_tab_separated_files_and_a_named_column() -> None:
    assert rows(b"a;body\n1;good\n", column="body").texts == ["good"]
    assert rows(b"a\tbody\n1\tgood\n", column="body").texts == ["good"]
    assert rows(b"only\nhello\n").texts == ["hello"]


def test_json_lines_by_suffix_or_content() -> None:
    data = b'{"text": "good"}\n\n{"text": 3}\n[1]\n{"other": "x"}\n'
    for suffix in (".jsonl", ".txt"):
        out = rows(data, suffix)
        assert out.texts == ["good"] and out.rows == 4
        assert [e.error for e in out.errors] == [
            "'text' is int, not a string",
            "not a JSON object",
            "no 'text' value",
        ]


@pytest.mark.parametrize(
    ("data", "suffix", "column", "status", "message"),
    [
        (b"\x00\x01\x02", ".csv", None, 400, "the file is binary"),
        (b"text\n\xff\xfe\n", ".csv", None, 400, "not UTF-8 text (byte 5)"),
        (b"", ".csv", None, 400, "the file is empty"),
        (b"text\n", ".csv", None, 400, "the file has no data rows"),
        (b"a,b\n1,2\n", ".csv", None, 400, "say which column holds the text"),
        (b"a,b\n1,2\n", ".csv", "c", 400, "the file has no column 'c' (columns: a, b)"),
        (b"text\n" + b"x\n" * 11, ".csv", None, 413, "more than 10 rows"),
    ],
)
def test_whole_file_problems_are_one_error(
    data: bytes, suffix: str, column: str | None, status: int, message: str
) -> None:
    with pytest.raises(RequestError) as info:
        rows(data, suffix, column)
    assert info.value.status == status and message in str(info.value)
    assert "/" not in str(info.value)


def test_score_rows_reports_progress_per_chunk_and_keeps_row_numbers() -> None:
    file_rows = FileRows(rows=5, texts=["a", "b", "c"], row_numbers=[1, 2, 5])
    file_rows.errors.append(RowError(3, "'text' is empty"))
    seen: list[int] = []

    async def classify(texts: list[str]) -> list[dict[str, Any]]:
        return [{"label": "positive", "confidence": 0.1234567} for _ in texts]

    result = asyncio.run(score_rows(file_rows, classify, 2, seen.append))
    assert seen == [3, 4]
    assert [p["row"] for p in result["predictions"]] == [1, 2, 5]
    assert result["predictions"][0] == {"row": 1, "sentiment": "positive", "confidence": 0.123457}
    assert result["errors"] == [{"row": 3, "error": "'text' is empty"}]
    assert (result["rows"], result["scored"]) == (5, 3)


def test_file_jobs_cap_progress_and_forget_the_oldest_finished() -> None:
    jobs = FileJobs(max_active=2, keep=3)
    jobs.start("a", 10)
    jobs.start("b", 0)
    with pytest.raises(RequestError) as info:
        jobs.start("c", 5)
    assert info.value.status == 429
    jobs.advance("a", 4)
    assert jobs.progress("a") == {
        "task_id": "a",
        "rows": 10,
        "done": 4,
        "finished": False,
        "fraction": 0.4,
    }
    assert jobs.progress("b")["fraction"] == 1.0  # type: ignore[index]
    jobs.finish("a")
    jobs.finish("b")
    for name in ("c", "d"):
        jobs.start(name, 1)
        jobs.finish(name)
    assert jobs.progress("a") is None and jobs.progress("d") is not None
    assert jobs.progress("missing") is None
