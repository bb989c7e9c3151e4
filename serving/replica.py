"""One replica: a loaded copy of the Bento model, its batched `classify` and what the service
says about it (`/model/info`). `serving.replicas` decides where replicas run."""

from __future__ import annotations

import time
from typing import Any

from sentiment.config import ServingConfig
from serving.classifier import Classifier, serving_options
from serving.store import get_bento_model


class Replica:
    """One loaded copy of the Bento model: batched classify, and what the service says about it."""

    def __init__(self, cfg: ServingConfig, bento_model: Any) -> None:
        self.cfg = cfg
        self.bento_model = bento_model
        metadata = dict(bento_model.info.metadata or {})
        started = time.perf_counter()
        self.classifier = Classifier.from_bento_model(
            bento_model,
            # The serving config may keep more or fewer tokens than the model was trained with.
            max_length=cfg.model.max_length or int(metadata.get("max_length", 128)),
            num_threads=cfg.model.num_threads,
            **serving_options(cfg.model),
        )
        self.load_seconds = time.perf_counter() - started
        self.metadata = metadata

    @classmethod
    def load(cls, cfg: ServingConfig) -> Replica:
        return cls(cfg, get_bento_model(cfg.model.tag))

    def classify(self, texts: list[str], with_embeddings: bool = True) -> list[dict[str, Any]]:
        """One dict per text: label, confidence, probabilities, length features, embedding."""
        return [
            p.to_dict() for p in self.classifier.predict(texts, with_embeddings=with_embeddings)
        ]

    def custom_object(self, name: str) -> Any:
        return self.bento_model.custom_objects.get(name)

    def info(self) -> dict[str, Any]:
        classifier = self.classifier
        return {
            "name": self.bento_model.tag.name,
            "version": self.bento_model.tag.version,
            "tag": str(self.bento_model.tag),
            "labels": classifier.labels,
            "max_length": classifier.max_length,
            "temperature": classifier.temperature,
            "device": classifier.device.type,
            "quantized": classifier.quantized,
            "half_precision": classifier.half_precision,
            "sort_by_length": classifier.sort_by_length,
            "skip_padding": classifier.packed,
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
