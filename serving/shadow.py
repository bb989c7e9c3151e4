"""Shadow scoring: a challenger model answers a sample of live traffic where no client sees it.

`/predict` hands each answered request to `ShadowScorer.offer`, which only draws the sample and
appends to a bounded queue (no model call, no I/O, no wait), so a client's answer is neither
delayed nor changed. A daemon thread takes what is queued in batches, has the challenger score
them in a model process of its own (niced like the explaining one, so under load the processes
that answer `/predict` keep the cores) and hands the challenger's predictions to `on_scored`,
which the service stores beside the served ones. When the queue is full, the sample is dropped
and counted rather than delayed: a shadow result is an estimate, and a slower one is fine.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger("serving.shadow")

# A challenger named by alias, "alias:<name>": the newest Bento model imported from that
# MLflow alias (the import step labels each model with it).
ALIAS_PREFIX = "alias:"
ALIAS_LABEL = "mlflow_alias"

Classify = Callable[[list[str]], list[dict[str, Any]]]
OnScored = Callable[[list[str], list[dict[str, Any]]], None]


def resolve_shadow_model(spec: str, models: Sequence[Any]) -> str | None:
    """The Bento model tag a `shadow.model` setting names: a tag as it is, or for
    "alias:<name>" the newest of `models` (bentoml.models.list()) labelled with that alias;
    None when no model carries it."""
    if not spec.startswith(ALIAS_PREFIX):
        return spec
    alias = spec.removeprefix(ALIAS_PREFIX)
    labelled = [m for m in models if (m.info.labels or {}).get(ALIAS_LABEL) == alias]
    if not labelled:
        return None
    return str(max(labelled, key=lambda m: m.info.creation_time).tag)


class ShadowScorer:
    """Samples answered predictions and scores them with a challenger, off the request path."""

    def __init__(
        self,
        classify: Classify,
        on_scored: OnScored,
        sample_rate: float,
        *,
        max_pending: int = 1000,
        batch_size: int = 64,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be within [0, 1]")
        self.classify = classify
        self.on_scored = on_scored
        self.sample_rate = sample_rate
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._random = random.Random(seed)
        self._queue: collections.deque[tuple[str, str]] = collections.deque()
        self._ready = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.offered = 0
        self.dropped = 0
        self.scored = 0
        self.failed = 0

    def offer(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Request path: the sampled (id, text) pairs join the queue; nothing else."""
        self.offered += len(ids)
        chosen = [
            pair
            for pair in zip(ids, texts, strict=True)
            if self._random.random() < self.sample_rate
        ]
        if not chosen:
            return
        with self._ready:
            room = self.max_pending - len(self._queue)
            self._queue.extend(chosen[: max(room, 0)])
            self.dropped += max(len(chosen) - max(room, 0), 0)
            self._ready.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        with self._ready:
            self._stop = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _take(self) -> list[tuple[str, str]]:
        with self._ready:
            while not self._queue and not self._stop:
                self._ready.wait(timeout=1.0)
            if self._stop:
                return []
            count = min(self.batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while batch := self._take():
            ids = [pid for pid, _ in batch]
            try:
                predictions = self.classify([text for _, text in batch])
                self.on_scored(ids, predictions)
                self.scored += len(ids)
            except Exception as exc:  # never raised into the service: a shadow is optional
                self.failed += len(ids)
                logger.warning("shadow scoring failed for %d predictions: %s", len(ids), exc)
