"""The prediction and feedback store: every prediction the service makes, and every true label
users send back, in a database (SQLAlchemy Core).

- **Predictions: a writer thread, in batches.** `record()` runs on the request path: it only
  appends to a bounded in-memory buffer under a lock (no I/O, no hashing), so a slow or
  unreachable database never slows a prediction down. A daemon thread writes the buffer every
  `flush_interval_s` in one transaction. When the buffer is full (the database is down or too
  slow), new predictions are dropped and counted (`dropped`) rather than growing memory without
  bound; a failed write puts its rows back at the head of the buffer and is retried next round
  (logged, never raised into the service). A row the database refuses for its content (an
  integrity or data error) would fail every retry, so that batch alone is dropped, counted and
  logged.
- **What a `kill -9` loses.** The predictions still in the buffer: at most those of about the
  last `flush_interval_s` (plus the time of the write in progress). Everything committed before
  stays: SQLite in WAL mode with `synchronous=NORMAL` loses no committed transaction when the
  process dies (only a power cut or an OS crash can lose the last ones), PostgreSQL none at all.
- **Feedback: accepted means committed.** `add_feedback()` blocks (the caller runs it in a
  thread): it first flushes the buffer, so that the id of a prediction answered a moment ago is
  found, then resolves every item and upserts the labels in one transaction, and returns only
  after the commit. A client told "accepted" can rely on the label being stored.
- **One row per prediction.** A second label for the same prediction replaces the first (delete
  then insert in the same transaction: portable, no dialect-specific upsert). Feedback can name
  the prediction by id, or by its text: the latest prediction whose SHA-256 digest
  (`text_digest`) matches, which works even when the texts themselves are not stored.
- **Databases.** Embedded SQLite by default, in WAL mode (readers never block the writer, and
  several worker processes can share the file, `busy_timeout` serialising their writes), or any
  SQLAlchemy URL: PostgreSQL when several replicas share one store (a `postgresql://` URL uses
  the psycopg 3 driver). Tables are created on `start()` when missing.
- **Retention.** Predictions older than `max_age_days`, and beyond the newest `max_rows`, are
  deleted with their feedback: on `start()` and then every `retention_interval_s` by the writer
  thread.

Nothing here runs at import time; the URL's password is never logged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    exc,
    exists,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url

from sentiment.labels import LABEL_NAMES

logger = logging.getLogger("monitoring.prediction_store")

DEFAULT_FILE_NAME = "predictions.sqlite3"
SECONDS_PER_DAY = 86_400.0
# Ids per `IN (...)` and rows per INSERT: well under SQLite's limit on bound parameters.
CHUNK = 500
# How long a SQLite connection waits for another process's write lock, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# A failure that repeats is logged again at most this often (the writer retries every round).
ERROR_LOG_INTERVAL_S = 60.0
# close() waits this long for the writer thread's write in progress.
CLOSE_JOIN_TIMEOUT_S = 30.0
# create_all is not atomic: replicas starting together can race; the loser retries.
CREATE_ATTEMPTS = 3

METADATA = MetaData()

PREDICTIONS = Table(
    "predictions",
    METADATA,
    Column("id", String(128), primary_key=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("model_version", String(255), nullable=False, index=True),
    Column("label", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("text_chars", Integer, nullable=False),
    Column("text", Text, nullable=True),
    Column("text_digest", String(64), nullable=True, index=True),
)

FEEDBACK = Table(
    "feedback",
    METADATA,
    Column("prediction_id", String(128), primary_key=True),
    Column("label", String(64), nullable=False),
    Column("created_at", Float, nullable=False, index=True),
)

# What a challenger model in shadow said about a served prediction (serving/shadow.py).
SHADOW = Table(
    "shadow_predictions",
    METADATA,
    Column("prediction_id", String(128), primary_key=True),
    Column("model_version", String(255), primary_key=True),
    Column("label", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("created_at", Float, nullable=False, index=True),
)


def database_url(value: str, default_dir: Path) -> str:
    """The SQLAlchemy URL of a setting: empty for the default SQLite file in `default_dir`, a
    URL as it is, anything else a SQLite file path (made absolute)."""
    if not value:
        return f"sqlite:///{default_dir / DEFAULT_FILE_NAME}"
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().absolute()}"


def text_digest(text: str) -> str:
    """SHA-256 (hex) of the UTF-8 text: finds a prediction by its text without storing it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PredictionRecord:
    id: str
    created_at: float  # unix seconds
    model_version: str
    label: str  # the predicted label's name
    confidence: float
    text_chars: int
    # The text scored. With store_texts=False the store keeps only its digest (text_digest),
    # which still finds the prediction from feedback by text; None: no text, no digest.
    text: str | None


