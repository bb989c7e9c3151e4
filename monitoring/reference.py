"""The drift reference: the model's predictions on SST-2 validation, made at import time.

It is stored in the Bento model as `custom_objects["drift_reference"]` in a plain form
(a dict of numpy arrays and strings), so unpickling it needs no class from this package and a
container has it without any database.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiment.data import LABEL_NAMES

if TYPE_CHECKING:
    from sentiment.config import ServingConfig, TrainingConfig
    from sentiment.runtime import SentimentRuntime

logger = logging.getLogger("monitoring.reference")

CUSTOM_OBJECT_KEY = "drift_reference"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DriftReference:
    confidence: np.ndarray  # float32, one per reference sentence
    label: np.ndarray  # int8 predicted label index into `labels`
    n_chars: np.ndarray  # int32
    n_tokens: np.ndarray  # int32
    embeddings: np.ndarray  # float32 (k, dim): a seeded sample of at most max_embeddings rows
    labels: tuple[str, ...] = LABEL_NAMES
    source: str = "sst2/validation"
    accuracy: float | None = None
    created_at: str = ""

    def __len__(self) -> int:
        return int(self.confidence.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "confidence": self.confidence,
            "label": self.label,
            "n_chars": self.n_chars,
            "n_tokens": self.n_tokens,
            "embeddings": self.embeddings,
            "labels": list(self.labels),
            "source": self.source,
            "accuracy": self.accuracy,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"drift reference format {data.get('format')!r} is not supported")
        return cls(
            confidence=np.asarray(data["confidence"], np.float32),
            label=np.asarray(data["label"], np.int8),
            n_chars=np.asarray(data["n_chars"], np.int32),
            n_tokens=np.asarray(data["n_tokens"], np.int32),
            embeddings=np.asarray(data["embeddings"], np.float32),
            labels=tuple(data.get("labels", LABEL_NAMES)),
            source=str(data.get("source", "")),
            accuracy=data.get("accuracy"),
            created_at=str(data.get("created_at", "")),
        )

    def describe(self) -> dict[str, Any]:
        counts = np.bincount(self.label.astype(np.int64), minlength=len(self.labels))
        return {
            "source": self.source,
            "size": len(self),
            "embeddings": int(self.embeddings.shape[0]),
            "positive_ratio": round(float(counts[-1] / max(1, counts.sum())), 4),
            "average_confidence": round(float(self.confidence.mean()), 4) if len(self) else None,
            "accuracy": self.accuracy,
            "created_at": self.created_at,
        }


def label_index(label: str, labels: Sequence[str] = LABEL_NAMES) -> int:
    try:
        return list(labels).index(label.lower())
    except ValueError:
        raise ValueError(f"unknown label {label!r}; expected one of {list(labels)}") from None


def reference_from_predictions(
    predictions: Sequence[Mapping[str, Any]],
    true_labels: Sequence[int] | None = None,
    *,
    max_embeddings: int = 1000,
    seed: int = 0,
    source: str = "sst2/validation",
    labels: Sequence[str] = LABEL_NAMES,
) -> DriftReference:
    """A reference from prediction dicts (the format of ModelEngine.classify)."""
    if not predictions:
        raise ValueError("a drift reference needs at least one prediction")
    predicted = np.asarray([label_index(p["label"], labels) for p in predictions], np.int8)
    with_embedding = [i for i, p in enumerate(predictions) if p.get("embedding") is not None]
    rng = np.random.default_rng(seed)
    if len(with_embedding) > max_embeddings:
        with_embedding = sorted(rng.choice(with_embedding, max_embeddings, replace=False).tolist())
    embeddings = (
        np.asarray([predictions[i]["embedding"] for i in with_embedding], np.float32)
        if with_embedding
        else np.zeros((0, 0), np.float32)
    )
    accuracy = None
    if true_labels is not None:
        if len(true_labels) != len(predictions):
            raise ValueError("true_labels and predictions differ in length")
        accuracy = round(float(np.mean(predicted == np.asarray(true_labels))), 4)
    return DriftReference(
        confidence=np.asarray([p["confidence"] for p in predictions], np.float32),
        label=predicted,
        n_chars=np.asarray([p["n_chars"] for p in predictions], np.int32),
        n_tokens=np.asarray([p["n_tokens"] for p in predictions], np.int32),
        embeddings=embeddings,
        labels=tuple(labels),
        source=source,
        accuracy=accuracy,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def predict_all(
    runtime: SentimentRuntime, texts: Sequence[str], batch_size: int = 64, desc: str = "predicting"
) -> list[dict[str, Any]]:
    """Raw prediction dicts (embeddings included) for all texts, with a progress bar."""
    from tqdm import tqdm

    out: list[dict[str, Any]] = []
    with tqdm(total=len(texts), desc=desc, unit="text", leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            out.extend(p.to_dict() for p in runtime.predict(chunk, with_embeddings=True))
            bar.update(len(chunk))
    return out


def build_reference(
    runtime: SentimentRuntime,
    texts: Sequence[str],
    labels: Sequence[int] | None = None,
    *,
    max_embeddings: int = 1000,
    batch_size: int = 64,
    seed: int = 0,
    source: str = "sst2/validation",
) -> DriftReference:
    """Run the model over `texts` and keep what the drift tests compare against."""
    predictions = predict_all(runtime, texts, batch_size, desc="drift reference")
    return reference_from_predictions(
        predictions,
        labels,
        max_embeddings=max_embeddings,
        seed=seed,
        source=source,
        labels=runtime.labels,
    )


def drift_reference_for(
    training: TrainingConfig, serving: ServingConfig, alias: str
) -> dict[str, Any] | None:
    """custom_objects for importing `alias` into BentoML, or None when nothing is to import.

    The model is downloaded from MLflow and run with the serving settings (quantisation,
    device), so the reference sees the same numbers the service will produce. Without the
    SST-2 files the model is imported with no reference and monitoring says so.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    from monitoring.config import load_monitoring_config
    from sentiment.data import read_tsv, resolve_sst2_dir
    from training.import_model import bento_metadata, bento_tag_for, resolve_alias

    version = resolve_alias(
        training.mlflow.tracking_uri, training.mlflow.registered_model_name, alias
    )
    try:
        bentoml.models.get(bento_tag_for(serving.model.name, version))
        return None
    except NotFound:
        pass
    cfg = load_monitoring_config().reference
    folder = resolve_sst2_dir(training.data.data_dir)
    if folder is None or not (folder / f"{cfg.split}.tsv").is_file():
        logger.warning("no SST-2 %s.tsv found: importing without a drift reference", cfg.split)
        return None
    data = read_tsv(folder / f"{cfg.split}.tsv")
    _, metadata = bento_metadata(version)
    reference = _reference_from_mlflow(version.uri, metadata, serving, data.texts, data.labels)
    print(f"drift reference: {reference.describe()}")
    return {CUSTOM_OBJECT_KEY: reference.to_dict()}


