"""`python -m training.evaluate`: measure one registered model version on a labelled file.

Accuracy, F1, precision, recall, ROC AUC, the confusion matrix, calibration (ECE at
temperature 1 and at the version's fitted temperature, with the reliability bins), accuracy by
text-length bucket and latency per text on this machine. Writes `results/error_analysis.csv`,
appends a row to `results/performance_analysis.csv`, caches the whole result as JSON under
`results/evaluations/` and logs it to the version's MLflow run.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from sentiment.calibration import expected_calibration_error, fit_temperature
from sentiment.config import (
    CONFIG_DIR,
    ConfigError,
    _Strict,
    load_config,
    load_training_config,
)
from sentiment.data import DataUnavailableError, LabelledTexts, read_tsv, resolve_sst2_dir
from sentiment.metrics import classification_metrics, confusion_counts

# --- settings ---------------------------------------------------------------------------------


class EvaluationSection(_Strict):
    data_file: str | None = None
    max_samples: int | None = Field(None, ge=1)
    results_dir: str = "results"
    length_buckets: list[int] = Field(default_factory=lambda: [10, 20, 30])
    ece_bins: int = Field(10, ge=2, le=100)
    latency_samples: int = Field(50, ge=1)
    latency_warmup: int = Field(5, ge=0)
    worst_errors: int = Field(25, ge=0)
    as_served: bool = True
    log_to_mlflow: bool = True


class ReportSection(_Strict):
    pdf: Literal["auto", "always", "never"] = "auto"
    chromium: str = "chromium"


class EvaluationConfig(_Strict):
    evaluation: EvaluationSection = EvaluationSection()
    report: ReportSection = ReportSection()


EVALUATION_ENV: dict[str, tuple[str, ...]] = {
    "EVAL_DATA": ("evaluation", "data_file"),
    "EVAL_MAX_SAMPLES": ("evaluation", "max_samples"),
    "RESULTS_DIR": ("evaluation", "results_dir"),
    "EVAL_LOG_MLFLOW": ("evaluation", "log_to_mlflow"),
    "REPORT_PDF": ("report", "pdf"),
}


def load_evaluation_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> EvaluationConfig:
    import os

    env = os.environ if env is None else env
    path = path or env.get("EVALUATION_CONFIG") or CONFIG_DIR / "evaluation_config.yaml"
    cfg = load_config(EvaluationConfig, path, EVALUATION_ENV, env)
    edges = cfg.evaluation.length_buckets
    if any(b <= a for a, b in itertools.pairwise(edges)) or (edges and edges[0] < 2):
        raise ConfigError(f"{path}: evaluation.length_buckets must rise and start at 2 or more")
    return cfg


# --- which model ------------------------------------------------------------------------------

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w.-]+)|/(?P<version>\d+))$")


def model_uri(value: str | None, name: str, default_alias: str) -> str:
    """Turn MODEL= into a registry URI.

    Accepts a full `models:/name@alias` or `models:/name/3`, `name@alias`, `name/3`,
    a bare alias (`production`) or a bare version number (`3`); empty means the default alias.
    """
    value = (value or "").strip()
    if not value:
        return f"models:/{name}@{default_alias}"
    if value.startswith("models:/"):
        candidate = value
    elif "@" in value or "/" in value:
        candidate = f"models:/{value}"
    elif value.isdigit():
        candidate = f"models:/{name}/{value}"
    else:
        candidate = f"models:/{name}@{value}"
    if not _URI.match(candidate):
        raise ValueError(
            f"cannot read MODEL={value!r}: use an alias (candidate), a version number, "
            "or a URI like models:/sentiment@production or models:/sentiment/3"
        )
    return candidate


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, however it was named."""

    name: str
    version: str
    run_id: str
    requested: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def version_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def temperature(self) -> float:
        return float(self.tags.get("temperature", 1.0))

    @property
    def max_length(self) -> int:
        return int(self.tags.get("max_length", 128))

    @property
    def label(self) -> str:
        alias = f" @{','.join(self.aliases)}" if self.aliases else ""
        return f"{self.name} v{self.version}{alias}"


class ModelNotRegisteredError(LookupError):
    """The URI names no model version in the registry."""


