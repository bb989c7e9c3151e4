"""The prediction and feedback store on SQLite files in tmp_path: exact rows, feedback by id and
by text, labelled pairs, retention, the bounded buffer, the writer thread, and what a kill -9
keeps."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from monitoring.prediction_store import (
    CHUNK,
    METADATA,
    FeedbackItem,
    FeedbackResult,
    PredictionRecord,
    PredictionStore,
    ShadowPair,
    ShadowRecord,
    database_url,
    text_digest,
)
from sentiment.labels import LABEL_NAMES

NEGATIVE, POSITIVE = LABEL_NAMES
ROOT = Path(__file__).resolve().parents[3]
DAY = 86_400.0
T0 = 1_700_000_000.0  # a fixed "now" for rows whose times matter


def prediction(
    pid: str,
    created_at: float = T0,
    *,
    version: str = "v1",
    label: str = POSITIVE,
    text: str | None = None,
    confidence: float = 0.75,
) -> PredictionRecord:
    text = f"text of {pid}" if text is None else text
    return PredictionRecord(pid, created_at, version, label, confidence, len(text), text)


def db_file(tmp_path: Path) -> Path:
    return tmp_path / "db" / "predictions.sqlite3"


def query(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql, args))


def prediction_rows(path: Path) -> list[tuple[object, ...]]:
    return query(
        path,
        "SELECT id, created_at, model_version, label, confidence, text_chars, text, text_digest "
        "FROM predictions ORDER BY id",
    )


def feedback_rows(path: Path) -> list[tuple[object, ...]]:
    return query(path, "SELECT prediction_id, label FROM feedback ORDER BY prediction_id")


def stored_ids(path: Path) -> list[str]:
    return [str(row[0]) for row in query(path, "SELECT id FROM predictions ORDER BY id")]


OpenStore = Callable[..., PredictionStore]


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    """Starts stores on the test's file (keyword arguments as PredictionStore's) and closes
    them all at the end."""
    stores: list[PredictionStore] = []

    def make(**kwargs: Any) -> PredictionStore:
        kwargs.setdefault("flush_interval_s", 60.0)  # the tests flush, unless they test the thread
        store = PredictionStore(database_url(str(db_file(tmp_path)), tmp_path), **kwargs)
        store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> PredictionStore:
    return open_store()


# --- URLs and digests ------------------------------------------------------------------------


def test_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert database_url("", Path("/srv/data")) == "sqlite:////srv/data/predictions.sqlite3"
    url = "postgresql://user:secret@db:5432/predictions"
    assert database_url(url, Path("/srv/data")) == url
    assert database_url("sqlite:///relative.db", Path("/x")) == "sqlite:///relative.db"
    assert database_url("stores/p.db", Path("/x")) == f"sqlite:///{tmp_path}/stores/p.db"
    assert database_url("/abs/p.db", Path("/x")) == "sqlite:////abs/p.db"


def test_text_digest_is_sha256_of_utf8() -> None:
    assert text_digest("héllo") == hashlib.sha256("héllo".encode()).hexdigest()
    assert text_digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_nothing_happens_before_start(tmp_path: Path) -> None:
    store = PredictionStore(database_url("", tmp_path / "not-yet"))
    store.record([prediction("a")])
    assert store.pending == 1
    assert not (tmp_path / "not-yet").exists()
    with pytest.raises(RuntimeError, match="start"):
        store.flush()
    store.close()
    store.close()


# --- predictions -----------------------------------------------------------------------------


def test_record_and_flush_round_trip(store: PredictionStore, tmp_path: Path) -> None:
    store.record([prediction("a", T0 + 1, text="good film"), prediction("b", T0 + 2)])
    store.record([prediction("c", T0 + 3, version="v2", label=NEGATIVE, confidence=0.5)])
    assert store.pending == 3
    assert prediction_rows(db_file(tmp_path)) == []
    assert store.flush() == 3
    assert store.pending == 0
    assert store.flush() == 0
    assert prediction_rows(db_file(tmp_path)) == [
        ("a", T0 + 1, "v1", POSITIVE, 0.75, 9, "good film", text_digest("good film")),
        ("b", T0 + 2, "v1", POSITIVE, 0.75, 9, "text of b", text_digest("text of b")),
        ("c", T0 + 3, "v2", NEGATIVE, 0.5, 9, "text of c", text_digest("text of c")),
    ]
    assert query(db_file(tmp_path), "PRAGMA journal_mode") == [("wal",)]
    assert store.dropped == 0


def test_an_id_already_stored_is_not_written_twice(store: PredictionStore, tmp_path: Path) -> None:
    store.record([prediction("a", T0 + 1), prediction("a", T0 + 2)])
    assert store.flush() == 1
    store.record([prediction("a", T0 + 3), prediction("b")])
    assert store.flush() == 1
    assert query(db_file(tmp_path), "SELECT id, created_at FROM predictions ORDER BY id") == [
        ("a", T0 + 1),
        ("b", T0),
    ]


def test_without_texts_only_the_digest_is_kept_and_feedback_by_text_still_works(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = open_store(store_texts=False)
    store.record([prediction("a", text="a private review")])
    assert store.flush() == 1
    assert query(db_file(tmp_path), "SELECT text, text_digest, text_chars FROM predictions") == [
        (None, text_digest("a private review"), 16)
    ]
    result = store.add_feedback([FeedbackItem(NEGATIVE, text="a private review")])
    assert result == FeedbackResult(accepted=1, unknown=0)
    assert feedback_rows(db_file(tmp_path)) == [("a", NEGATIVE)]


# --- feedback --------------------------------------------------------------------------------


def test_feedback_by_id_by_text_and_unknown(store: PredictionStore, tmp_path: Path) -> None:
    store.record(
        [
            prediction("by-id", T0),
            prediction("old-same-text", T0 + 1, text="same text"),
            prediction("new-same-text", T0 + 2, text="same text"),
        ]
    )
    store.flush()
    result = store.add_feedback(
        [
            FeedbackItem(NEGATIVE, prediction_id="by-id"),
            FeedbackItem(POSITIVE, text="same text"),
            FeedbackItem(POSITIVE, prediction_id="no-such-id"),
            FeedbackItem(POSITIVE, text="a text never scored"),
            FeedbackItem(POSITIVE),
        ]
    )
    assert result == FeedbackResult(accepted=2, unknown=3)
    assert feedback_rows(db_file(tmp_path)) == [("by-id", NEGATIVE), ("new-same-text", POSITIVE)]


def test_an_id_wins_over_a_text(store: PredictionStore, tmp_path: Path) -> None:
    store.record([prediction("a", text="first"), prediction("b", text="second")])
    result = store.add_feedback([FeedbackItem(NEGATIVE, prediction_id="a", text="second")])
    assert result == FeedbackResult(accepted=1, unknown=0)
    assert feedback_rows(db_file(tmp_path)) == [("a", NEGATIVE)]


def test_a_second_label_replaces_the_first(store: PredictionStore, tmp_path: Path) -> None:
    store.record([prediction("a")])
    assert store.add_feedback([FeedbackItem(POSITIVE, prediction_id="a")]).accepted == 1
    [(first_time,)] = query(db_file(tmp_path), "SELECT created_at FROM feedback")
    time.sleep(0.01)
    assert store.add_feedback([FeedbackItem(NEGATIVE, prediction_id="a")]).accepted == 1
    [(label, second_time)] = query(db_file(tmp_path), "SELECT label, created_at FROM feedback")
    assert label == NEGATIVE
    assert float(second_time) > float(first_time)  # type: ignore[arg-type]
    # In one request, the later item for the same prediction wins.
    both = [FeedbackItem(POSITIVE, prediction_id="a"), FeedbackItem(NEGATIVE, text="text of a")]
    assert store.add_feedback(both) == FeedbackResult(accepted=2, unknown=0)
    assert feedback_rows(db_file(tmp_path)) == [("a", NEGATIVE)]


def test_feedback_right_after_record_finds_the_prediction(
    store: PredictionStore, tmp_path: Path
) -> None:
    store.record([prediction("just-answered")])
    result = store.add_feedback([FeedbackItem(NEGATIVE, prediction_id="just-answered")])
    assert result == FeedbackResult(accepted=1, unknown=0)
    assert store.pending == 0
    assert feedback_rows(db_file(tmp_path)) == [("just-answered", NEGATIVE)]


def test_an_unknown_label_is_refused_and_nothing_is_stored(
    store: PredictionStore, tmp_path: Path
) -> None:
    store.record([prediction("a")])
    store.flush()
    items = [FeedbackItem(POSITIVE, prediction_id="a"), FeedbackItem("neutral", prediction_id="a")]
    with pytest.raises(ValueError, match="neutral"):
        store.add_feedback(items)
    assert feedback_rows(db_file(tmp_path)) == []


def test_labelled_pairs_newest_feedback_first(store: PredictionStore) -> None:
    store.record(
        [
            prediction("p1", T0 + 1, label=POSITIVE),
            prediction("p2", T0 + 2, label=NEGATIVE),
            prediction("p3", T0 + 3, label=POSITIVE),
            prediction("p4", T0 + 4, label=NEGATIVE),  # never labelled
            prediction("q1", T0 + 5, version="v2", label=NEGATIVE),
        ]
    )
    # One request each, oldest first: the feedback times increase.
    for pid, true in [("p2", NEGATIVE), ("p1", NEGATIVE), ("q1", POSITIVE), ("p3", POSITIVE)]:
        assert store.add_feedback([FeedbackItem(true, prediction_id=pid)]).accepted == 1
    assert store.labelled("v1", 10) == [
        (POSITIVE, POSITIVE),  # p3
        (POSITIVE, NEGATIVE),  # p1
        (NEGATIVE, NEGATIVE),  # p2
    ]
    assert store.labelled("v1", 2) == [(POSITIVE, POSITIVE), (POSITIVE, NEGATIVE)]
    assert store.labelled("v1", 0) == []
    assert store.labelled("v2", 10) == [(NEGATIVE, POSITIVE)]
    assert store.labelled("v3", 10) == []
    assert store.labelled_count("v1") == 3
    assert store.labelled_count("v2") == 1
    assert store.labelled_count("v3") == 0


def test_labelled_reads_past_pages_of_other_versions_feedback(store: PredictionStore) -> None:
    served = [prediction(f"v1-{i}", T0 + i, label=POSITIVE) for i in range(3)]
    # More labels of another version than one page (CHUNK), all given after the served ones.
    others = [prediction(f"v2-{i}", T0 + i, version="v2") for i in range(CHUNK + 20)]
    store.record(served + others)
    for item in served:
        store.add_feedback([FeedbackItem(NEGATIVE, prediction_id=item.id)])
    store.add_feedback([FeedbackItem(POSITIVE, prediction_id=o.id) for o in others])
    assert store.labelled("v1", 10) == [(POSITIVE, NEGATIVE)] * 3
    assert store.labelled("v1", 2) == [(POSITIVE, NEGATIVE)] * 2
    assert len(store.labelled("v2", CHUNK + 100)) == CHUNK + 20


# --- retention -------------------------------------------------------------------------------


def test_retention_by_age_deletes_the_feedback_too(open_store: OpenStore, tmp_path: Path) -> None:
    store = open_store(max_age_days=30.0)
    store.record(
        [
            prediction("40-days", T0 - 40 * DAY),
            prediction("31-days", T0 - 31 * DAY),
            prediction("29-days", T0 - 29 * DAY),
            prediction("1-day", T0 - 1 * DAY),
        ]
    )
    items = [FeedbackItem(NEGATIVE, prediction_id=pid) for pid in ("40-days", "1-day")]
    assert store.add_feedback(items).accepted == 2
    assert store.apply_retention(now=T0) == 2
    assert stored_ids(db_file(tmp_path)) == ["1-day", "29-days"]
    assert feedback_rows(db_file(tmp_path)) == [("1-day", NEGATIVE)]
    assert store.apply_retention(now=T0) == 0


def test_retention_by_row_count_keeps_the_newest(open_store: OpenStore, tmp_path: Path) -> None:
    store = open_store(max_rows=3, max_age_days=10_000.0)
    store.record(
        [
            prediction("r1", T0 + 1),
            prediction("r2a", T0 + 2),
            prediction("r2b", T0 + 2),  # same time as r2a: the id breaks the tie
            prediction("r3", T0 + 3),
            prediction("r4", T0 + 4),
        ]
    )
    items = [FeedbackItem(POSITIVE, prediction_id=pid) for pid in ("r1", "r2a", "r4")]
    assert store.add_feedback(items).accepted == 3
    assert store.apply_retention(now=T0 + 5) == 2
    assert stored_ids(db_file(tmp_path)) == ["r2b", "r3", "r4"]
    assert feedback_rows(db_file(tmp_path)) == [("r4", POSITIVE)]
    assert store.apply_retention(now=T0 + 5) == 0


# --- the buffer and the writer thread ---------------------------------------------------------


def test_the_pending_buffer_is_bounded(open_store: OpenStore, tmp_path: Path) -> None:
    store = open_store(max_pending=64)
    store.record([prediction(f"a{i:03d}") for i in range(50)])
    assert (store.pending, store.dropped) == (50, 0)
    store.record([prediction(f"b{i:03d}") for i in range(30)])
    assert (store.pending, store.dropped) == (64, 16)
    store.record([prediction("c")])
    assert (store.pending, store.dropped) == (64, 17)
    assert store.flush() == 64
    expected = [f"a{i:03d}" for i in range(50)] + [f"b{i:03d}" for i in range(14)]
    assert stored_ids(db_file(tmp_path)) == expected


def test_the_writer_thread_flushes_by_itself(open_store: OpenStore, tmp_path: Path) -> None:
    interval = 0.1
    store = open_store(flush_interval_s=interval)
    recorded = time.monotonic()
    store.record([prediction(f"p{i}") for i in range(5)])
    while len(stored_ids(db_file(tmp_path))) < 5 and time.monotonic() - recorded < 5:
        time.sleep(0.01)
    waited = time.monotonic() - recorded
    assert stored_ids(db_file(tmp_path)) == [f"p{i}" for i in range(5)]
    # Two intervals, and some slack for a busy machine.
    assert waited < 2 * interval + 0.3, f"written after {waited:.2f} s"
    assert store.pending == 0


def test_a_failed_write_keeps_the_rows_and_is_retried(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="monitoring.prediction_store")
    store = open_store(flush_interval_s=0.1)
    query(db_file(tmp_path), "DROP TABLE predictions")
    store.record([prediction("kept-1"), prediction("kept-2")])
    deadline = time.monotonic() + 5
    while "writing predictions failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "writing predictions failed (1 in a row) (2 predictions pending)" in caplog.text
    assert (store.pending, store.dropped) == (2, 0)
    engine = create_engine(f"sqlite:///{db_file(tmp_path)}")
    METADATA.create_all(engine)
    engine.dispose()
    # Polled in the database, not on `pending`: a retry in flight has taken the rows out of the
    # buffer (pending reads 0) and puts them back if it began before the table was back.
    deadline = time.monotonic() + 30
    while stored_ids(db_file(tmp_path)) != ["kept-1", "kept-2"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored_ids(db_file(tmp_path)) == ["kept-1", "kept-2"]
    assert (store.pending, store.dropped) == (0, 0)


def test_data_survives_close_and_a_new_store(open_store: OpenStore, tmp_path: Path) -> None:
    first = open_store()
    now = time.time()  # start() applies retention by the clock: recent rows
    first.record([prediction("a", now, label=NEGATIVE), prediction("b", now)])
    first.close()  # writes what is pending
    first.close()
    assert stored_ids(db_file(tmp_path)) == ["a", "b"]
    second = open_store()
    result = second.add_feedback([FeedbackItem(POSITIVE, prediction_id="a")])
    assert result == FeedbackResult(accepted=1, unknown=0)
    assert second.labelled("v1", 10) == [(NEGATIVE, POSITIVE)]
    assert second.labelled_count("v1") == 1


CHILD = """
import sys, time
from monitoring.prediction_store import PredictionRecord, PredictionStore

