"""Running one registered version over a labelled file: download, load as served, predict
with a progress bar, time single texts, and score the result."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluation.scoring import EvaluationResult, percentile, score_predictions
from evaluation.settings import EvaluationSection
from sentiment.config import load_serving_config
from sentiment.data import LabelledTexts
from training.registry import ModelVersion

if TYPE_CHECKING:
    from serving.classifier import Classifier

Predictor = Callable[[list[str]], list[tuple[float, float]]]


def load_classifier(
    ref: ModelVersion, weights: Path, tokenizer: Path, as_served: bool
) -> Classifier:
    """The version as the service runs it (or in fp32 on CPU when not `as_served`)."""
    # Here, not at the top: torch loads only when a version is run, so `promote rollback`,
    # the config checks and `--help` of every evaluation command stay quick.
    from serving.classifier import Classifier, serving_options

    options = serving_options(load_serving_config().model)
    if not as_served:
        options.update(device="cpu", quantize=False)
    return Classifier(
        weights, tokenizer, max_length=ref.max_length, temperature=ref.temperature, **options
    )


def classifier_predictor(classifier: Any) -> Predictor:
    def predict(texts: list[str]) -> list[tuple[float, float]]:
        return [
            (p.probabilities["positive"], p.probabilities["negative"])
            for p in classifier.predict(texts)
        ]

    return predict


def predict_all(predict: Predictor, texts: Sequence[str], chunk: int, desc: str) -> list:
    """Predict in chunks with a progress bar, so a long file shows how far it got."""
    from tqdm import tqdm

    out: list[tuple[float, float]] = []
    with tqdm(total=len(texts), desc=desc, unit="text", file=sys.stderr) as bar:
        for start in range(0, len(texts), chunk):
            part = list(texts[start : start + chunk])
            out.extend(predict(part))
            bar.update(len(part))
    return out


def measure_single_latency(
    predict: Predictor, texts: Sequence[str], samples: int, warmup: int
) -> list[float]:
    """Milliseconds per call of one text at a time, after `warmup` unmeasured calls."""
    chosen = [texts[i % len(texts)] for i in range(samples)]
    for text in chosen[:warmup]:
        predict([text])
    timings = []
    for text in chosen:
        started = time.perf_counter()
        predict([text])
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def evaluate_predictor(
    predict: Predictor,
    data: LabelledTexts,
    temperature: float,
    cfg: EvaluationSection,
    *,
    model: dict[str, Any],
    dataset: dict[str, Any],
    runtime_info: dict[str, Any],
) -> EvaluationResult:
    started = time.perf_counter()
    probs = predict_all(predict, data.texts, 256, f"evaluating {model.get('label', '')}")
    batched_ms = (time.perf_counter() - started) * 1000 / max(len(data), 1)
    single = measure_single_latency(predict, data.texts, cfg.latency_samples, cfg.latency_warmup)
    scored = score_predictions(
        data.texts,
        data.labels,
        [p for p, _ in probs],
        [n for _, n in probs],
        temperature,
        edges=cfg.length_buckets,
        n_bins=cfg.ece_bins,
    )
    return EvaluationResult(
        model=model,
        dataset=dataset,
        metrics=scored["metrics"],
        confusion=scored["confusion"],
        buckets=scored["buckets"],
        reliability=scored["reliability"],
        confidence_histogram=scored["confidence_histogram"],
        latency={
            "batched_ms_per_text": round(batched_ms, 3),
            "single_p50_ms": round(percentile(single, 50), 3),
            "single_p95_ms": round(percentile(single, 95), 3),
            "single_samples": len(single),
        },
        errors=scored["errors"],
        runtime=runtime_info,
        evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