def resolve_model(uri: str, client: Any) -> ModelRef:
    """Look the version up (by alias or number) with an MlflowClient."""
    from mlflow.exceptions import MlflowException

    match = _URI.match(uri)
    if not match:
        raise ValueError(f"not a registry URI: {uri}")
    name = match["name"]
    try:
        if match["alias"]:
            mv = client.get_model_version_by_alias(name, match["alias"])
        else:
            mv = client.get_model_version(name, match["version"])
    except MlflowException:
        raise ModelNotRegisteredError(
            f"no model version {uri} in the MLflow registry; train one with `make train-quick` "
            "or name another with MODEL=models:/<name>@<alias>"
        ) from None
    return ModelRef(
        name=name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        requested=uri,
        tags=dict(mv.tags or {}),
        aliases=tuple(getattr(mv, "aliases", []) or []),
    )


def find_alias(client: Any, name: str, alias: str) -> ModelRef | None:
    """The version an alias points to, or None when the alias is not set."""
    try:
        return resolve_model(f"models:/{name}@{alias}", client)
    except ModelNotRegisteredError:
        return None


# --- data -------------------------------------------------------------------------------------


def default_data_file(data_dir: str | None) -> Path:
    folder = resolve_sst2_dir(data_dir)
    if folder is None:
        raise DataUnavailableError(
            "no SST-2 validation.tsv found; set SENTIMENT_DATA_DIR, or EVAL_DATA to a labelled file"
        )
    return folder / "validation.tsv"


def read_labelled(path: str | Path) -> LabelledTexts:
    """A `sentence,label` file: tab-separated (.tsv) or a CSV with those two columns."""
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"no labelled file at {path}")
    if path.suffix.lower() != ".csv":
        return read_tsv(path)
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"sentence", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the columns 'sentence' and 'label'")
        for line_no, row in enumerate(reader, start=2):
            value = (row["label"] or "").strip()
            if value not in ("0", "1"):
                raise ValueError(f"{path}:{line_no}: label must be 0 or 1, got {value!r}")
            texts.append(row["sentence"] or "")
            labels.append(int(value))
    return LabelledTexts(texts, labels)


def dataset_slug(path: str | Path) -> str:
    """A short name for metric keys: `sst2_validation`, `reviews_amazon`."""
    path = Path(path)
    raw = f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem
    return re.sub(r"[^A-Za-z0-9_]+", "_", raw).strip("_").lower() or "data"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- pure statistics --------------------------------------------------------------------------


def word_count(text: str) -> int:
    return len(text.split())


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """Names for word-count buckets: edges [10, 20] give '1-9', '10-19', '20+'."""
    lows = [1, *edges]
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(lows, edges, strict=False)]
    return [*names, f"{lows[-1]}+"]


def bucket_index(n_words: int, edges: Sequence[int]) -> int:
    return sum(1 for edge in edges if n_words >= edge)


@dataclass(frozen=True)
class BucketStat:
    bucket: str
    n: int
    accuracy: float | None


def accuracy_by_bucket(
    n_words: Sequence[int], correct: Sequence[bool], edges: Sequence[int]
) -> list[BucketStat]:
    """Accuracy per word-count bucket; None where a bucket holds no text."""
    names = bucket_labels(edges)
    totals = [0] * len(names)
    hits = [0] * len(names)
    for words, ok in zip(n_words, correct, strict=True):
        b = bucket_index(words, edges)
        totals[b] += 1
        hits[b] += int(ok)
    return [
        BucketStat(name, total, hit / total if total else None)
        for name, total, hit in zip(names, totals, hits, strict=True)
    ]


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    confidence: float | None
    accuracy: float | None


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int
) -> list[ReliabilityBin]:
    """Equal-width confidence bins, binned as sentiment.calibration.expected_calibration_error."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        out.append(
            ReliabilityBin(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(conf[mask].mean()) if n else None,
                float(ok[mask].mean()) if n else None,
            )
        )
    return out


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve: the chance a random positive outscores a random negative.

    Ties count one half (mid-ranks). None when one class is missing.
    """
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=int)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def margins_from_probabilities(p_pos: Sequence[float], p_neg: Sequence[float]) -> np.ndarray:
    """log(p_pos / p_neg): the logit difference divided by the temperature applied.

    Taken from both probabilities rather than from p_pos alone, so a confident prediction
    (p_pos rounding to 1.0) keeps its margin through the small p_neg.
    """
    pos = np.clip(np.asarray(p_pos, dtype=float), 1e-300, None)
    neg = np.clip(np.asarray(p_neg, dtype=float), 1e-300, None)
    return np.asarray(np.log(pos) - np.log(neg))