@dataclass(frozen=True)
class FeedbackItem:
    label: str  # the true label's name
    prediction_id: str | None = None
    text: str | None = None  # only when prediction_id is None: the latest prediction of it


@dataclass(frozen=True)
class ShadowRecord:
    prediction_id: str  # the served prediction it shadows
    model_version: str  # the challenger's
    label: str
    confidence: float
    created_at: float


@dataclass(frozen=True)
class ShadowPair:
    """One shadowed prediction: what the served model said, what the challenger said, and the
    true label when feedback gave one."""

    champion: str
    challenger: str
    true: str | None


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    unknown: int  # items whose id or text matches no stored prediction


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _engine_url(url: str) -> URL:
    """A plain `postgresql://` URL names psycopg2 in SQLAlchemy; psycopg 3 is what is installed."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):  # a SQLite URI filename: left to SQLite
        return None
    return Path(url.database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # The timeout first: switching a file to WAL waits for other processes' locks.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)


def _create_tables(engine: Engine) -> None:
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            METADATA.create_all(engine, checkfirst=True)
            return
        except exc.DBAPIError:
            if attempt == CREATE_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)


def _prediction_rows(batch: Sequence[PredictionRecord], store_texts: bool) -> list[dict[str, Any]]:
    """One row per new id (the first of duplicates), with the digest computed here, off the
    request path."""
    rows: dict[str, dict[str, Any]] = {}
    for record in batch:
        if record.id in rows:
            continue
        rows[record.id] = {
            "id": record.id,
            "created_at": record.created_at,
            "model_version": record.model_version,
            "label": record.label,
            "confidence": record.confidence,
            "text_chars": record.text_chars,
            "text": record.text if store_texts else None,
            "text_digest": None if record.text is None else text_digest(record.text),
        }
    return list(rows.values())


def _existing_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(conn.scalars(select(PREDICTIONS.c.id).where(PREDICTIONS.c.id.in_(chunk))))
    return found


def _labels_of_version(conn: Connection, ids: Sequence[str], model_version: str) -> dict[str, str]:
    """Prediction id -> predicted label, for those of `ids` that `model_version` made. The
    version is compared here, not in SQL: with it in the WHERE clause SQLite chose the version
    index over the primary key and read every prediction of the version."""
    found: dict[str, str] = {}
    for chunk in _chunks(ids):
        query = select(PREDICTIONS.c.id, PREDICTIONS.c.label, PREDICTIONS.c.model_version)
        for pid, label, version in conn.execute(query.where(PREDICTIONS.c.id.in_(chunk))):
            if version == model_version:
                found[pid] = label
    return found


def _insert_predictions(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Inserts the rows whose id is not stored yet (a retried batch may be partly there when a
    commit's answer was lost); returns how many."""
    stored = _existing_ids(conn, [row["id"] for row in rows])
    new = [row for row in rows if row["id"] not in stored]
    for chunk in _chunks(new):
        conn.execute(insert(PREDICTIONS), list(chunk))
    return len(new)


def _latest_by_digest(conn: Connection, digest: str) -> str | None:
    query = (
        select(PREDICTIONS.c.id)
        .where(PREDICTIONS.c.text_digest == digest)
        .order_by(PREDICTIONS.c.created_at.desc(), PREDICTIONS.c.id.desc())
        .limit(1)
    )
    return conn.scalar(query)


def _resolve(conn: Connection, items: Sequence[FeedbackItem]) -> list[str | None]:
    """Each item's prediction id, or None where it names no stored prediction."""
    stored = _existing_ids(conn, [item.prediction_id for item in items if item.prediction_id])
    by_digest: dict[str, str | None] = {}
    resolved: list[str | None] = []
    for item in items:
        if item.prediction_id is not None:
            resolved.append(item.prediction_id if item.prediction_id in stored else None)
        elif item.text is not None:
            digest = text_digest(item.text)
            if digest not in by_digest:
                by_digest[digest] = _latest_by_digest(conn, digest)
            resolved.append(by_digest[digest])
        else:
            resolved.append(None)
    return resolved


