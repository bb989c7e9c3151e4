"""One replica: a loaded copy of the Bento model, its batched `classify` and what the service
says about it (`/model/info`). `serving.replicas` decides where replicas run."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sentiment.config import ServingConfig
from serving.classifier import Classifier, serving_options
from serving.store import get_bento_model

if TYPE_CHECKING:
    from serving.explain import Explainer


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
        self._explainer: Explainer | None = None

    @classmethod
    def load(cls, cfg: ServingConfig) -> Replica:
        return cls(cfg, get_bento_model(cfg.model.tag))

    def classify(self, texts: list[str], with_embeddings: bool = True) -> list[dict[str, Any]]:
        """One dict per text: label, confidence, probabilities, length features, embedding."""
        return [
            p.to_dict() for p in self.classifier.predict(texts, with_embeddings=with_embeddings)
        ]

    def explain(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per text the prediction and its words' attributions (serving/explain.py), from the
        same classifier that answers `classify`."""
        if self._explainer is None:
            from serving.explain import Explainer

            explain = self.cfg.explain
            self._explainer = Explainer(
                self.classifier,
                method=explain.method,
                n_steps=explain.n_steps,
                max_texts=explain.max_texts,
                internal_batch_size=self.cfg.model.forward_chunk_size,
            )
        return [dict(e) for e in self._explainer.explain(texts)]

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
            "engine": classifier.engine,
            "onnx_max_tokens": classifier.onnx_max_tokens,
            "onnx_overhead_tokens": classifier.onnx_overhead_tokens,
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