def positive_probability(margins: np.ndarray, temperature: float) -> np.ndarray:
    """p(positive) for margins computed at temperature 1, rescaled to `temperature`."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(margins) / temperature)))


def confidence_histogram(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 20
) -> dict[str, list[float] | list[int]]:
    """Counts of correct and wrong predictions per confidence bin over [0.5, 1]."""
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    conf = np.clip(np.asarray(confidences, dtype=float), 0.5, 1.0)
    ok = np.asarray(correct, dtype=bool)
    right, _ = np.histogram(conf[ok], bins=edges)
    wrong, _ = np.histogram(conf[~ok], bins=edges)
    return {"edges": edges.tolist(), "correct": right.tolist(), "wrong": wrong.tolist()}


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


# --- the result -------------------------------------------------------------------------------


@dataclass
class ErrorRow:
    text: str
    label: str
    prediction: str
    confidence: float
    p_positive: float
    n_words: int
    n_chars: int
    bucket: str


@dataclass
class EvaluationResult:
    model: dict[str, Any]
    dataset: dict[str, Any]
    metrics: dict[str, float | None]
    confusion: dict[str, int]
    buckets: list[dict[str, Any]]
    reliability: dict[str, list[dict[str, Any]]]
    confidence_histogram: dict[str, Any]
    latency: dict[str, float]
    errors: list[ErrorRow]
    runtime: dict[str, Any]
    evaluated_at: str

    def bucket_accuracy(self) -> dict[str, float | None]:
        return {b["bucket"]: b["accuracy"] for b in self.buckets}

    def worst_errors(self, n: int) -> list[ErrorRow]:
        return sorted(self.errors, key=lambda e: -e.confidence)[:n]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvaluationResult:
        fields = dict(data)
        fields["errors"] = [ErrorRow(**e) for e in data.get("errors", [])]
        return cls(**fields)


LABELS = ("negative", "positive")


def score_predictions(
    texts: Sequence[str],
    labels: Sequence[int],
    p_pos: Sequence[float],
    p_neg: Sequence[float],
    temperature: float,
    *,
    edges: Sequence[int],
    n_bins: int,
) -> dict[str, Any]:
    """Every quality figure of one evaluation, from the served (calibrated) probabilities."""
    y = np.asarray(labels, dtype=int)
    margins = margins_from_probabilities(p_pos, p_neg)
    # The margins come from probabilities at `temperature`: undo it to get the raw model's.
    raw_margins = margins * temperature
    prob_cal = positive_probability(raw_margins, temperature)
    prob_raw = positive_probability(raw_margins, 1.0)
    preds = (raw_margins > 0).astype(int)
    correct = preds == y
    conf_cal = np.maximum(prob_cal, 1 - prob_cal)
    conf_raw = np.maximum(prob_raw, 1 - prob_raw)
    refit = fit_temperature(np.stack([np.zeros_like(raw_margins), raw_margins], axis=1), y)
    n_words = [word_count(t) for t in texts]
    metrics: dict[str, float | None] = {
        **classification_metrics(y.tolist(), preds.tolist()),
        "roc_auc": roc_auc(y.tolist(), prob_raw.tolist()),
        "ece_uncalibrated": expected_calibration_error(conf_raw, correct, n_bins),
        "ece_calibrated": expected_calibration_error(conf_cal, correct, n_bins),
        "temperature": float(temperature),
        "temperature_refit": refit,
        "mean_confidence": float(conf_cal.mean()) if len(y) else 0.0,
    }
    names = bucket_labels(edges)
    errors = [
        ErrorRow(
            text=texts[i],
            label=LABELS[int(y[i])],
            prediction=LABELS[int(preds[i])],
            confidence=round(float(conf_cal[i]), 6),
            p_positive=round(float(prob_cal[i]), 6),
            n_words=n_words[i],
            n_chars=len(texts[i]),
            bucket=names[bucket_index(n_words[i], edges)],
        )
        for i in np.flatnonzero(~correct).tolist()
    ]
    return {
        "metrics": metrics,
        "confusion": confusion_counts(y.tolist(), preds.tolist()),
        "buckets": [asdict(b) for b in accuracy_by_bucket(n_words, correct.tolist(), edges)],
        "reliability": {
            "calibrated": [asdict(b) for b in reliability_bins(conf_cal, correct, n_bins)],
            "uncalibrated": [asdict(b) for b in reliability_bins(conf_raw, correct, n_bins)],
        },
        "confidence_histogram": confidence_histogram(conf_cal, correct),
        "errors": errors,
    }


# --- running a model --------------------------------------------------------------------------

Predictor = Callable[[list[str]], list[tuple[float, float]]]


@contextmanager
def downloaded_model(ref: ModelRef) -> Iterator[tuple[Path, Path]]:
    """The version's transformers weights and tokenizer folders, in a temporary copy."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="sentiment-eval-") as tmp:
        root = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.version_uri, dst_path=tmp))
        weights = root / "model"
        tokenizer = root / "components" / "tokenizer"
        if not (weights / "config.json").is_file():
            raise ModelNotRegisteredError(
                f"{ref.version_uri} holds no transformers weights under model/ (is it a "
                "mlflow.transformers model?)"
            )
        yield weights, tokenizer if tokenizer.is_dir() else weights