store = PredictionStore(sys.argv[1], flush_interval_s=float(sys.argv[2]))
store.start()
now = time.time()
store.record([PredictionRecord(f"early-{i:02d}", now, "v1", "positive", 0.9, 4, "text")
              for i in range(50)])
print("recorded", flush=True)
i = 0
while True:
    pid = f"late-{i:04d}"
    store.record([PredictionRecord(pid, time.time(), "v1", "positive", 0.9, 4, "text")])
    print(pid, time.time(), flush=True)
    i += 1
    time.sleep(0.01)
"""


@pytest.mark.timeout(60)
def test_a_kill_9_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    interval = 0.2
    url = database_url("", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(interval)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "recorded\n"
        time.sleep(1.0)
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        late = [line.split() for line in child.stdout.read().splitlines()]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    path = tmp_path / "predictions.sqlite3"
    ids = stored_ids(path)
    assert [pid for pid in ids if pid.startswith("early-")] == [f"early-{i:02d}" for i in range(50)]
    # Recorded more than one interval before the kill (plus an interval of slack for a busy
    # machine): written.
    old_enough = [pid for pid, at in late if float(at) < killed_at - 2 * interval]
    assert len(old_enough) > 20
    stored_late = {pid for pid in ids if pid.startswith("late-")}
    assert set(old_enough) <= stored_late, sorted(set(old_enough) - stored_late)[:5]
    assert query(path, "PRAGMA integrity_check") == [("ok",)]


def test_shadow_predictions_pair_with_the_served_label_and_feedback(
    store: PredictionStore,
) -> None:
    store.record([prediction("a", label=POSITIVE), prediction("b", label=NEGATIVE)])
    store.record([prediction("c", label=NEGATIVE)])
    store.flush()
    shadow = [
        ShadowRecord("a", "v2", NEGATIVE, 0.6, T0 + 1),
        ShadowRecord("b", "v2", NEGATIVE, 0.9, T0 + 2),
        ShadowRecord("c", "v3", POSITIVE, 0.7, T0 + 3),
    ]
    assert store.add_shadow(shadow) == 3
    assert store.add_shadow(shadow[:1]) == 0  # a retried batch is not stored twice
    store.add_feedback([FeedbackItem(NEGATIVE, "a")])
    assert store.shadow_pairs("v2", 10) == [
        ShadowPair(NEGATIVE, NEGATIVE, None),
        ShadowPair(POSITIVE, NEGATIVE, NEGATIVE),
    ]
    assert store.shadow_pairs("v2", 1) == [ShadowPair(NEGATIVE, NEGATIVE, None)]
    assert store.shadow_pairs("v3", 10) == [ShadowPair(NEGATIVE, POSITIVE, None)]
    assert store.shadow_pairs("v9", 10) == []


def test_retention_removes_the_shadows_of_deleted_predictions(open_store: OpenStore) -> None:
    store = open_store(max_age_days=1)
    store.record([prediction("old", T0 - 3 * DAY), prediction("new", T0)])
    store.flush()
    store.add_shadow([ShadowRecord(p, "v2", NEGATIVE, 0.6, T0) for p in ("old", "new")])
    store.apply_retention(now=T0)
    assert store.shadow_pairs("v2", 10) == [ShadowPair(POSITIVE, NEGATIVE, None)]
