"""The labelled feedback of the service as training data: pure functions over rows, and one thin
read-only query of the prediction store (monitoring/prediction_store.py's tables).

- **Rows.** A row is one labelled prediction whose text was stored: the text, the true label a
  user sent (`POST /feedback` or the UI's buttons) and when. Predictions stored without their
  text (`feedback.store_texts: false`) cannot be trained on; they are counted, not read.
- **One example per text.** The same text predicted and labelled several times is one example:
  rows are grouped by the text's SHA-256 digest (`text_digest`) and the latest label wins (ties:
  the larger prediction id, so the result never depends on the database's row order).
- **The hold-out, by digest.** A text is held out when the first 64 bits of its digest, read as
  a fraction of 2**64, fall under `holdout_fraction`: the same text lands on the same side in
  every retraining, so a text evaluated on once is never trained on later.
- **Digests of datasets.** `dataset_digest` hashes (text, label) pairs in order: the digest
  MLflow records for each dataset of a run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from monitoring.prediction_store import FEEDBACK, PREDICTIONS, database_url, text_digest
from sentiment.data import LabelledTexts
from sentiment.labels import LABEL_NAMES

# MLflow keeps at most 36 characters of a dataset digest; 32 hex characters are 128 bits.
DIGEST_CHARS = 32
HOLDOUT_BITS = 64


@dataclass(frozen=True)
class FeedbackRow:
    """One labelled prediction as the store holds it."""

    prediction_id: str
    text: str
    label: str  # the true label's name (LABEL_NAMES)
    labelled_at: float  # unix seconds of the feedback


@dataclass(frozen=True)
class FeedbackExample:
    """One text with its latest label."""

    digest: str  # text_digest(text): SHA-256 hex of the UTF-8 text
    text: str
    label: int  # index into LABEL_NAMES
    labelled_at: float


@dataclass(frozen=True)
class FeedbackData:
    """The feedback as retraining uses it."""

    rows_read: int
    unknown_labels: int  # rows whose label is not one of the model's classes (skipped)
    examples: tuple[FeedbackExample, ...]  # deduplicated, sorted by digest
    train: tuple[FeedbackExample, ...]
    holdout: tuple[FeedbackExample, ...]


def deduplicate(rows: Iterable[FeedbackRow]) -> tuple[list[FeedbackExample], int]:
    """One example per text digest, the latest label winning (ties: the larger prediction id),
    sorted by digest; and how many rows had a label that is not a class name."""
    latest: dict[str, tuple[float, str, FeedbackRow]] = {}
    unknown = 0
    for row in rows:
        if row.label not in LABEL_NAMES:
            unknown += 1
            continue
        digest = text_digest(row.text)
        key = (row.labelled_at, row.prediction_id, row)
        kept = latest.get(digest)
        if kept is None or key[:2] > kept[:2]:
            latest[digest] = key
    examples = [
        FeedbackExample(digest, row.text, LABEL_NAMES.index(row.label), at)
        for digest, (at, _, row) in latest.items()
    ]
    return sorted(examples, key=lambda e: e.digest), unknown


def in_holdout(digest: str, fraction: float) -> bool:
    """Whether a text (by its hex digest) is held out: its first 64 bits under fraction*2**64."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"holdout fraction {fraction} is not within [0, 1]")
    return int(digest[: HOLDOUT_BITS // 4], 16) < fraction * 2**HOLDOUT_BITS


def split_holdout(
    examples: Sequence[FeedbackExample], fraction: float
) -> tuple[list[FeedbackExample], list[FeedbackExample]]:
    """(training examples, held-out examples), each in the order given."""
    train: list[FeedbackExample] = []
    holdout: list[FeedbackExample] = []
    for example in examples:
        (holdout if in_holdout(example.digest, fraction) else train).append(example)
    return train, holdout


def drop_texts(
    examples: Sequence[FeedbackExample], texts: Iterable[str]
) -> tuple[list[FeedbackExample], int]:
    """The examples whose text is not among `texts` (the evaluation split: a feedback text
    trained on would inflate the gate's measure), and how many were dropped."""
    digests = {text_digest(t) for t in texts}
    kept = [e for e in examples if e.digest not in digests]
    return kept, len(examples) - len(kept)


def prepare_feedback(
    rows: Sequence[FeedbackRow], holdout_fraction: float, exclude_texts: Iterable[str] = ()
) -> tuple[FeedbackData, int]:
    """Deduplicate, drop texts of `exclude_texts`, split off the hold-out; returns the data and
    how many texts `exclude_texts` removed."""
    examples, unknown = deduplicate(rows)
    examples, excluded = drop_texts(examples, exclude_texts)
    train, holdout = split_holdout(examples, holdout_fraction)
    data = FeedbackData(len(rows), unknown, tuple(examples), tuple(train), tuple(holdout))
    return data, excluded


def time_range(examples: Iterable[FeedbackExample]) -> tuple[float, float] | None:
    """(earliest, latest) feedback time of the examples, None when there are none."""
    times = [e.labelled_at for e in examples]
    return (min(times), max(times)) if times else None


def iso_utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def as_labelled(examples: Iterable[FeedbackExample]) -> LabelledTexts:
    chosen = list(examples)
    return LabelledTexts([e.text for e in chosen], [e.label for e in chosen])


def dataset_digest(data: LabelledTexts) -> str:
    """SHA-256 over the (text, label) pairs in order, cut to what MLflow keeps."""
    digest = hashlib.sha256()
    for text, label in zip(data.texts, data.labels, strict=True):
        digest.update(json.dumps([text, int(label)], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:DIGEST_CHARS]


# --- the store (read-only) -------------------------------------------------------------------


def feedback_database_url(setting: str, serving_setting: str, bentoml_home: str | Path) -> str:
    """The store to read: retrain's own setting, else the service's (`feedback.database`), else
    the service's default file under BENTOML_HOME; as monitoring.prediction_store reads it."""
    return database_url(setting or serving_setting, Path(bentoml_home) / "feedback")


def safe_url(url: str) -> str:
    """The URL without its password (for logs, MLflow and error messages)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unreadable database URL>"


def read_feedback_rows(url: str) -> tuple[list[FeedbackRow], int]:
    """Labelled predictions with a stored text, and how many labelled ones had none.

    Read-only: a SQLite file that does not exist is not created (no rows), and the connection
    refuses writes (`PRAGMA query_only`; PostgreSQL: a read-only transaction). A store whose
    tables do not exist yet holds no rows."""
    from sqlalchemy import create_engine, event, func, inspect, select
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).is_file():
            return [], 0
        engine = create_engine(parsed)

        def read_only(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA query_only=1")
            cursor.close()

        event.listen(engine, "connect", read_only)
    else:
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            if parsed.get_backend_name() == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            tables = set(inspect(conn).get_table_names())
            if not {PREDICTIONS.name, FEEDBACK.name} <= tables:
                return [], 0
            joined = PREDICTIONS.join(FEEDBACK, FEEDBACK.c.prediction_id == PREDICTIONS.c.id)
            columns = (PREDICTIONS.c.id, PREDICTIONS.c.text, FEEDBACK.c.label)
            query = (
                select(*columns, FEEDBACK.c.created_at)
                .select_from(joined)
                .where(PREDICTIONS.c.text.is_not(None))
            )
            rows = [
                FeedbackRow(str(pid), str(text), str(label), float(at))
                for pid, text, label, at in conn.execute(query)
            ]
            textless = conn.scalar(
                select(func.count()).select_from(joined).where(PREDICTIONS.c.text.is_(None))
            )
    finally:
        engine.dispose()
    return rows, int(textless or 0)
