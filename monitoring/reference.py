"""The drift reference: the model's predictions on SST-2 validation, made at import time
(`training.reference` runs the model; `build_reference` here keeps what the tests need).

It is stored in the Bento model as `custom_objects["drift_reference"]` in a plain form
(a dict of numpy arrays and strings), so unpickling it needs no class from this package and a
container has it without any database.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sentiment.labels import LABEL_NAMES

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


def build_reference(
    predictions: Sequence[Mapping[str, Any]],
    true_labels: Sequence[int] | None = None,
    *,
    max_embeddings: int = 1000,
    seed: int = 0,
    source: str = "sst2/validation",
    labels: Sequence[str] = LABEL_NAMES,
) -> DriftReference:
    """The reference from prediction dicts (the format of `Replica.classify`): pure, so the
    import step, the offline drift check and the benchmark all build it the same way."""
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


def load_reference(tag: str) -> DriftReference | None:
    """The reference stored in Bento model `tag`, or None when it has none."""
    import bentoml

    raw = bentoml.models.get(tag).custom_objects.get(CUSTOM_OBJECT_KEY)
    return None if raw is None else DriftReference.from_dict(raw)
