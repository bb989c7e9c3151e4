"""Locust user mix against a running service: `make load-test` (headless, reports in results/)."""

from __future__ import annotations

import random

from locust import HttpUser, between, task

from sentiment.data import read_tsv, resolve_sst2_dir

_folder = resolve_sst2_dir(None)
SENTENCES = read_tsv(_folder / "validation.tsv").texts if _folder else ["a fine film"]


class SentimentUser(HttpUser):
    wait_time = between(0.05, 0.5)

    @task(6)
    def single_text(self) -> None:
        self._predict([random.choice(SENTENCES)], "single")

    @task(3)
    def small_batch(self) -> None:
        self._predict(random.sample(SENTENCES, random.randint(2, 16)), "batch 2-16")

    @task(1)
    def long_text(self) -> None:
        # Longer than max_length tokens: truncated by the service, never rejected.
        self._predict([" ".join(random.sample(SENTENCES, 12))], "long text")

    def _predict(self, texts: list[str], name: str) -> None:
        body = {"texts": texts, "return_probabilities": random.random() < 0.3}
        with self.client.post("/predict", json=body, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
            elif len(resp.json()["predictions"]) != len(texts):
                resp.failure("wrong number of predictions")
