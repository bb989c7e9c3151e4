"""`python -m evaluation.drift_check`: does a labelled batch drift from the model's reference?

The scheduled validation's drift step. The model (MODEL=, default production) is run as the
service runs it over its reference split (monitoring_config.yaml's, SST-2 validation) and over
the batch; the monitoring package's four tests (confidence, label, length, embeddings; Holm
corrected) compare the two. Writes `results/drift_check.json`; exits 1 on drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.predict import load_classifier
from evaluation.promote import load_promotion_config
from evaluation.settings import load_evaluation_config
from monitoring.config import load_monitoring_config
from monitoring.drift import DriftSettings, drift_report, run_tests
from monitoring.reference import build_reference, label_index
from monitoring.window import WindowData
from sentiment.config import ConfigError, load_training_config
from sentiment.data import DataUnavailableError, default_data_file, read_labelled
from serving.classifier import predict_in_chunks
from training.registry import Registry, model_uri


def window_from_predictions(
    predictions: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> WindowData:
    """The monitoring package's WindowData from raw prediction dicts (in order)."""
    with_embeddings = [p["embedding"] for p in predictions if p.get("embedding") is not None]
    return WindowData(
        confidence=np.asarray([p["confidence"] for p in predictions], np.float32),
        label=np.asarray([label_index(p["label"], labels) for p in predictions], np.int8),
        n_chars=np.asarray([p["n_chars"] for p in predictions], np.int32),
        n_tokens=np.asarray([p["n_tokens"] for p in predictions], np.int32),
        embeddings=(
            np.asarray(with_embeddings, np.float32)
            if len(with_embeddings) == len(predictions)
            else None
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="alias, version or models:/ URI (default: production)")
    parser.add_argument("--data", required=True, help="the batch: a labelled TSV/CSV")
    parser.add_argument("--out", help="JSON file (default: <results>/drift_check.json)")
    args = parser.parse_args(argv)
    try:
        training = load_training_config()
        monitoring = load_monitoring_config()
        evaluation = load_evaluation_config()
        production = load_promotion_config().registry.production_alias
        registry = training.mlflow
        uri = model_uri(args.model or production, registry.registered_model_name, production)
        mlflow_registry = Registry(registry.tracking_uri)
        ref = mlflow_registry.resolve(uri)
        split_file = default_data_file(training.data.data_dir).with_name(
            f"{monitoring.reference.split}.tsv"
        )
        reference_data = read_labelled(split_file)
        batch = read_labelled(args.data)
    except (ConfigError, DataUnavailableError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = monitoring.drift
    with mlflow_registry.downloaded_transformers(ref) as (weights, tokenizer):
        classifier = load_classifier(ref, weights, tokenizer, evaluation.evaluation.as_served)
    batch_size = monitoring.reference.batch_size
    reference = build_reference(
        predict_in_chunks(classifier, reference_data.texts, batch_size, "drift reference"),
        reference_data.labels,
        max_embeddings=monitoring.reference.max_embeddings,
        source=str(split_file),
        labels=classifier.labels,
    )
    window = window_from_predictions(
        predict_in_chunks(classifier, batch.texts, batch_size, "batch"), classifier.labels
    )
    settings = DriftSettings(
        window_size=len(window),
        threshold=cfg.threshold,
        min_window=cfg.min_window,
        length_feature=cfg.length_feature,
        mmd_permutations=cfg.mmd_permutations,
        mmd_max_samples=cfg.mmd_max_samples,
        seed=cfg.seed,
    )
    report = drift_report(
        run_tests(reference, window, settings), cfg.threshold, len(window), cfg.min_window
    )
    report = {"model": ref.label, "reference": str(split_file), "batch": args.data, **report}
    out = Path(args.out or Path(evaluation.evaluation.results_dir) / "drift_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    for name, test in report["tests"].items():
        shown = test.get("status") or f"adjusted p={test['adjusted_p_value']}"
        print(f"  {name:15s} {shown}")
    print(f"{report['status']} ({len(window)} texts of {args.data} vs {split_file}); wrote {out}")
    return 1 if report["drift_detected"] else 0


if __name__ == "__main__":
    sys.exit(main())
