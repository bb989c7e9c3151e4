"""data/sample_reviews.csv: the hand-written sample for the batch tab loads as the tab reads it."""

from __future__ import annotations

from sentiment.config import PROJECT_ROOT
from sentiment.labels import LABEL_NAMES
from ui.tables import guess_text_column, parse_csv, texts_to_score

SAMPLE = PROJECT_ROOT / "data" / "sample_reviews.csv"


def test_the_sample_loads_in_the_batch_tab_with_its_text_column_found() -> None:
    upload = parse_csv(SAMPLE.read_bytes(), SAMPLE.name, max_rows=1000)
    frame = upload.frame
    assert len(frame) == 30 and list(frame.columns) == ["text", "label"]
    assert guess_text_column(frame) == "text"
    texts, rows = texts_to_score(frame, "text")
    assert len(texts) == 30 and rows == list(range(30))
    assert set(frame["label"]) == set(LABEL_NAMES)
    assert (frame["label"] == "positive").sum() == 15


def test_the_original_sample_path_reads_the_same_file() -> None:
    original = PROJECT_ROOT / "data" / "sample_data.csv"
    assert original.read_bytes() == SAMPLE.read_bytes()