def _upsert_feedback(conn: Connection, labels: dict[str, str], now: float) -> None:
    ids = list(labels)
    for chunk in _chunks(ids):
        conn.execute(delete(FEEDBACK).where(FEEDBACK.c.prediction_id.in_(chunk)))
    rows = [
        {"prediction_id": pid, "label": label, "created_at": now} for pid, label in labels.items()
    ]
    for chunk in _chunks(rows):
        conn.execute(insert(FEEDBACK), list(chunk))


def _check_labels(items: Iterable[FeedbackItem]) -> None:
    for item in items:
        if item.label not in LABEL_NAMES:
            raise ValueError(f"unknown label {item.label!r}: expected one of {list(LABEL_NAMES)}")


def _delete_older_than(conn: Connection, cutoff: float) -> int:
    return conn.execute(delete(PREDICTIONS).where(PREDICTIONS.c.created_at < cutoff)).rowcount


def _delete_beyond_newest(conn: Connection, keep: int) -> int:
    """Deletes every prediction after the newest `keep` (by time, then id)."""
    first_gone = conn.execute(
        select(PREDICTIONS.c.created_at, PREDICTIONS.c.id)
        .order_by(PREDICTIONS.c.created_at.desc(), PREDICTIONS.c.id.desc())
        .offset(keep)
        .limit(1)
    ).first()
    if first_gone is None:
        return 0
    created_at, pid = first_gone
    older = or_(
        PREDICTIONS.c.created_at < created_at,
        and_(PREDICTIONS.c.created_at == created_at, PREDICTIONS.c.id <= pid),
    )
    return conn.execute(delete(PREDICTIONS).where(older)).rowcount


def _delete_orphans(conn: Connection) -> int:
    """Feedback and shadow predictions whose prediction retention deleted."""
    has_prediction = exists().where(PREDICTIONS.c.id == FEEDBACK.c.prediction_id)
    deleted = conn.execute(delete(FEEDBACK).where(~has_prediction)).rowcount
    shadowed = exists().where(PREDICTIONS.c.id == SHADOW.c.prediction_id)
    return deleted + conn.execute(delete(SHADOW).where(~shadowed)).rowcount


