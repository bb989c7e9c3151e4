"""scoring.spark's pure helpers (no Spark started)."""

from __future__ import annotations

import pytest

from scoring.spark import (
    PIPELINE_BATCH_SIZE,
    ScoringOutcome,
    file_format,
    pick_text_column,
    udf_model_config,
)
from sentiment.config import TrainingConfig
from training.registry import ModelVersion
from training.train import pyfunc_inference_config


def test_file_format_by_suffix() -> None:
    assert file_format("in.csv") == "csv"
    assert file_format("in.TSV") == "tsv"
    assert file_format("out.parquet/") == "parquet"
    assert file_format("s3a://bucket/part.pq") == "parquet"
    with pytest.raises(ValueError, match=r"\.csv, \.tsv or \.parquet"):
        file_format("in.json")


def test_text_column_is_named_or_guessed() -> None:
    assert pick_text_column(["id", "text"], None) == "text"
    assert pick_text_column(["sentence", "text"], None) == "sentence"
    assert pick_text_column(["id", "body"], "body") == "body"
    with pytest.raises(ValueError, match="no column"):
        pick_text_column(["id"], "body")
    with pytest.raises(ValueError, match="--text-column"):
        pick_text_column(["id", "body"], None)


def test_the_pipeline_truncates_like_the_service() -> None:
    version = ModelVersion("sentiment", "3", "abc", "models:/sentiment/3", {"max_length": "64"})
    assert udf_model_config(version) == {
        "truncation": True,
        "max_length": 64,
        "batch_size": PIPELINE_BATCH_SIZE,
    }
    # Only keys the model was logged with can be overridden at load.
    assert set(udf_model_config(version)) == set(pyfunc_inference_config(TrainingConfig()))


def test_rows_per_second() -> None:
    outcome = ScoringOutcome(1000, 4.0, "models:/sentiment@candidate", "1", "local[2]", "o")
    assert outcome.rows_per_second == 250.0
    assert ScoringOutcome(0, 0.0, "u", "1", "m", "o").rows_per_second == 0.0
