"""One evaluation step, shared by `python -m evaluation`, the promotion gate and the report:
settings, the registry and the data in one `Context`, and `evaluate_ref` that measures a
version on it (or reuses the cached result of the same version and data)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.outputs import cache_path, record, write_error_analysis
from evaluation.predict import (
    classifier_predictor,
    evaluate_predictor,
    load_classifier,
)
from evaluation.scoring import EvaluationResult
from evaluation.settings import EvaluationConfig, load_evaluation_config
from sentiment.config import load_training_config
from sentiment.data import (
    DataUnavailableError,
    LabelledTexts,
    dataset_slug,
    default_data_file,
    file_sha256,
    read_labelled,
    sample_rows,
)
from training.registry import ModelVersion, Registry


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

    def registry(self) -> Registry:
        return Registry(self.tracking_uri)


def make_context(data_file: str | None = None, cfg: EvaluationConfig | None = None) -> Context:
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


def model_summary(ref: ModelVersion) -> dict[str, Any]:
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
    ref: ModelVersion,
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
    with ctx.registry().downloaded_transformers(ref) as (weights, tokenizer):
        classifier = load_classifier(ref, weights, tokenizer, ecfg.as_served)
        info = {
            "device": classifier.device.type,
            "quantized": classifier.quantized,
            "max_length": classifier.max_length,
            "as_served": ecfg.as_served,
        }
        result = evaluate_predictor(
            classifier_predictor(classifier),
            ctx.data,
            ref.temperature,
            ecfg,
            model=model_summary(ref),
            dataset=ctx.dataset,
            runtime_info=info,
        )
    record(
        ctx.results_dir, result, cached, write_errors, ecfg.log_to_mlflow if log is None else log
    )
    return result
