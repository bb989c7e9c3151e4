"""The prediction and feedback store on a real PostgreSQL server (the store several replicas
share): round trip, feedback by id and by text, the upsert, labelled pairs, retention, and two
stores on one database, one recording and the other taking the feedback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from loadtests.postgres import PostgresServer
from monitoring.prediction_store import (
    METADATA,
    FeedbackItem,
    FeedbackResult,
    PredictionRecord,
    PredictionStore,
    text_digest,
)
from sentiment.labels import LABEL_NAMES
from tests.integration.conftest import running_postgres

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NEGATIVE, POSITIVE = LABEL_NAMES
DAY = 86_400.0

OpenStore = Callable[..., PredictionStore]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres("predictions", "predictions") as server:
        yield server


@pytest.fixture(scope="module")
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    """The test's own connection, to read what the stores wrote."""
    engine = create_engine(postgres.url.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


@pytest.fixture
def open_store(postgres: PostgresServer, engine: Engine) -> Iterator[OpenStore]:
    """Stores on an empty database (keyword arguments as PredictionStore's), closed at the end."""
    METADATA.drop_all(engine)
    stores: list[PredictionStore] = []

    def make(url: str = postgres.url, **kwargs: Any) -> PredictionStore:
        kwargs.setdefault("flush_interval_s", 60.0)
        store = PredictionStore(url, **kwargs)
        store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def prediction(
    pid: str, created_at: float, *, version: str = "v1", label: str = POSITIVE, text: str = ""
) -> PredictionRecord:
    text = text or f"text of {pid}"
    return PredictionRecord(pid, created_at, version, label, 0.75, len(text), text)


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def stored_ids(engine: Engine) -> list[str]:
    return [row[0] for row in rows(engine, "SELECT id FROM predictions ORDER BY id")]


def feedback_rows(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(engine, "SELECT prediction_id, label FROM feedback ORDER BY prediction_id")


def test_round_trip_and_no_password_in_the_log(
    open_store: OpenStore,
    postgres: PostgresServer,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitoring.prediction_store")
    # trust authentication accepts any password: one that must not reach the log.
    with_password = postgres.url.replace("predictions@", "predictions:s3cret-pw@", 1)
    store = open_store(with_password, store_texts=False)
    assert "prediction store at postgresql+psycopg://predictions:***@127.0.0.1" in caplog.text
    assert "s3cret-pw" not in caplog.text
    now = time.time()
    store.record([prediction("a", now, text="good film"), prediction("b", now + 1, label=NEGATIVE)])
    assert store.flush() == 2
    assert store.flush() == 0
    assert rows(
        engine,
        "SELECT id, created_at, model_version, label, confidence, text_chars, text, text_digest "
        "FROM predictions ORDER BY id",
    ) == [
        ("a", now, "v1", POSITIVE, 0.75, 9, None, text_digest("good film")),
        ("b", now + 1, "v1", NEGATIVE, 0.75, 9, None, text_digest("text of b")),
    ]


def test_feedback_by_id_by_text_and_the_upsert(open_store: OpenStore, engine: Engine) -> None:
    store = open_store()
    now = time.time()
    store.record(
        [
            prediction("by-id", now),
            prediction("old-same-text", now + 1, text="same text"),
            prediction("new-same-text", now + 2, text="same text"),
        ]
    )
    result = store.add_feedback(  # without a flush first: add_feedback flushes
        [
            FeedbackItem(NEGATIVE, prediction_id="by-id"),
            FeedbackItem(POSITIVE, text="same text"),
            FeedbackItem(POSITIVE, prediction_id="no-such-id"),
            FeedbackItem(POSITIVE, text="never scored"),
        ]
    )
    assert result == FeedbackResult(accepted=2, unknown=2)
    assert feedback_rows(engine) == [("by-id", NEGATIVE), ("new-same-text", POSITIVE)]
    assert store.add_feedback([FeedbackItem(POSITIVE, prediction_id="by-id")]).accepted == 1
    assert feedback_rows(engine) == [("by-id", POSITIVE), ("new-same-text", POSITIVE)]


def test_labelled_pairs_and_counts(open_store: OpenStore) -> None:
    store = open_store()
    now = time.time()
    store.record(
        [
            prediction("p1", now, label=POSITIVE),
            prediction("p2", now + 1, label=NEGATIVE),
            prediction("p3", now + 2, label=POSITIVE),
            prediction("q1", now + 3, version="v2", label=NEGATIVE),
        ]
    )
    for pid, true in [("p2", NEGATIVE), ("p1", NEGATIVE), ("q1", POSITIVE), ("p3", POSITIVE)]:
        assert store.add_feedback([FeedbackItem(true, prediction_id=pid)]).accepted == 1
    assert store.labelled("v1", 10) == [
        (POSITIVE, POSITIVE),
        (POSITIVE, NEGATIVE),
        (NEGATIVE, NEGATIVE),
    ]
    assert store.labelled("v1", 1) == [(POSITIVE, POSITIVE)]
    assert store.labelled("v2", 10) == [(NEGATIVE, POSITIVE)]
    assert (store.labelled_count("v1"), store.labelled_count("v2")) == (3, 1)


def test_retention_by_age_and_by_rows(open_store: OpenStore, engine: Engine) -> None:
    store = open_store(max_age_days=30.0, max_rows=2)
    now = time.time()
    store.record(
        [
            prediction("40-days", now - 40 * DAY),
            prediction("3-days", now - 3 * DAY),
            prediction("2-days", now - 2 * DAY),
            prediction("1-day", now - 1 * DAY),
        ]
    )
    items = [FeedbackItem(NEGATIVE, prediction_id=pid) for pid in ("40-days", "3-days", "1-day")]
    assert store.add_feedback(items).accepted == 3
    assert store.apply_retention(now=now) == 2
    assert stored_ids(engine) == ["1-day", "2-days"]
    assert feedback_rows(engine) == [("1-day", NEGATIVE)]
    assert store.apply_retention(now=now) == 0


def test_two_replicas_share_one_database(open_store: OpenStore, engine: Engine) -> None:
    recorder = open_store(flush_interval_s=0.1)
    other = open_store()
    now = time.time()
    recorder.record([prediction(f"r{i}", now + i, label=POSITIVE) for i in range(3)])
    recorder.flush()
    items = [FeedbackItem(NEGATIVE, prediction_id=f"r{i}") for i in range(3)]
    assert other.add_feedback(items) == FeedbackResult(accepted=3, unknown=0)
    # Written by the recorder's own thread, then labelled through the other replica.
    recorder.record([prediction("r3", now + 3, text="late text")])
    deadline = time.monotonic() + 5
    while "r3" not in stored_ids(engine) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert other.add_feedback([FeedbackItem(POSITIVE, text="late text")]).accepted == 1
    assert recorder.labelled("v1", 10) == [(POSITIVE, POSITIVE)] + [(POSITIVE, NEGATIVE)] * 3
    assert other.labelled_count("v1") == recorder.labelled_count("v1") == 4
    assert stored_ids(engine) == ["r0", "r1", "r2", "r3"]