class _FailureLog:
    """Logs a failure that repeats every round at most once per ERROR_LOG_INTERVAL_S, and the
    recovery."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self.last_logged = -math.inf

    def failed(self, error: BaseException, detail: str = "") -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self.last_logged < ERROR_LOG_INTERVAL_S:
            return
        self.last_logged = now
        logger.warning(
            "%s failed (%d in a row)%s: %s: %s",
            self.what,
            self.failures,
            detail,
            type(error).__name__,
            error,
            exc_info=self.failures == 1,
        )

    def succeeded(self) -> None:
        if self.failures:
            logger.info("%s works again after %d failures", self.what, self.failures)
        self.failures = 0
        self.last_logged = -math.inf


class PredictionStore:
    """Predictions (written by a thread, in batches) and feedback (written at once) in one
    database. `start()` before use, `close()` at the end."""

    def __init__(
        self,
        url: str,
        *,
        store_texts: bool = True,
        flush_interval_s: float = 1.0,
        max_pending: int = 100_000,
        max_age_days: float = 30.0,
        max_rows: int = 1_000_000,
        retention_interval_s: float = 300.0,
    ) -> None:
        if flush_interval_s <= 0 or retention_interval_s <= 0:
            raise ValueError("flush_interval_s and retention_interval_s must be positive")
        if max_pending < 1 or max_rows < 1 or max_age_days <= 0:
            raise ValueError("max_pending, max_rows and max_age_days must be positive")
        self.url = url
        self.store_texts = store_texts
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.max_age_days = max_age_days
        self.max_rows = max_rows
        self.retention_interval_s = retention_interval_s
        self._pending: deque[PredictionRecord] = deque()
        self._pending_lock = threading.Lock()  # the buffer: held for appends and swaps only
        self._write_lock = threading.Lock()  # one writer of this store at a time
        self._dropped = 0
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._flush_log = _FailureLog("writing predictions")
        self._retention_log = _FailureLog("retention")

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connects, creates the tables when missing, applies retention once and starts the
        writer thread. Raises when the database cannot be reached."""
        if self._engine is not None or self._closed:
            raise RuntimeError("a PredictionStore starts once")
        url = _engine_url(self.url)
        sqlite_file = _sqlite_file(url)
        if sqlite_file is not None:
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        engine = _create_engine(url)
        try:
            _create_tables(engine)
        except Exception:
            engine.dispose()
            raise
        self._engine = engine
        logger.info("prediction store at %s", engine.url.render_as_string(hide_password=True))
        self._retain_logged()
        self._thread = threading.Thread(
            target=self._run, name="prediction-store-writer", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stops the writer thread, writes what is pending and disconnects. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=CLOSE_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning(
                    "the prediction writer did not stop within %.0f s", CLOSE_JOIN_TIMEOUT_S
                )
        if self._engine is not None:
            self._flush_logged()
            self._engine.dispose()

    # --- predictions -------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Predictions never written: the buffer was full, or the database refused their batch."""
        return self._dropped

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, predictions: Sequence[PredictionRecord]) -> None:
        """Request path: queues the predictions for the writer thread; no I/O. When the buffer
        is full the excess is dropped and counted."""
        with self._pending_lock:
            room = max(self.max_pending - len(self._pending), 0)
            if len(predictions) <= room:
                self._pending.extend(predictions)
            else:
                self._pending.extend(predictions[:room])
                self._dropped += len(predictions) - room

    def flush(self) -> int:
        """Writes everything pending now, in the caller's thread, in one transaction; returns
        the rows written. On failure the rows go back to the buffer (or, when the database
        refuses their content, are dropped and counted) and the error is raised."""
        engine = self._require_engine()
        with self._write_lock:
            batch = self._take_pending()
            if not batch:
                return 0
            try:
                with engine.begin() as conn:
                    return _insert_predictions(conn, _prediction_rows(batch, self.store_texts))
            except (exc.IntegrityError, exc.DataError):
                with self._pending_lock:
                    self._dropped += len(batch)
                raise
            except BaseException:
                self._requeue(batch)
                raise

    def _take_pending(self) -> list[PredictionRecord]:
        with self._pending_lock:
            batch = list(self._pending)
            self._pending.clear()
        return batch

    def _requeue(self, batch: list[PredictionRecord]) -> None:
        """Puts a failed batch back ahead of what came since, dropping the newest over the
        bound."""
        with self._pending_lock:
            self._pending.extendleft(reversed(batch))
            while len(self._pending) > self.max_pending:
                self._pending.pop()
                self._dropped += 1

    # --- feedback ----------------------------------------------------------------------------

    def add_feedback(self, items: Sequence[FeedbackItem]) -> FeedbackResult:
        """Stores true labels; returns after the commit. Raises ValueError (nothing stored) for
        a label that is not one of the model's classes."""
        _check_labels(items)
        engine = self._require_engine()
        self.flush()
        with self._write_lock, engine.begin() as conn:
            resolved = _resolve(conn, items)
            labels: dict[str, str] = {}
            for item, pid in zip(items, resolved, strict=True):
                if pid is not None:
                    labels[pid] = item.label  # a later item for the same prediction wins
            _upsert_feedback(conn, labels, time.time())
        accepted = sum(pid is not None for pid in resolved)
        return FeedbackResult(accepted=accepted, unknown=len(items) - accepted)

    def labelled(self, model_version: str, window: int) -> list[tuple[str, str]]:
        """(predicted, true) labels of the last `window` labelled predictions of a model
        version, newest feedback first.

        Read from the newest feedback backwards, a page at a time, with the predictions of
        each page looked up by id: one join filtered on the version let SQLite walk every
        stored prediction of that version instead (15 ms at 100,000 rows, growing with the
        table, on every monitoring refresh); this costs the same at any table size."""
        if window <= 0:
            return []
        page = max(window, CHUNK)
        newest = select(FEEDBACK.c.prediction_id, FEEDBACK.c.label).order_by(
            FEEDBACK.c.created_at.desc(), FEEDBACK.c.prediction_id.desc()
        )
        pairs: list[tuple[str, str]] = []
        offset = 0
        with self._require_engine().connect() as conn:
            while True:
                rows = conn.execute(newest.limit(page).offset(offset)).all()
                predicted = _labels_of_version(conn, [pid for pid, _ in rows], model_version)
                pairs += [(predicted[pid], true) for pid, true in rows if pid in predicted]
                if len(pairs) >= window or len(rows) < page:
                    return pairs[:window]
                offset += page

    def add_shadow(self, records: Sequence[ShadowRecord]) -> int:
        """Stores a challenger's predictions (from the shadow thread, off the request path);
        returns how many were new."""
        engine = self._require_engine()
        rows = {
            (r.prediction_id, r.model_version): {
                "prediction_id": r.prediction_id,
                "model_version": r.model_version,
                "label": r.label,
                "confidence": r.confidence,
                "created_at": r.created_at,
            }
            for r in records
        }
        if not rows:
            return 0
        with self._write_lock, engine.begin() as conn:
            versions = {version for _, version in rows}
            ids = [pid for pid, _ in rows]
            stored: set[tuple[str, str]] = set()
            for chunk in _chunks(ids):
                query = select(SHADOW.c.prediction_id, SHADOW.c.model_version).where(
                    SHADOW.c.prediction_id.in_(chunk), SHADOW.c.model_version.in_(versions)
                )
                stored.update((pid, version) for pid, version in conn.execute(query))
            new = [row for key, row in rows.items() if key not in stored]
            for part in _chunks(new):
                conn.execute(insert(SHADOW), list(part))
        return len(new)

    def shadow_pairs(self, challenger_version: str, window: int) -> list[ShadowPair]:
        """The last `window` predictions the challenger shadowed, newest first: served label,
        challenger's label, true label (None without feedback). The served prediction must be
        written (a flush) before its shadow shows here."""
        if window <= 0:
            return []
        query = (
            select(PREDICTIONS.c.label, SHADOW.c.label, FEEDBACK.c.label)
            .join(PREDICTIONS, PREDICTIONS.c.id == SHADOW.c.prediction_id)
            .outerjoin(FEEDBACK, FEEDBACK.c.prediction_id == SHADOW.c.prediction_id)
            .where(SHADOW.c.model_version == challenger_version)
            .order_by(SHADOW.c.created_at.desc(), SHADOW.c.prediction_id.desc())
            .limit(window)
        )
        with self._require_engine().connect() as conn:
            return [ShadowPair(a, b, c) for a, b, c in conn.execute(query)]

    def labelled_count(self, model_version: str) -> int:
        query = (
            select(func.count())
            .select_from(PREDICTIONS.join(FEEDBACK, FEEDBACK.c.prediction_id == PREDICTIONS.c.id))
            .where(PREDICTIONS.c.model_version == model_version)
        )
        with self._require_engine().connect() as conn:
            return int(conn.scalar(query) or 0)

    # --- retention ---------------------------------------------------------------------------

    def apply_retention(self, now: float | None = None) -> int:
        """Deletes predictions older than `max_age_days` and beyond the newest `max_rows`, and
        the feedback of deleted predictions; returns the predictions deleted."""
        engine = self._require_engine()
        cutoff = (time.time() if now is None else now) - self.max_age_days * SECONDS_PER_DAY
        with self._write_lock, engine.begin() as conn:
            deleted = _delete_older_than(conn, cutoff)
            deleted += _delete_beyond_newest(conn, self.max_rows)
            _delete_orphans(conn)
        return deleted

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        next_retention = time.monotonic() + self.retention_interval_s
        reported_dropped = 0
        while not self._stop.wait(self.flush_interval_s):
            self._flush_logged()
            if time.monotonic() >= next_retention:
                self._retain_logged()
                next_retention = time.monotonic() + self.retention_interval_s
            if self._dropped != reported_dropped:
                logger.warning("%d predictions dropped so far", self._dropped)
                reported_dropped = self._dropped

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as error:
            self._flush_log.failed(error, f" ({self.pending} predictions pending)")
        else:
            self._flush_log.succeeded()

    def _retain_logged(self) -> None:
        try:
            deleted = self.apply_retention()
        except Exception as error:
            self._retention_log.failed(error)
            return
        self._retention_log.succeeded()
        if deleted:
            logger.info("retention deleted %d predictions", deleted)

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("PredictionStore.start() has not been called")
        return self._engine
