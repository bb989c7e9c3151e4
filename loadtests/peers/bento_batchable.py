"""BentoML's own adaptive batching (`@bentoml.api(batchable=True)`) on the platform's model
processes: the peer that answers "why not BentoML's batching?".

One server worker (as the platform's default), the two model processes of
`serving.replicas.start_replicas` (the platform's own, with its serving config), and one
batchable API whose `max_batch_size` and `max_latency_ms` are the platform's
(`batching.max_batch_size` texts per model call; a request that would wait longer than
`batching.max_latency_ms` is refused with 503 in both). The service settings (one worker,
timeout, concurrency backstop, access log off) are the platform's (`serving.http.service_options`).

BentoML's dispatcher (`CorkDispatcher`) runs one batch at a time per worker, so each batch is
split in two and the halves run on the two model processes at once; otherwise one process
would idle.

HTTP: a batchable API takes one argument, concatenated along the batch dimension across
requests: `POST /predict` with `{"texts": [...]}` answers a JSON list with one
`{"sentiment", "confidence"}` per text (no `return_probabilities`). Ready: `GET /readyz`.

Run: `bentoml serve loadtests.peers.bento_batchable:BatchableSentiment --port 8003`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bentoml

from loadtests.peers.common import prediction
from sentiment.config import load_serving_config
from serving.http import service_options
from serving.replicas import start_replicas

CONFIG = load_serving_config()


def split(texts: list[str], parts: int) -> list[list[str]]:
    """`texts` cut into at most `parts` consecutive runs of near-equal length, none empty."""
    parts = max(1, min(parts, len(texts)))
    size, extra = divmod(len(texts), parts)
    runs, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        runs.append(texts[start:end])
        start = end
    return runs


@bentoml.service(name="sentiment_batchable_peer", **service_options(CONFIG))
class BatchableSentiment:
    def __init__(self) -> None:
        self.model = start_replicas(CONFIG)
        self.threads = ThreadPoolExecutor(self.model.concurrency)

    @bentoml.on_shutdown
    def stop_model(self) -> None:
        self.threads.shutdown(wait=True)
        self.model.close()

    @bentoml.api(
        route="/predict",
        batchable=True,
        max_batch_size=CONFIG.batching.max_batch_size,
        max_latency_ms=CONFIG.batching.max_latency_ms,
    )
    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        runs = split(texts, self.model.concurrency)
        answers = self.threads.map(self.model.classify, runs)
        return [prediction(raw) for answer in answers for raw in answer]
