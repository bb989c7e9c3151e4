"""CSV handling of the batch tab: reading, refusing, choosing the text column, the result."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ui.tables import (
    InputProblem,
    analyzed_frame,
    batched,
    check_file,
    detect_delimiter,
    guess_text_column,
    is_text,
    output_columns,
    parse_csv,
    text_columns,
    text_share,
    texts_to_score,
    to_csv_bytes,
)


def frame(**columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns, dtype=object)


def test_parse_keeps_every_cell_as_written() -> None:
    upload = parse_csv(b"id,review\n007,Great film\n2,\n", "r.csv", max_rows=10)
    assert upload.delimiter == ","
    assert list(upload.frame.columns) == ["id", "review"]
    assert upload.frame["id"].tolist() == ["007", "2"]  # no number parsing, no NaN
    assert upload.frame["review"].tolist() == ["Great film", ""]


def test_parse_strips_a_utf8_bom_and_reads_quoted_commas() -> None:
    data = '\ufefftext,n\n"good, really good",1\n'.encode()
    upload = parse_csv(data, "r.csv", max_rows=10)
    assert list(upload.frame.columns) == ["text", "n"]
    assert upload.frame["text"].tolist() == ["good, really good"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("id,text", ","),
        ("id\ttext", "\t"),
        ("id;text;score", ";"),
        ("id|text", "|"),
        ("text", ","),
        ('"a;b",c', ","),  # the ';' is inside quotes
    ],
)
def test_detect_delimiter(header: str, expected: str) -> None:
    assert detect_delimiter(header) == expected


def test_tsv_is_read_with_tabs() -> None:
    upload = parse_csv(b"sentence\tlabel\nNice, warm and funny\t1\n", "r.tsv", max_rows=10)
    assert upload.frame["sentence"].tolist() == ["Nice, warm and funny"]


def test_not_utf8_is_refused_with_the_position() -> None:
    expected = r"'x\.csv' is not UTF-8 text \(byte 0xe8 at position 15\)"  # 'è', 0-based
    with pytest.raises(InputProblem, match=expected):
        parse_csv("text\nun film très bon\n".encode("latin-1"), "x.csv", max_rows=10)


def test_binary_file_is_refused() -> None:
    with pytest.raises(InputProblem, match="binary file, not CSV"):
        parse_csv(b"PK\x03\x04\x00\x00rest", "book.csv", max_rows=10)


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"])
def test_empty_file_is_refused(data: bytes) -> None:
    with pytest.raises(InputProblem, match="is empty"):
        parse_csv(data, "e.csv", max_rows=10)


def test_header_only_is_refused() -> None:
    with pytest.raises(InputProblem, match="header row but no data rows"):
        parse_csv(b"text,label\n", "h.csv", max_rows=10)


def test_row_limit_is_exact() -> None:
    data = b"text\n" + b"nice\n" * 3
    assert len(parse_csv(data, "ok.csv", max_rows=3).frame) == 3
    with pytest.raises(InputProblem, match="more than 2 rows, the limit"):
        parse_csv(data, "big.csv", max_rows=2)


def test_ragged_csv_is_refused_with_the_line() -> None:
    expected = r"could not be read as CSV: Expected 2 fields in line 3, saw 3\.$"
    with pytest.raises(InputProblem, match=expected):
        parse_csv(b"a,b\n1,2\n1,2,3\n", "bad.csv", max_rows=10)


def test_check_file_refuses_other_types_and_large_files(tmp_path: Path) -> None:
    xlsx = tmp_path / "sheet.xlsx"
    xlsx.write_bytes(b"x")
    with pytest.raises(InputProblem, match=r"'sheet\.xlsx' is not a CSV file"):
        check_file(xlsx, max_bytes=100)
    big = tmp_path / "big.csv"
    big.write_bytes(b"t\n" + b"a" * 2000)
    with pytest.raises(InputProblem, match=r"0\.0 MB, over the 0\.001 MB limit"):
        check_file(big, max_bytes=1000)
    ok = tmp_path / "ok.CSV"
    ok.write_bytes(b"t\na\n")
    assert check_file(ok, max_bytes=1000) == b"t\na\n"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("Great film", True),
        ("42", False),
        ("3.5", False),
        ("nan", False),
        ("1e5", False),
        ("", False),
        ("  ", False),
        ("A1", True),
        ("très bien", True),
        ("---", False),
    ],
)
def test_is_text(cell: str, expected: bool) -> None:
    assert is_text(cell) is expected


def test_text_share_ignores_empty_cells() -> None:
    assert text_share(["good", "", "12", "bad"]) == pytest.approx(2 / 3)
    assert text_share(["", " "]) == 0.0


def test_text_columns_and_guess_by_name() -> None:
    f = frame(id=["1", "2"], title=["Hi", "Yo"], review=["A long review", "Another one"])
    assert text_columns(f) == ["title", "review"]
    assert guess_text_column(f) == "review"  # "review" is named like text; "title" less so


def test_guess_single_text_column_whatever_its_name() -> None:
    f = frame(id=["1", "2"], notes=["loved it", "hated it"], score=["5", "1"])
    assert guess_text_column(f) == "notes"


def test_guess_longest_text_when_names_say_nothing() -> None:
    f = frame(a=["ok", "no"], b=["a much longer sentence", "another long sentence"])
    assert guess_text_column(f) == "b"


def test_guess_none_without_text() -> None:
    assert guess_text_column(frame(id=["1", "2"], score=["0.5", "3"])) is None


def test_texts_to_score_skips_empty_cells() -> None:
    f = frame(text=["good", "  ", "bad", ""])
    assert texts_to_score(f, "text") == (["good", "bad"], [0, 2])


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (None, "Choose the column"),
        ("nope", "no column 'nope'"),
        ("empty", "Column 'empty' is empty in every row"),
        ("label", "Column 'label' holds numbers or codes"),
    ],
)
def test_texts_to_score_refusals(column: str | None, message: str) -> None:
    f = frame(text=["good", "bad"], empty=["", ""], label=["0", "1"])
    with pytest.raises(InputProblem, match=message):
        texts_to_score(f, column)


def test_batched() -> None:
    assert list(batched([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(batched([], 3)) == []
    with pytest.raises(ValueError):
        list(batched([1], 0))


def test_output_columns_never_overwrite() -> None:
    assert output_columns(["text"]) == ("sentiment", "confidence")
    assert output_columns(["sentiment", "confidence", "confidence_pred"]) == (
        "sentiment_pred",
        "confidence_pred_pred",
    )


def test_analyzed_frame_keeps_columns_and_leaves_skipped_rows_empty() -> None:
    f = frame(id=["1", "2", "3"], text=["good", "", "bad"])
    raw = [{"label": "positive", "confidence": 0.987654}, {"label": "negative", "confidence": 0.6}]
    out = analyzed_frame(f, [0, 2], raw)
    assert list(out.columns) == ["id", "text", "sentiment", "confidence"]
    assert out["sentiment"].tolist() == ["positive", None, "negative"]
    assert out["confidence"][0] == 0.9877 and math.isnan(out["confidence"][1])
    assert to_csv_bytes(out).decode() == (
        "id,text,sentiment,confidence\n1,good,positive,0.9877\n2,,,\n3,bad,negative,0.6\n"
    )
    assert list(f.columns) == ["id", "text"]  # the input is not modified


def test_analyzed_frame_checks_lengths() -> None:
    with pytest.raises(ValueError, match="2 rows scored but 1 predictions"):
        analyzed_frame(frame(text=["a", "b"]), [0, 1], [{"label": "positive", "confidence": 1}])
