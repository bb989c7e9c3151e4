"""evaluation: the statistics on hand-built inputs (scoring), the predictor run (predict), the
files it writes (outputs) and its settings."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.outputs import (
    append_performance_row,
    cache_path,
    format_table,
    mlflow_metrics,
    performance_row,
    write_error_analysis,
)
from evaluation.predict import evaluate_predictor
from evaluation.scoring import (
    EvaluationResult,
    accuracy_by_bucket,
    bucket_index,
    bucket_labels,
    confidence_histogram,
    margins_from_probabilities,
    positive_probability,
    reliability_bins,
    roc_auc,
    score_predictions,
)
from evaluation.settings import EvaluationSection, load_evaluation_config
from sentiment.config import ConfigError
from sentiment.data import LabelledTexts, dataset_slug, read_labelled
from training.registry import ModelVersion

# --- statistics -------------------------------------------------------------------------------


def test_bucket_labels_and_index() -> None:
    assert bucket_labels([3, 5]) == ["1-2", "3-4", "5+"]
    assert [bucket_index(n, [3, 5]) for n in (0, 2, 3, 4, 5, 40)] == [0, 0, 1, 1, 2, 2]
    assert bucket_labels([]) == ["1+"]


def test_accuracy_by_bucket_counts_and_empty_buckets() -> None:
    stats = accuracy_by_bucket([1, 3, 4, 7], [True, False, True, True], [3, 5, 10])
    assert [(s.bucket, s.n, s.accuracy) for s in stats] == [
        ("1-2", 1, 1.0),
        ("3-4", 2, 0.5),
        ("5-9", 1, 1.0),
        ("10+", 0, None),
    ]


def test_roc_auc_exact_values() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([0, 1, 1], [0.2, 0.9, 0.8]) == 1.0
    assert roc_auc([1, 0], [0.2, 0.9]) == 0.0
    # A tie between a positive and a negative counts one half.
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([1, 1], [0.2, 0.9]) is None


def test_reliability_bins_average_each_bin() -> None:
    bins = reliability_bins([0.55, 0.58, 0.95], [True, False, True], 2)
    assert [(b.low, b.high, b.n) for b in bins] == [(0.0, 0.5, 0), (0.5, 1.0, 3)]
    bins = reliability_bins([0.55, 0.58, 0.95], [True, False, True], 4)
    assert bins[2].n == 2
    assert bins[2].confidence == pytest.approx(0.565)
    assert bins[2].accuracy == 0.5
    assert bins[3].n == 1 and bins[3].accuracy == 1.0
    assert bins[0].confidence is None


def test_margins_survive_confident_probabilities() -> None:
    # p_pos has rounded to 1.0 in float64; the margin is still read off p_neg.
    margins = margins_from_probabilities([1.0, 0.5, 0.2], [1e-20, 0.5, 0.8])
    assert margins[0] == pytest.approx(20 * math.log(10))
    assert margins[1] == 0.0
    assert margins[2] == pytest.approx(math.log(0.25))


def test_positive_probability_rescales_temperature() -> None:
    served_t2 = 1 / (1 + math.exp(-1.0))  # p(positive) at T=2 of a raw margin of 2
    margin_t = margins_from_probabilities([served_t2], [1 - served_t2])
    raw = margin_t * 2
    assert positive_probability(raw, 1.0)[0] == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert positive_probability(raw, 2.0)[0] == pytest.approx(served_t2)


def test_score_predictions_on_four_texts() -> None:
    texts = ["good", "bad movie here", "fine i guess", "awful stuff overall really"]
    p_pos = [0.9, 0.2, 0.4, 0.6]
    scored = score_predictions(
        texts, [1, 0, 1, 0], p_pos, [1 - p for p in p_pos], 1.0, edges=[3], n_bins=10
    )
    m = scored["metrics"]
    assert scored["confusion"] == {"tp": 1, "tn": 1, "fp": 1, "fn": 1}
    assert (m["accuracy"], m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5, 0.5)
    assert m["roc_auc"] == 0.75
    # |1-0.9|/4 + |1-0.8|/4 + |0-0.6|*2/4
    assert m["ece_uncalibrated"] == pytest.approx(0.375)
    assert m["ece_calibrated"] == pytest.approx(0.375)
    assert [(b["bucket"], b["n"], b["accuracy"]) for b in scored["buckets"]] == [
        ("1-2", 1, 1.0),
        ("3+", 3, pytest.approx(1 / 3)),
    ]
    errors = scored["errors"]
    assert [(e.text, e.label, e.prediction) for e in errors] == [
        ("fine i guess", "positive", "negative"),
        ("awful stuff overall really", "negative", "positive"),
    ]
    assert errors[0].confidence == pytest.approx(0.6)
    assert errors[0].n_words == 3 and errors[0].bucket == "3+"


def test_score_predictions_undoes_the_served_temperature() -> None:
    # Served at T=2: confidences are softened; at T=1 they are the raw model's.
    raw = np.array([3.0, -1.0])
    served = positive_probability(raw, 2.0)
    scored = score_predictions(
        ["a", "b"], [1, 0], served.tolist(), (1 - served).tolist(), 2.0, edges=[], n_bins=10
    )
    m = scored["metrics"]
    conf_raw = [1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(-1.0))]
    conf_served = [1 / (1 + math.exp(-1.5)), 1 / (1 + math.exp(-0.5))]
    assert m["ece_uncalibrated"] == pytest.approx(_ece(conf_raw))
    assert m["ece_calibrated"] == pytest.approx(_ece(conf_served))
    assert m["temperature"] == 2.0


def _ece(confidences: list[float]) -> float:
    # Every prediction right, each alone in its bin: ECE = mean(1 - confidence).
    return sum(1 - c for c in confidences) / len(confidences)


def test_confidence_histogram_splits_correct_and_wrong() -> None:
    hist = confidence_histogram([0.51, 0.74, 0.76, 0.99, 1.0], [True, False, True, True, False], 2)
    assert hist["edges"] == [0.5, 0.75, 1.0]
    assert hist["correct"] == [1, 2]
    assert hist["wrong"] == [1, 1]


# --- a whole evaluation with a fake model -----------------------------------------------------


def fake_predictor(calls: list[int]):
    """p(positive) from the words 'good' and 'bad'; records each batch size."""

    def predict(texts: list[str]) -> list[tuple[float, float]]:
        calls.append(len(texts))
        out = []
        for text in texts:
            p = 0.9 if "good" in text else 0.2 if "bad" in text else 0.6
            out.append((p, 1 - p))
        return out

    return predict


def make_result(tmp_path: Path | None = None, version: str = "3") -> EvaluationResult:
    data = LabelledTexts(
        ["good film", "bad film", "a good and long film indeed", "meh", "<b>bad</b> & good"],
        [1, 0, 1, 0, 0],
    )
    cfg = EvaluationSection(length_buckets=[3], latency_samples=4, latency_warmup=1)
    calls: list[int] = []
    result = evaluate_predictor(
        fake_predictor(calls),
        data,
        1.0,
        cfg,
        model={
            "name": "sentiment",
            "version": version,
            "uri": "models:/sentiment@candidate",
            "run_id": "abc",
            "label": f"sentiment v{version}",
        },
        dataset={"name": "toy", "path": "/toy.tsv", "sha256": "f" * 64, "n": len(data)},
        runtime_info={"device": "cpu", "quantized": False},
    )
    # One batched pass, one warm-up call, four timed single-text calls.
    assert calls == [5, 1, 1, 1, 1, 1]
    return result


def test_evaluate_predictor_measures_quality_and_latency() -> None:
    result = make_result()
    assert result.metrics["accuracy"] == pytest.approx(3 / 5)
    assert result.confusion == {"tp": 2, "tn": 1, "fp": 2, "fn": 0}
    assert result.latency["single_samples"] == 4
    assert result.latency["single_p50_ms"] >= 0
    assert [e.text for e in result.errors] == ["meh", "<b>bad</b> & good"]
    assert result.bucket_accuracy() == {"1-2": pytest.approx(2 / 3), "3+": 0.5}
    again = EvaluationResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.errors == result.errors
    assert again.metrics == result.metrics


def test_performance_csv_appends_one_row_per_run(tmp_path: Path) -> None:
    path = tmp_path / "results" / "performance_analysis.csv"
    append_performance_row(path, performance_row(make_result(version="1")))
    append_performance_row(path, performance_row(make_result(version="2")))
    rows = list(csv.DictReader(path.open()))
    assert [r["model_version"] for r in rows] == ["1", "2"]
    assert rows[0]["accuracy"] == "0.600000"
    assert json.loads(rows[0]["bucket_accuracy"])["3+"] == 0.5


def test_performance_csv_with_other_columns_keeps_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "performance_analysis.csv"
    path.write_text("evaluated_at,accuracy,old_column\n2020-01-01,0.5,x\n")
    append_performance_row(path, performance_row(make_result()))
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2
    assert rows[0]["old_column"] == "x" and rows[0]["accuracy"] == "0.5"
    assert rows[1]["model_version"] == "3" and rows[1]["old_column"] == ""


def test_error_analysis_lists_every_error_most_confident_first(tmp_path: Path) -> None:
    path = tmp_path / "error_analysis.csv"
    result = make_result()
    write_error_analysis(path, result)
    rows = list(csv.DictReader(path.open()))
    assert [r["text"] for r in rows] == ["<b>bad</b> & good", "meh"]
    assert rows[0]["label"] == "negative" and rows[0]["prediction"] == "positive"
    assert set(rows[0]) >= {"model_version", "confidence", "n_words", "n_chars", "bucket"}


def test_mlflow_metric_keys_are_flat_and_valid() -> None:
    keys = mlflow_metrics(make_result())
    assert keys["eval.toy.accuracy"] == pytest.approx(0.6)
    assert keys["eval.toy.accuracy_words_3plus"] == 0.5
    assert "eval.toy.latency_single_p50_ms" in keys
    assert all(set(k) <= set("abcdefghijklmnopqrstuvwxyz0123456789_.-") for k in keys)


def test_format_table_shows_each_figure() -> None:
    text = format_table(make_result())
    assert "| accuracy | 0.6000 |" in text
    assert "| accuracy, 3+ words (n=2) | 0.5000 |" in text
    assert "latency per text" in text


def test_cache_path_is_keyed_by_version_run_data_and_mode(tmp_path: Path) -> None:
    ref = ModelVersion("sentiment", "3", "0123456789abcdef", "models:/sentiment@candidate")
    data = {"name": "sst2_validation", "sha256": "0123456789abcdef" * 4}
    a = cache_path(tmp_path, ref, data, True)
    assert a.name == "sentiment-v3-0123456789ab__sst2_validation-0123456789ab-served.json"
    assert cache_path(tmp_path, ref, data, False) != a
    # Version 3 of another registry (or of a recreated mlflow.db) is another model.
    other_run = ModelVersion("sentiment", "3", "fedcba9876543210", "models:/sentiment/3")
    assert cache_path(tmp_path, other_run, data, True) != a


# --- inputs -----------------------------------------------------------------------------------


def test_read_labelled_reads_tsv_and_csv(tmp_path: Path) -> None:
    tsv = tmp_path / "a.tsv"
    tsv.write_text("sentence\tlabel\ngood , fine\t1\nbad\t0\n")
    assert read_labelled(tsv).texts == ["good , fine", "bad"]
    data = tmp_path / "b.csv"
    data.write_text('id,sentence,label\n1,"good, really",1\n2,bad,0\n')
    parsed = read_labelled(data)
    assert parsed.texts == ["good, really", "bad"] and parsed.labels == [1, 0]


def test_read_labelled_says_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nx,1\n")
    with pytest.raises(ValueError, match="'sentence' and 'label'"):
        read_labelled(bad)
    bad.write_text("sentence,label\nx,2\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: label must be 0 or 1"):
        read_labelled(bad)
    from sentiment.data import DataUnavailableError

    with pytest.raises(DataUnavailableError):
        read_labelled(tmp_path / "missing.tsv")


def test_dataset_slug() -> None:
    assert dataset_slug("/data/sst2/validation.tsv") == "sst2_validation"
    assert dataset_slug("/x/reviews/amazon.tsv") == "reviews_amazon"
    assert dataset_slug("fresh labels.csv") == "fresh_labels"


def test_evaluation_config_env_overrides_and_checks(tmp_path: Path) -> None:
    cfg = load_evaluation_config(env={"EVAL_MAX_SAMPLES": "50", "RESULTS_DIR": "/tmp/r"})
    assert cfg.evaluation.max_samples == 50
    assert cfg.evaluation.results_dir == "/tmp/r"
    bad = tmp_path / "e.yaml"
    bad.write_text("evaluation:\n  length_buckets: [20, 10]\n")
    with pytest.raises(ConfigError, match="length_buckets"):
        load_evaluation_config(bad, env={})