def _reference_from_mlflow(
    model_uri: str,
    metadata: Mapping[str, Any],
    serving: ServingConfig,
    texts: Sequence[str],
    labels: Sequence[int],
) -> DriftReference:
    from mlflow.artifacts import download_artifacts

    from monitoring.config import load_monitoring_config
    from sentiment.runtime import (
        BENTO_TOKENIZER_SUBDIR,
        BENTO_WEIGHTS_SUBDIR,
        SentimentRuntime,
        serving_options,
    )

    cfg = load_monitoring_config().reference
    # The Bento model keeps the MLflow model under "mlflow_model/": same layout below it.
    weights_sub = Path(BENTO_WEIGHTS_SUBDIR).relative_to("mlflow_model")
    tokenizer_sub = Path(BENTO_TOKENIZER_SUBDIR).relative_to("mlflow_model")
    with tempfile.TemporaryDirectory(prefix="drift-reference-") as tmp:
        root = Path(download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        tokenizer = root / tokenizer_sub
        runtime = SentimentRuntime(
            root / weights_sub,
            tokenizer if tokenizer.is_dir() else root / weights_sub,
            max_length=int(metadata.get("max_length", 128)),
            temperature=float(metadata.get("temperature", 1.0)),
            **serving_options(serving.model),
        )
        return build_reference(
            runtime,
            texts,
            labels,
            max_embeddings=cfg.max_embeddings,
            batch_size=cfg.batch_size,
            source=f"sst2/{cfg.split}",
        )


def load_reference(tag: str) -> DriftReference | None:
    """The reference stored in Bento model `tag`, or None when it has none."""
    import bentoml

    raw = bentoml.models.get(tag).custom_objects.get(CUSTOM_OBJECT_KEY)
    return None if raw is None else DriftReference.from_dict(raw)