def load_runtime(ref: ModelRef, weights: Path, tokenizer: Path, as_served: bool) -> Any:
    from sentiment.config import load_serving_config
    from sentiment.runtime import SentimentRuntime, serving_options

    options = serving_options(load_serving_config().model)
    if not as_served:
        options.update(device="cpu", quantize=False)
    return SentimentRuntime(
        weights, tokenizer, max_length=ref.max_length, temperature=ref.temperature, **options
    )


def runtime_predictor(runtime: Any) -> Predictor:
    def predict(texts: list[str]) -> list[tuple[float, float]]:
        return [
            (p.probabilities["positive"], p.probabilities["negative"])
            for p in runtime.predict(texts)
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


# --- records ----------------------------------------------------------------------------------

# The headline metrics, in the order of the CSV columns.
METRIC_COLUMNS = (
    "accuracy",
    "f1",
    "precision",
    "recall",
    "roc_auc",
    "ece_uncalibrated",
    "ece_calibrated",
    "temperature",
)
PERFORMANCE_COLUMNS = (
    "evaluated_at",
    "model_name",
    "model_version",
    "model_uri",
    "run_id",
    "dataset",
    "dataset_sha256",
    "n",
    *METRIC_COLUMNS,
    "latency_ms_batched",
    "latency_ms_p50",
    "latency_ms_p95",
    "bucket_accuracy",
    "device",
    "quantized",
)


def performance_row(result: EvaluationResult) -> dict[str, Any]:
    m = result.metrics

    def fmt(value: float | None) -> str:
        return "" if value is None else f"{value:.6f}"

    return {
        "evaluated_at": result.evaluated_at,
        "model_name": result.model["name"],
        "model_version": result.model["version"],
        "model_uri": result.model["uri"],
        "run_id": result.model["run_id"],
        "dataset": result.dataset["name"],
        "dataset_sha256": result.dataset["sha256"],
        "n": result.dataset["n"],
        **{k: fmt(m.get(k)) for k in METRIC_COLUMNS},
        "latency_ms_batched": result.latency["batched_ms_per_text"],
        "latency_ms_p50": result.latency["single_p50_ms"],
        "latency_ms_p95": result.latency["single_p95_ms"],
        "bucket_accuracy": json.dumps(result.bucket_accuracy(), sort_keys=True),
        "device": result.runtime.get("device", ""),
        "quantized": result.runtime.get("quantized", ""),
    }


def append_performance_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one run; a file written with other columns is rewritten with the union of both."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(PERFORMANCE_COLUMNS)
    if path.is_file() and path.stat().st_size:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            old_columns = list(reader.fieldnames or [])
            if old_columns != columns:
                rows = list(reader)
                merged = old_columns + [c for c in columns if c not in old_columns]
                with open(path, "w", encoding="utf-8", newline="") as out:
                    writer = csv.DictWriter(out, fieldnames=merged, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(rows)
                columns = merged
        with open(path, "a", encoding="utf-8", newline="") as handle:
            csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore").writerow(dict(row))
        return
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerow(dict(row))


def write_error_analysis(path: Path, result: EvaluationResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["model_version", *ErrorRow.__dataclass_fields__]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for error in sorted(result.errors, key=lambda e: -e.confidence):
            writer.writerow({"model_version": result.model["version"], **asdict(error)})


def cache_path(results_dir: Path, ref: ModelRef, dataset: Mapping[str, Any], as_served: bool):
    mode = "served" if as_served else "fp32"
    key = f"{ref.name}-v{ref.version}__{dataset['name']}-{dataset['sha256'][:12]}-{mode}.json"
    return results_dir / "evaluations" / key


def mlflow_metrics(result: EvaluationResult) -> dict[str, float]:
    """Flat metric keys under `eval.<dataset>.`: MLflow keeps a history of each."""
    prefix = f"eval.{result.dataset['name']}"
    out = {f"{prefix}.{k}": float(v) for k, v in result.metrics.items() if v is not None}
    for key, value in result.latency.items():
        out[f"{prefix}.latency_{key}"] = float(value)
    for bucket in result.buckets:
        if bucket["accuracy"] is not None:
            name = bucket["bucket"].replace("+", "plus")
            out[f"{prefix}.accuracy_words_{name}"] = float(bucket["accuracy"])
    return out


def log_to_mlflow(result: EvaluationResult, artifacts: Sequence[Path]) -> None:
    import mlflow

    run_id = result.model["run_id"]
    if not run_id:
        return
    stamp = result.evaluated_at.replace(":", "").replace("-", "")
    folder = f"evaluation/{result.dataset['name']}/{stamp}"
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(mlflow_metrics(result))
        summary = {k: v for k, v in result.to_json().items() if k != "errors"}
        mlflow.log_dict(summary, f"{folder}/evaluation.json")
        for path in artifacts:
            if path.is_file():
                mlflow.log_artifact(str(path), artifact_path=folder)


# --- the whole step ---------------------------------------------------------------------------


@dataclass
class Context:
    """What every validation command shares: settings, the registry, the data."""

    cfg: EvaluationConfig
    tracking_uri: str
    model_name: str
    candidate_alias: str
    data_path: Path
    data: LabelledTexts
    dataset: dict[str, Any]

    @property
    def results_dir(self) -> Path:
        return Path(self.cfg.evaluation.results_dir)

    def client(self) -> Any:
        return registry_client(self.tracking_uri)


def registry_client(tracking_uri: str) -> Any:
    """An MlflowClient, with the fluent API (used to log) pointed at the same store."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri)


def make_context(data_file: str | None = None, cfg: EvaluationConfig | None = None) -> Context:
    from sentiment.data import sample_rows

    training = load_training_config()
    cfg = cfg or load_evaluation_config()
    path = Path(data_file or cfg.evaluation.data_file or default_data_file(training.data.data_dir))
    full = read_labelled(path)
    if not len(full):
        raise DataUnavailableError(f"{path} holds no labelled rows")
    data = sample_rows(full, cfg.evaluation.max_samples, 0)
    dataset = {
        "name": dataset_slug(path),
        "path": str(path.resolve()),
        "sha256": file_sha256(path),
        "n": len(data),
        "rows_in_file": len(full),
    }
    if cfg.evaluation.max_samples:
        dataset["sha256"] = hashlib.sha256(
            f"{dataset['sha256']}:{cfg.evaluation.max_samples}".encode()
        ).hexdigest()
    return Context(
        cfg,
        training.mlflow.tracking_uri,
        training.mlflow.registered_model_name,
        training.mlflow.alias,
        path,
        data,
        dataset,
    )


def model_summary(ref: ModelRef) -> dict[str, Any]:
    return {
        "name": ref.name,
        "version": ref.version,
        "uri": ref.requested,
        "run_id": ref.run_id,
        "aliases": list(ref.aliases),
        "label": ref.label,
        "val_f1_training": ref.tags.get("val_f1"),
    }


def evaluate_ref(
    ctx: Context,
    ref: ModelRef,
    *,
    use_cache: bool = True,
    write_errors: bool = False,
    log: bool | None = None,
) -> EvaluationResult:
    """Evaluate one version on ctx's data (or reuse the cached result of the same pair)."""
    ecfg = ctx.cfg.evaluation
    cached = cache_path(ctx.results_dir, ref, ctx.dataset, ecfg.as_served)
    if use_cache and cached.is_file():
        result = EvaluationResult.from_json(json.loads(cached.read_text(encoding="utf-8")))
        result.model = {**result.model, **model_summary(ref)}
        if write_errors:
            write_error_analysis(ctx.results_dir / "error_analysis.csv", result)
        return result
    with downloaded_model(ref) as (weights, tokenizer):
        runtime = load_runtime(ref, weights, tokenizer, ecfg.as_served)
        info = {
            "device": runtime.device.type,
            "quantized": runtime.quantized,
            "max_length": runtime.max_length,
            "as_served": ecfg.as_served,
        }
        result = evaluate_predictor(
            runtime_predictor(runtime),
            ctx.data,
            ref.temperature,
            ecfg,
            model=model_summary(ref),
            dataset=ctx.dataset,
            runtime_info=info,
        )
    record(ctx, result, cached, write_errors, ecfg.log_to_mlflow if log is None else log)
    return result


def record(
    ctx: Context, result: EvaluationResult, cached: Path, write_errors: bool, log: bool
) -> None:
    from training.report import reliability_png

    results = ctx.results_dir
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
    append_performance_row(results / "performance_analysis.csv", performance_row(result))
    artifacts = [cached]
    if write_errors:
        write_error_analysis(results / "error_analysis.csv", result)
        artifacts.append(results / "error_analysis.csv")
    diagram = results / f"reliability_{result.model['name']}_v{result.model['version']}.png"
    diagram.write_bytes(reliability_png(result))
    artifacts.append(diagram)
    if log:
        log_to_mlflow(result, artifacts)


def format_table(result: EvaluationResult) -> str:
    """The headline figures as a Markdown table (printed, and pasted into docs)."""
    m = result.metrics
    lat = result.latency
    c = result.confusion
    rows = [
        ("accuracy", f"{m['accuracy']:.4f}"),
        ("F1", f"{m['f1']:.4f}"),
        ("precision", f"{m['precision']:.4f}"),
        ("recall", f"{m['recall']:.4f}"),
        ("ROC AUC", "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"),
        ("ECE, temperature 1", f"{m['ece_uncalibrated']:.4f}"),
        (f"ECE, temperature {m['temperature']:.3f}", f"{m['ece_calibrated']:.4f}"),
        ("confusion (tn fp / fn tp)", f"{c['tn']} {c['fp']} / {c['fn']} {c['tp']}"),
        *(
            (
                f"accuracy, {b['bucket']} words (n={b['n']})",
                "n/a" if b["accuracy"] is None else f"{b['accuracy']:.4f}",
            )
            for b in result.buckets
        ),
        ("latency per text, batched", f"{lat['batched_ms_per_text']:.2f} ms"),
        (
            "latency per text, one at a time p50 / p95",
            (f"{lat['single_p50_ms']:.2f} / {lat['single_p95_ms']:.2f} ms"),
        ),
    ]
    head = (
        f"{result.model['label']} on {result.dataset['name']} "
        f"({result.dataset['n']} texts, {result.runtime.get('device')}, "
        f"quantized={result.runtime.get('quantized')})"
    )
    lines = [head, "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="alias, version, or models:/ URI (default: candidate)")
    parser.add_argument("--data", help="labelled TSV/CSV (default: SST-2 validation)")
    parser.add_argument(
        "--cached", action="store_true", help="reuse an earlier result of the same version and data"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to the MLflow run")
    parser.add_argument(
        "--fail-below-f1",
        type=float,
        metavar="F1",
        help="exit 1 when F1 is under this (scheduled validation: fail loudly)",
    )
    args = parser.parse_args(argv)
    try:
        ctx = make_context(args.data)
        uri = model_uri(args.model, ctx.model_name, ctx.candidate_alias)
        ref = resolve_model(uri, ctx.client())
        result = evaluate_ref(
            ctx,
            ref,
            use_cache=args.cached,
            write_errors=True,
            log=False if args.no_mlflow else None,
        )
    except (ConfigError, DataUnavailableError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    out = ctx.results_dir
    print(
        f"\nwrote {out / 'error_analysis.csv'} ({len(result.errors)} errors), "
        f"appended to {out / 'performance_analysis.csv'}"
    )
    f1 = float(result.metrics["f1"] or 0.0)
    if args.fail_below_f1 is not None and f1 < args.fail_below_f1:
        print(f"FAIL: F1 {f1:.4f} is under {args.fail_below_f1:.4f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
