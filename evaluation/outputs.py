"""What an evaluation leaves behind: the performance CSV row, the error analysis, the cached
result, the reliability diagram, the metrics on the version's MLflow run, the printed table."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evaluation.figures import reliability_png
from evaluation.scoring import ErrorRow, EvaluationResult
from training.registry import ModelVersion

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


def cache_path(
    results_dir: Path, ref: ModelVersion, dataset: Mapping[str, Any], as_served: bool
) -> Path:
    mode = "served" if as_served else "fp32"
    # The run id too: a fresh mlflow.db (or another tracking server) numbers its first version 1
    # again, and a result cached for another model's "v1" must not judge this one.
    version = f"{ref.name}-v{ref.version}-{ref.run_id[:12]}"
    key = f"{version}__{dataset['name']}-{dataset['sha256'][:12]}-{mode}.json"
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


def record(
    results: Path, result: EvaluationResult, cached: Path, write_errors: bool, log: bool
) -> None:
    """Cache the result, append its CSV row, draw its reliability diagram, log it to MLflow."""
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
