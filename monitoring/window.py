"""Bounded containers: the sliding window of recent predictions, the hand-off buffer between
the request path and the statistics thread, and running totals.

Nothing here grows with the number of predictions served.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SCALAR_COLUMNS = ("confidence", "label", "n_chars", "n_tokens")


@dataclass(frozen=True)
class WindowData:
    """A chronological copy of a window's contents."""

    confidence: np.ndarray
    label: np.ndarray
    n_chars: np.ndarray
    n_tokens: np.ndarray
    embeddings: np.ndarray | None

    def __len__(self) -> int:
        return int(self.confidence.size)


class _Ring:
    """A fixed-capacity ring of rows in one numpy array."""

    def __init__(self, capacity: int, row_shape: tuple[int, ...], dtype: Any) -> None:
        self.data = np.zeros((capacity, *row_shape), dtype=dtype)
        self.capacity = capacity
        self.start = 0
        self.size = 0

    def extend(self, rows: np.ndarray) -> None:
        rows = rows[-self.capacity :]
        end = (self.start + self.size) % self.capacity
        for row_block in _split_at_wrap(rows, end, self.capacity):
            self.data[end : end + len(row_block)] = row_block
            end = (end + len(row_block)) % self.capacity
        overflow = max(0, self.size + len(rows) - self.capacity)
        self.start = (self.start + overflow) % self.capacity
        self.size = min(self.capacity, self.size + len(rows))

    def ordered(self) -> np.ndarray:
        index = (self.start + np.arange(self.size)) % self.capacity
        return self.data[index].copy()

    def clear(self) -> None:
        self.start = 0
        self.size = 0


def _split_at_wrap(rows: np.ndarray, end: int, capacity: int) -> list[np.ndarray]:
    first = capacity - end
    return [rows[:first], rows[first:]] if len(rows) > first else [rows]


class PredictionWindow:
    """The most recent `capacity` predictions, as numpy columns.

    Embeddings have their own ring (a request may arrive without them); its array is
    allocated on the first embedding, when the dimension becomes known.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("window capacity must be at least 1")
        self.capacity = capacity
        self._confidence = _Ring(capacity, (), np.float32)
        self._label = _Ring(capacity, (), np.int8)
        self._n_chars = _Ring(capacity, (), np.int32)
        self._n_tokens = _Ring(capacity, (), np.int32)
        self._embeddings: _Ring | None = None

    def __len__(self) -> int:
        return self._confidence.size

    @property
    def n_embeddings(self) -> int:
        return 0 if self._embeddings is None else self._embeddings.size

    def extend(
        self,
        confidence: Sequence[float] | np.ndarray,
        label: Sequence[int] | np.ndarray,
        n_chars: Sequence[int] | np.ndarray,
        n_tokens: Sequence[int] | np.ndarray,
        embeddings: Sequence[Sequence[float]] | np.ndarray | None = None,
    ) -> None:
        columns = [np.asarray(c) for c in (confidence, label, n_chars, n_tokens)]
        if len({c.shape[0] for c in columns}) != 1:
            raise ValueError("all columns of a batch must have the same length")
        for ring, column in zip(
            (self._confidence, self._label, self._n_chars, self._n_tokens), columns, strict=True
        ):
            ring.extend(column)
        if embeddings is not None:
            self.extend_embeddings(embeddings)

    def extend_embeddings(self, embeddings: Sequence[Sequence[float]] | np.ndarray) -> None:
        """Rows for the embedding ring only: it fills independently of the scalar columns."""
        if len(embeddings):
            matrix = np.asarray(embeddings, dtype=np.float32)
            if matrix.ndim != 2:
                raise ValueError("embeddings must be a 2-d array")
            if self._embeddings is None or self._embeddings.data.shape[1] != matrix.shape[1]:
                self._embeddings = _Ring(self.capacity, (matrix.shape[1],), np.float32)
            self._embeddings.extend(matrix)

    def snapshot(self) -> WindowData:
        return WindowData(
            confidence=self._confidence.ordered(),
            label=self._label.ordered(),
            n_chars=self._n_chars.ordered(),
            n_tokens=self._n_tokens.ordered(),
            embeddings=None if self._embeddings is None else self._embeddings.ordered(),
        )

    def clear(self) -> None:
        for ring in (self._confidence, self._label, self._n_chars, self._n_tokens):
            ring.clear()
        self._embeddings = None


class PendingBuffer:
    """Records handed from the request path to the statistics thread.

    `put` is O(1) apart from evicting; when more than `max_items` predictions wait, the
    oldest records are dropped and counted, so a stalled consumer cannot exhaust memory.
    """

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._records: deque[tuple[int, Any]] = deque()
        self._items = 0
        self._dropped = 0
        self._lock = threading.Lock()

    def put(self, record: Any, n_items: int) -> None:
        with self._lock:
            self._records.append((n_items, record))
            self._items += n_items
            while self._items > self.max_items and len(self._records) > 1:
                dropped, _ = self._records.popleft()
                self._items -= dropped
                self._dropped += dropped

    def drain(self) -> tuple[list[Any], int]:
        """(records waiting, predictions dropped since the last drain)."""
        with self._lock:
            records = [r for _, r in self._records]
            dropped = self._dropped
            self._records.clear()
            self._items = 0
            self._dropped = 0
        return records, dropped

    def __len__(self) -> int:
        return self._items


class RunningSummary:
    """Totals since the process started, and latencies of the most recent requests."""

    def __init__(self, latency_window: int) -> None:
        self.total = 0
        self.positive = 0
        self.confidence_sum = 0.0
        self.latencies: deque[float] = deque(maxlen=latency_window)

    def add(self, confidences: np.ndarray, positives: int, latencies_s: Sequence[float]) -> None:
        """Predictions of any number of requests, with the latency of each request."""
        self.total += int(confidences.size)
        self.positive += positives
        self.confidence_sum += float(confidences.sum())
        self.latencies.extend(latencies_s)

    @property
    def average_confidence(self) -> float | None:
        return self.confidence_sum / self.total if self.total else None

    @property
    def positive_ratio(self) -> float | None:
        return self.positive / self.total if self.total else None
