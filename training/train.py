"""`python -m training.train`: fine-tune on SST-2, log to MLflow, register, set the alias."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.calibration import (
    expected_calibration_error,
    fit_temperature,
    softmax_with_temperature,
)
from sentiment.config import (
    ConfigError,
    TrainingConfig,
    load_training_config,
    training_config_path,
)
from sentiment.data import (
    DataUnavailableError,
    LabelledTexts,
    holdout_split,
    label_counts,
    load_splits,
    rows_with_min_words,
    sample_rows,
)
from training.distributed import world_from_env
from training.finetune import EpochResult, FinetuneResult, finetune
from training.registry import Registry


@dataclass
class TrainingOutcome:
    run_id: str
    model_name: str
    version: str
    alias: str
    metrics: dict[str, float]
    temperature: float
    train_seconds: float


def prepare_data(cfg: TrainingConfig) -> tuple[LabelledTexts, LabelledTexts]:
    """Training rows (hold-out removed, filtered, then sampled) and the evaluation split."""
    eval_split = cfg.data.eval_splits[0]
    splits = load_splits(
        [cfg.data.train_split, eval_split], cfg.data.data_dir, cfg.data.dataset, cfg.data.task
    )
    train, _ = select_training_rows(splits[cfg.data.train_split], cfg)
    evaluation = sample_rows(splits[eval_split], cfg.training.max_eval_samples, 0)
    return train, evaluation


def select_training_rows(
    full_train: LabelledTexts, cfg: TrainingConfig
) -> tuple[LabelledTexts, list[int]]:
    """The rows a model trained with `cfg` saw, and the hold-out's row numbers in `full_train`.

    The drift benchmark calls this too: its "no drift" pool must be sentences the model never
    saw."""
    train_rows, holdout_rows = holdout_split(
        len(full_train), cfg.data.holdout_size, cfg.training.seed
    )
    pool = rows_with_min_words(full_train.subset(train_rows), cfg.data.min_words)
    return sample_rows(pool, cfg.training.max_train_samples, 0), holdout_rows


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's inference of requirements imports torchvision and fails."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}" for name in ("transformers", "torch", "tokenizers", "mlflow")
    ]


def pyfunc_inference_config(cfg: TrainingConfig) -> dict[str, Any]:
    """The logged pipeline's call settings; scoring.spark may override these keys only."""
    return {"truncation": True, "max_length": cfg.model.max_length, "batch_size": 32}


def log_and_register(
    cfg: TrainingConfig,
    config_path: Path,
    result: FinetuneResult,
    evaluation: LabelledTexts,
    n_train: int,
) -> TrainingOutcome:
    import mlflow
    from transformers import pipeline

    labels = np.asarray(evaluation.labels)
    logits = result.eval_logits if result.eval_logits is not None else np.zeros((0, 2))
    temperature = fit_temperature(logits, labels)
    ece = {}
    for name, t in (("ece_uncalibrated", 1.0), ("ece_calibrated", temperature)):
        probs = softmax_with_temperature(logits, t)
        ece[name] = expected_calibration_error(probs.max(1), probs.argmax(1) == labels)

    run = mlflow.active_run()
    assert run is not None
    mlflow.log_metrics({f"best_{k}": v for k, v in result.best_metrics.items()})
    mlflow.log_metrics({"train_seconds": result.train_seconds, "temperature": temperature, **ece})
    mlflow.log_artifact(str(config_path), artifact_path="config")
    clf = pipeline("text-classification", model=result.model, tokenizer=result.tokenizer)
    info = mlflow.transformers.log_model(
        transformers_model=clf,
        name="model",
        task="text-classification",
        pip_requirements=pip_requirements(),
        registered_model_name=cfg.mlflow.registered_model_name,
        metadata={"temperature": temperature},
        # How every pyfunc consumer (mlflow.pyfunc.spark_udf in scoring/, `mlflow models
        # serve`) calls the pipeline: truncated as the service truncates, in batches.
        model_config=pyfunc_inference_config(cfg),
    )
    version = str(info.registered_model_version)
    registry = Registry(cfg.mlflow.tracking_uri)
    name = cfg.mlflow.registered_model_name
    registry.set_alias(name, cfg.mlflow.alias, version)
    tags = {
        "val_accuracy": result.best_metrics["accuracy"],
        "val_f1": result.best_metrics["f1"],
        "temperature": temperature,
        "train_sentences": n_train,
        "base_model": cfg.model.base_model,
        "max_length": cfg.model.max_length,
    }
    registry.set_version_tags(name, version, tags)
    return TrainingOutcome(
        run.info.run_id,
        name,
        version,
        cfg.mlflow.alias,
        result.best_metrics,
        temperature,
        result.train_seconds,
    )


def run_training(
    cfg: TrainingConfig,
    config_path: Path,
    *,
    data: tuple[LabelledTexts, LabelledTexts] | None = None,
    on_run_start: Callable[[], None] | None = None,
) -> TrainingOutcome | None:
    """Train, log and register; under torchrun only rank 0 talks to MLflow (None elsewhere).

    `data` replaces prepare_data's (training, evaluation) rows; `on_run_start` runs inside the
    MLflow run, after the parameters are logged (training/retrain.py logs its lineage there)."""
    import mlflow

    train, evaluation = data if data is not None else prepare_data(cfg)
    world = world_from_env()
    if not world.is_main:
        finetune(cfg, train, evaluation)
        return None
    print(
        f"training on {len(train)} sentences {dict(label_counts(train.labels))}, "
        f"evaluating on {len(evaluation)}"
    )
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    mlflow.set_experiment(cfg.mlflow.experiment_name)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {
                **{f"model.{k}": v for k, v in cfg.model.model_dump().items()},
                **{f"training.{k}": v for k, v in cfg.training.model_dump().items()},
                "data.source": cfg.data.data_dir or f"{cfg.data.dataset}/{cfg.data.task}",
                "data.holdout_size": cfg.data.holdout_size,
                "data.train_sentences": len(train),
                "data.eval_sentences": len(evaluation),
                "training.processes": world.size,
            }
        )
        if on_run_start is not None:
            on_run_start()

        def log_epoch(epoch: EpochResult) -> None:
            mlflow.log_metrics(
                {
                    "train_loss": epoch.train_loss,
                    "eval_loss": epoch.eval_loss,
                    **{f"eval_{k}": v for k, v in epoch.metrics.items()},
                    "epoch_seconds": epoch.seconds,
                },
                step=epoch.epoch,
            )

        result = finetune(cfg, train, evaluation, on_epoch=log_epoch)
        mlflow.set_tag("device", result.device)
        outcome = log_and_register(cfg, config_path, result, evaluation, len(train))
        print(f"mlflow run {run.info.run_id}")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="training YAML (default: $CONFIG or the full profile)")
    parser.add_argument("--json", help="also write the outcome as JSON to this file")
    args = parser.parse_args(argv)
    try:
        cfg = load_training_config(args.config)
        config_path = training_config_path(args.config)
        started = time.perf_counter()
        outcome = run_training(cfg, config_path)
    except (ConfigError, DataUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if outcome is None:
        return 0  # a torchrun rank other than 0: it trained; rank 0 logs and registers
    total = time.perf_counter() - started
    print(
        f"registered {outcome.model_name} version {outcome.version} as @{outcome.alias}: "
        f"accuracy={outcome.metrics['accuracy']:.4f} f1={outcome.metrics['f1']:.4f} "
        f"temperature={outcome.temperature:.3f} "
        f"(fine-tuning {outcome.train_seconds:.0f} s, whole run {total:.0f} s)"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**outcome.__dict__, "total_seconds": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
