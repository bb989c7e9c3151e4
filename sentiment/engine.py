"""The model inside the service: find the Bento model, load it, classify batches, describe it."""

from __future__ import annotations

import time
from typing import Any

from sentiment.config import ServingConfig
from sentiment.runtime import ModelNotFoundError, SentimentRuntime, serving_options

HOW_TO_GET_A_MODEL = (
    "run `make train import-model` (or `make serve`, which does both when the store is empty)"
)


def get_bento_model(tag: str) -> Any:
    """The model from the BentoML store, or ModelNotFoundError with a one-line remedy."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        raise ModelNotFoundError(
            f"no model '{tag}' in the BentoML store ({bentoml_store_path()}); {HOW_TO_GET_A_MODEL}"
        ) from None


def require_model(tag: str) -> None:
    """Before any worker starts: stop `bentoml serve` with one line when the model is missing."""
    import sys

    try:
        get_bento_model(tag)
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def bentoml_store_path() -> str:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


class ModelEngine:
    """The loaded model and what the service says about it."""

    def __init__(self, cfg: ServingConfig, bento_model: Any) -> None:
        self.cfg = cfg
        self.bento_model = bento_model
        metadata = dict(bento_model.info.metadata or {})
        started = time.perf_counter()
        self.runtime = SentimentRuntime.from_bento_model(
            bento_model,
            max_length=int(metadata.get("max_length", 128)),
            num_threads=cfg.model.num_threads,
            **serving_options(cfg.model),
        )
        self.load_seconds = time.perf_counter() - started
        self.metadata = metadata

    @classmethod
    def load(cls, cfg: ServingConfig) -> ModelEngine:
        return cls(cfg, get_bento_model(cfg.model.tag))

    def classify(self, texts: list[str], with_embeddings: bool = True) -> list[dict[str, Any]]:
        """One dict per text: label, confidence, probabilities, length features, embedding."""
        return [p.to_dict() for p in self.runtime.predict(texts, with_embeddings=with_embeddings)]

    def custom_object(self, name: str) -> Any:
        return self.bento_model.custom_objects.get(name)

    def info(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "name": self.bento_model.tag.name,
            "version": self.bento_model.tag.version,
            "tag": str(self.bento_model.tag),
            "labels": runtime.labels,
            "max_length": runtime.max_length,
            "temperature": runtime.temperature,
            "device": runtime.device.type,
            "quantized": runtime.quantized,
            "half_precision": runtime.half_precision,
            "sort_by_length": runtime.sort_by_length,
            "skip_padding": runtime.packed,
            "max_batch_size": self.cfg.batching.max_batch_size,
            "max_latency_ms": self.cfg.batching.max_latency_ms,
            "load_seconds": round(self.load_seconds, 3),
            "mlflow": {
                k.removeprefix("mlflow_"): v for k, v in self.metadata.items() if "mlflow" in k
            },
            "validation_metrics": {
                k.removeprefix("val_"): v for k, v in self.metadata.items() if k.startswith("val_")
            },
            "bento_labels": dict(self.bento_model.info.labels or {}),
        }
