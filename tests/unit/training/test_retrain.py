"""training/feedback.py and training/retrain.py: the feedback as training data on hand-built
rows (exact outputs), the read-only query of a real prediction store, the retrain settings, and
the lineage a run records. `python -m training.retrain` for real:
tests/integration/test_retrain_trigger.py."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from monitoring.prediction_store import FeedbackItem, PredictionRecord, PredictionStore
from sentiment.config import ConfigError, RetrainSection, TrainingConfig, load_training_config
from sentiment.data import LabelledTexts, read_labelled
from training.feedback import (
    FeedbackExample,
    FeedbackRow,
    as_labelled,
    dataset_digest,
    deduplicate,
    drop_texts,
    feedback_database_url,
    in_holdout,
    iso_utc,
    prepare_feedback,
    read_feedback_rows,
    safe_url,
    split_holdout,
    time_range,
)
from training.retrain import (
    eval_metrics,
    feedback_summary,
    lineage,
    new_eval_slugs,
    write_holdout,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Six texts whose digests' first 64 bits, as a fraction of 2**64, are (by sha256):
#   awful plot 0.0772, not bad at all 0.2771, a waste of time 0.3281, loved it 0.4908,
#   great film 0.8808, meh 0.9622. Sorted by digest: the same order.
ROWS = [
    FeedbackRow("p1", "great film", "positive", 100.0),
    FeedbackRow("p2", "awful plot", "negative", 101.0),
    # The same text labelled twice: the later label wins.
    FeedbackRow("p3", "not bad at all", "negative", 102.0),
    FeedbackRow("p4", "not bad at all", "positive", 150.0),
    FeedbackRow("p5", "a waste of time", "negative", 103.0),
    # Same time: the larger prediction id wins, whatever the order of the rows.
    FeedbackRow("p7", "loved it", "positive", 104.0),
    FeedbackRow("p6", "loved it", "negative", 104.0),
    FeedbackRow("p8", "meh", "neutral", 105.0),  # not a class: skipped and counted
    FeedbackRow("p9", "meh", "negative", 99.0),
]


def example(text: str, label: int, at: float) -> FeedbackExample:
    return FeedbackExample(sha(text), text, label, at)


DEDUPED = [
    example("awful plot", 0, 101.0),
    example("not bad at all", 1, 150.0),
    example("a waste of time", 0, 103.0),
    example("loved it", 1, 104.0),
    example("great film", 1, 100.0),
    example("meh", 0, 99.0),
]


def test_deduplicate_keeps_the_latest_label_per_text_sorted_by_digest() -> None:
    examples, unknown = deduplicate(ROWS)
    assert examples == DEDUPED
    assert unknown == 1
    # The database's row order does not matter.
    assert deduplicate(list(reversed(ROWS))) == (DEDUPED, 1)


def test_deduplicate_of_nothing() -> None:
    assert deduplicate([]) == ([], 0)


@pytest.mark.parametrize(
    ("fraction", "held_out"),
    [
        (0.0, []),
        (0.05, []),
        (0.3, ["awful plot", "not bad at all"]),
        (0.5, ["awful plot", "not bad at all", "a waste of time", "loved it"]),
        (0.9, ["awful plot", "not bad at all", "a waste of time", "loved it", "great film"]),
        (1.0, ["awful plot", "not bad at all", "a waste of time", "loved it", "great film", "meh"]),
    ],
)
def test_holdout_by_digest(fraction: float, held_out: list[str]) -> None:
    train, holdout = split_holdout(DEDUPED, fraction)
    assert [e.text for e in holdout] == held_out
    assert [e.text for e in train] == [e.text for e in DEDUPED if e.text not in held_out]


def test_the_same_text_always_falls_on_the_same_side() -> None:
    # More feedback, another order, other labels: "awful plot" stays held out at 0.3, "meh" not.
    assert in_holdout(sha("awful plot"), 0.3) and not in_holdout(sha("meh"), 0.3)
    more = [*DEDUPED, example("brand new text", 1, 200.0)][::-1]
    _, holdout = split_holdout(more, 0.3)
    assert {"awful plot", "not bad at all"} <= {e.text for e in holdout}
    assert "meh" not in {e.text for e in holdout}
    with pytest.raises(ValueError):
        in_holdout(sha("x"), 1.5)


def test_time_range_and_iso() -> None:
    assert time_range(DEDUPED) == (99.0, 150.0)
    assert time_range([]) is None
    assert iso_utc(0.0) == "1970-01-01T00:00:00+00:00"
    assert iso_utc(1_700_000_000.0) == "2023-11-14T22:13:20+00:00"


def test_drop_texts_of_the_evaluation_split() -> None:
    kept, dropped = drop_texts(DEDUPED, ["meh", "something else", "loved it"])
    assert [e.text for e in kept] == [
        "awful plot",
        "not bad at all",
        "a waste of time",
        "great film",
    ]
    assert dropped == 2


def test_prepare_feedback_end_to_end_on_rows() -> None:
    data, excluded = prepare_feedback(ROWS, 0.3, exclude_texts=["great film"])
    assert excluded == 1
    assert data.rows_read == 9 and data.unknown_labels == 1
    assert [e.text for e in data.examples] == [
        "awful plot",
        "not bad at all",
        "a waste of time",
        "loved it",
        "meh",
    ]
    assert [(e.text, e.label) for e in data.holdout] == [("awful plot", 0), ("not bad at all", 1)]
    assert [(e.text, e.label) for e in data.train] == [
        ("a waste of time", 0),
        ("loved it", 1),
        ("meh", 0),
    ]
    summary = feedback_summary(data, excluded, textless=4)
    assert summary == {
        "labels_read": 9,
        "labels_without_text": 4,
        "unknown_labels": 1,
        "texts": 5,
        "dropped_in_eval_split": 1,
        "train": 3,
        "holdout": 2,
        "first_label_at": "1970-01-01T00:01:39+00:00",
        "last_label_at": "1970-01-01T00:02:30+00:00",
    }


def test_dataset_digest_is_of_texts_and_labels_in_order() -> None:
    data = as_labelled(DEDUPED[:2])
    assert data == LabelledTexts(["awful plot", "not bad at all"], [0, 1])
    expected = hashlib.sha256(b'["awful plot", 0]\n["not bad at all", 1]\n').hexdigest()[:32]
    assert dataset_digest(data) == expected
    assert dataset_digest(LabelledTexts(["not bad at all", "awful plot"], [1, 0])) != expected
    assert dataset_digest(LabelledTexts(["awful plot", "not bad at all"], [1, 1])) != expected
    assert dataset_digest(LabelledTexts([], [])) == hashlib.sha256(b"").hexdigest()[:32]


def test_eval_metric_helpers() -> None:
    before = {"best_f1": 0.8}
    after = {
        "best_f1": 0.8,
        "eval.sst2_validation.accuracy": 0.81,
        "eval.sst2_validation.f1": 0.82,
        "eval.feedback_holdout.accuracy": 0.7,
    }
    assert new_eval_slugs(before, after) == ["feedback_holdout", "sst2_validation"]
    assert eval_metrics(after, "sst2_validation") == {"accuracy": 0.81, "f1": 0.82}


def test_write_holdout_reads_back_with_awkward_texts(tmp_path: Path) -> None:
    data = LabelledTexts(['tab\there, "quoted"', "two\nlines", "plain"], [1, 0, 1])
    path = write_holdout(data, tmp_path)
    assert path == tmp_path / "feedback" / "holdout.csv"
    assert read_labelled(path) == data


# --- the prediction store, for real -----------------------------------------------------------


def fill_store(url: str, store_texts: bool = True) -> None:
    store = PredictionStore(url, store_texts=store_texts)
    store.start()
    try:
        store.record(
            [
                PredictionRecord("a", 10.0, "v1", "positive", 0.9, 10, "great film"),
                PredictionRecord("b", 11.0, "v1", "positive", 0.6, 10, "awful plot"),
                PredictionRecord("c", 12.0, "v1", "negative", 0.7, 3, "meh"),
                PredictionRecord("d", 13.0, "v1", "negative", 0.7, 5, "unlabelled"),
            ]
        )
        result = store.add_feedback(
            [
                FeedbackItem("positive", prediction_id="a"),
                FeedbackItem("negative", prediction_id="b"),
                FeedbackItem("positive", text="meh"),
            ]
        )
        assert result.accepted == 3
    finally:
        store.close()


def test_read_feedback_rows_from_a_real_store(tmp_path: Path) -> None:
    db = tmp_path / "feedback" / "predictions.sqlite3"
    url = f"sqlite:///{db}"
    fill_store(url)
    before = db.read_bytes()
    rows, textless = read_feedback_rows(url)
    assert textless == 0
    assert sorted((r.prediction_id, r.text, r.label) for r in rows) == [
        ("a", "great film", "positive"),
        ("b", "awful plot", "negative"),
        ("c", "meh", "positive"),
    ]
    assert all(r.labelled_at > 1_000_000_000 for r in rows)
    assert db.read_bytes() == before  # read-only


def test_labels_without_a_stored_text_are_counted_not_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    fill_store(url, store_texts=False)
    assert read_feedback_rows(url) == ([], 3)


def test_a_missing_store_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "none" / "predictions.sqlite3"
    assert read_feedback_rows(f"sqlite:///{db}") == ([], 0)
    assert not db.exists() and not db.parent.exists()


def test_a_store_without_tables_holds_no_feedback(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite3"
    sqlite3.connect(db).close()
    assert read_feedback_rows(f"sqlite:///{db}") == ([], 0)


def test_the_database_is_found_as_the_service_finds_it(tmp_path: Path) -> None:
    home = tmp_path / "bentoml"
    assert feedback_database_url("", "", home) == f"sqlite:///{home}/feedback/predictions.sqlite3"
    assert feedback_database_url("", "/srv/p.db", home) == "sqlite:////srv/p.db"
    assert feedback_database_url("postgresql://u:pw@db/f", "/srv/p.db", home) == (
        "postgresql://u:pw@db/f"
    )
    assert safe_url("postgresql://u:pw@db/f") == "postgresql://u:***@db/f"


# --- settings and lineage ---------------------------------------------------------------------


def test_retrain_settings_and_their_environment_names(tmp_path: Path) -> None:
    config = tmp_path / "t.yaml"
    config.write_text("retrain:\n  holdout_fraction: 0.1\n")
    cfg = load_training_config(config, env={})
    assert cfg.retrain == RetrainSection(holdout_fraction=0.1, min_feedback=1, feedback_database="")
    env = {
        "RETRAIN_HOLDOUT_FRACTION": "0.25",
        "RETRAIN_MIN_FEEDBACK": "0",
        "SENTIMENT_FEEDBACK_DATABASE": "/data/p.sqlite3",
    }
    cfg = load_training_config(config, env=env)
    assert cfg.retrain == RetrainSection(
        holdout_fraction=0.25, min_feedback=0, feedback_database="/data/p.sqlite3"
    )
    with pytest.raises(ConfigError, match=r"retrain\.holdout_fraction"):
        load_training_config(config, env={"RETRAIN_HOLDOUT_FRACTION": "1"})


def test_lineage_names_every_dataset_with_its_digest(tmp_path: Path) -> None:
    (tmp_path / "validation.tsv").write_text("sentence\tlabel\nx\t1\n")
    cfg = TrainingConfig.model_validate(
        {"data": {"data_dir": str(tmp_path)}, "retrain": {"holdout_fraction": 0.3}}
    )
    data, excluded = prepare_feedback(ROWS, 0.3)
    summary = feedback_summary(data, excluded, 0)
    sst2 = LabelledTexts(["a", "b"], [0, 1])
    evaluation = LabelledTexts(["x"], [1])
    datasets, params, tags = lineage(cfg, sst2, evaluation, data, summary, "sqlite:////db")
    assert [(d.name, d.context, len(d.texts)) for d in datasets] == [
        ("sst2_train", "training", 2),
        ("feedback_train", "training", 4),
        ("feedback_holdout", "evaluation", 2),
        ("sst2_validation", "evaluation", 1),
    ]
    assert datasets[0].source == str(tmp_path / "train.tsv")
    assert datasets[1].source == "sqlite:////db"
    assert datasets[2].digest == dataset_digest(as_labelled(data.holdout))
    assert params["data.feedback_holdout.digest"] == datasets[2].digest
    assert params["feedback.texts"] == 6 and params["feedback.holdout"] == 2
    assert params["feedback.first_label_at"] == "1970-01-01T00:01:39+00:00"
    assert params["feedback.holdout_fraction"] == 0.3
    assert tags == {
        "sentiment.run_kind": "retrain",
        "retrain.feedback_count": "6",
        "retrain.feedback_from": "1970-01-01T00:01:39+00:00",
        "retrain.feedback_to": "1970-01-01T00:02:30+00:00",
    }


def test_lineage_is_logged_into_the_run_and_read_back(tmp_path: Path) -> None:
    import mlflow

    from training.registry import LineageDataset, Registry, log_lineage

    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("lineage")
    datasets = [
        LineageDataset("sst2_train", "training", str(tmp_path / "train.tsv"), ["b"], [0], "e" * 32),
        LineageDataset("feedback_holdout", "evaluation", "sqlite:////db", ["a"], [1], "d" * 32),
    ]
    with mlflow.start_run() as run:
        log_lineage(datasets, {"feedback.texts": 1}, {"sentiment.run_kind": "retrain"})
    registry.log_run_metrics(run.info.run_id, {"feedback_holdout_accuracy": 0.75})
    record = registry.run_record(run.info.run_id)
    assert record.params == {"feedback.texts": "1"}
    assert record.tags["sentiment.run_kind"] == "retrain"
    assert record.metrics == {"feedback_holdout_accuracy": 0.75}
    found = {d["name"]: d for d in record.datasets}
    assert found["sst2_train"]["digest"] == "e" * 32
    assert found["sst2_train"]["context"] == "training"
    assert found["sst2_train"]["source_type"] == "local"
    assert found["feedback_holdout"]["context"] == "evaluation"
    assert found["feedback_holdout"]["source_type"] == "code"
    assert "sqlite:////db" in found["feedback_holdout"]["source"]
    assert '"num_rows": 1' in found["feedback_holdout"]["profile"]
