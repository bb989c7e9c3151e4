"""`python -m training.retrain` (`make retrain`): a training run on SST-2 plus the labelled
feedback the service collected, then the evaluation and the promotion gate on the new version.

Steps, one line each on stdout (`retrain: <step>: <outcome>`):

1. **feedback**: the labelled predictions whose text was stored, read from the prediction store
   (read-only; the service's database unless `retrain.feedback_database` or
   SENTIMENT_FEEDBACK_DATABASE names another), one example per text (the latest label wins),
   texts of the SST-2 evaluation split dropped, `retrain.holdout_fraction` of the texts held
   out by digest (training/feedback.py). Fewer texts than `retrain.min_feedback`: nothing is
   trained (exit 3).
2. **train**: training.train's run on the CONFIG profile with the feedback examples added to its
   SST-2 rows; the run records its data lineage (`mlflow.data` datasets with their digests,
   the feedback counts and time range as parameters and tags), registers the version and
   points the training alias (`candidate`) at it.
3. **evaluate**: `python -m evaluation --model <version>`, as `make evaluate` runs it (SST-2
   validation); then the same on the held-out feedback, whose accuracy is also logged to the
   run as `feedback_holdout_accuracy` and tagged on the version.
4. **promotion gate**: `python -m evaluation.promote --model <version>`, as `make promote`
   runs it; its decision is tagged on the version (`promotion.*`).

Exit status: 0 when every step ran, whatever the gate decided; 1 when a step failed; 2 for a
setting, data or database that cannot be used; 3 when skipped for too little feedback. The
evaluation steps run as their own commands (training sits below evaluation in the layers).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentiment.config import (
    ConfigError,
    TrainingConfig,
    load_serving_config,
    load_training_config,
    training_config_path,
)
from sentiment.data import DataUnavailableError, LabelledTexts, load_splits, resolve_sst2_dir
from training.feedback import (
    FeedbackData,
    as_labelled,
    dataset_digest,
    deduplicate,
    feedback_database_url,
    iso_utc,
    prepare_feedback,
    read_feedback_rows,
    safe_url,
    time_range,
)
from training.registry import LineageDataset, Registry, log_lineage

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2
EXIT_SKIPPED = 3

# Written as <tmp>/feedback/holdout.csv: evaluation names its metrics eval.feedback_holdout.*.
HOLDOUT_SLUG = "feedback_holdout"
HOLDOUT_METRIC = "feedback_holdout_accuracy"
# Evaluation's metric keys (evaluation/outputs.py, mlflow_metrics).
EVAL_PREFIX = "eval."


def say(step: str, outcome: str) -> None:
    print(f"retrain: {step}: {outcome}", flush=True)


@dataclass
class RetrainReport:
    """What one retraining did; `--json` writes it (timestamps are unix seconds)."""

    started_at: float
    feedback: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    version: str = ""
    run_id: str = ""
    alias: str = ""
    registered_at: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    decision: str = ""
    decided_at: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int = EXIT_OK

    def step(self, name: str, outcome: str, ok: bool) -> None:
        self.steps.append({"step": name, "outcome": outcome, "ok": ok, "at": time.time()})
        say(name, outcome)


# --- pure helpers -----------------------------------------------------------------------------


def feedback_summary(data: FeedbackData, excluded: int, textless: int) -> dict[str, Any]:
    """The counts and time range recorded as parameters and printed."""
    span = time_range(data.examples)
    return {
        "labels_read": data.rows_read,
        "labels_without_text": textless,
        "unknown_labels": data.unknown_labels,
        "texts": len(data.examples),
        "dropped_in_eval_split": excluded,
        "train": len(data.train),
        "holdout": len(data.holdout),
        "first_label_at": iso_utc(span[0]) if span else "none",
        "last_label_at": iso_utc(span[1]) if span else "none",
    }


def combine(sst2: LabelledTexts, extra: LabelledTexts) -> LabelledTexts:
    return LabelledTexts(sst2.texts + extra.texts, sst2.labels + extra.labels)


def lineage(
    cfg: TrainingConfig,
    sst2_train: LabelledTexts,
    evaluation: LabelledTexts,
    data: FeedbackData,
    summary: Mapping[str, Any],
    database: str,
) -> tuple[list[LineageDataset], dict[str, Any], dict[str, str]]:
    """The run's datasets, parameters and tags (database: a URL without its password)."""
    folder = resolve_sst2_dir(cfg.data.data_dir)

    def sst2_source(split: str) -> str:
        if folder is not None:
            return str((folder / f"{split}.tsv").resolve())
        return f"hf://datasets/{cfg.data.dataset}/{cfg.data.task}/{split}"

    train_fb = as_labelled(data.train)
    holdout_fb = as_labelled(data.holdout)
    eval_split = cfg.data.eval_splits[0]
    datasets = [
        LineageDataset(
            "sst2_train",
            "training",
            sst2_source(cfg.data.train_split),
            sst2_train.texts,
            sst2_train.labels,
            dataset_digest(sst2_train),
        ),
        LineageDataset(
            "feedback_train",
            "training",
            database,
            train_fb.texts,
            train_fb.labels,
            dataset_digest(train_fb),
        ),
        LineageDataset(
            HOLDOUT_SLUG,
            "evaluation",
            database,
            holdout_fb.texts,
            holdout_fb.labels,
            dataset_digest(holdout_fb),
        ),
        LineageDataset(
            f"sst2_{eval_split}",
            "evaluation",
            sst2_source(eval_split),
            evaluation.texts,
            evaluation.labels,
            dataset_digest(evaluation),
        ),
    ]
    params: dict[str, Any] = {f"feedback.{k}": v for k, v in summary.items()}
    params["feedback.database"] = database
    params["feedback.holdout_fraction"] = cfg.retrain.holdout_fraction
    params["data.sst2_train_sentences"] = len(sst2_train)
    for ds in datasets:
        params[f"data.{ds.name}.digest"] = ds.digest
    tags = {
        "sentiment.run_kind": "retrain",
        "retrain.feedback_count": str(summary["texts"]),
        "retrain.feedback_from": str(summary["first_label_at"]),
        "retrain.feedback_to": str(summary["last_label_at"]),
    }
    return datasets, params, tags


def eval_metrics(metrics: Mapping[str, float], slug: str) -> dict[str, float]:
    """One evaluation's metrics of a run, without the `eval.<slug>.` prefix."""
    prefix = f"{EVAL_PREFIX}{slug}."
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def new_eval_slugs(before: Mapping[str, float], after: Mapping[str, float]) -> list[str]:
    """The datasets an evaluation step added to the run (by their `eval.<slug>.accuracy`)."""
    slugs = []
    for key in after:
        if key.startswith(EVAL_PREFIX) and key.endswith(".accuracy") and key not in before:
            slugs.append(key.removeprefix(EVAL_PREFIX).removesuffix(".accuracy"))
    return sorted(slugs)


def write_holdout(data: LabelledTexts, folder: Path) -> Path:
    """The held-out feedback as a `sentence,label` CSV (quoted: texts may hold tabs or lines)."""
    path = folder / "feedback" / "holdout.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "label"])
        writer.writerows(zip(data.texts, data.labels, strict=True))
    return path


# --- the steps --------------------------------------------------------------------------------


def database_of(cfg: TrainingConfig) -> str:
    """The prediction store's URL, found as the service finds it."""
    from serving.store import bentoml_store_path

    serving = "" if cfg.retrain.feedback_database else load_serving_config().feedback.database
    return feedback_database_url(cfg.retrain.feedback_database, serving, bentoml_store_path())


def run_module(args: Sequence[str], env: Mapping[str, str]) -> int:
    """`python -m <args>` with this interpreter; its output goes where ours goes."""
    sys.stdout.flush()
    return subprocess.run([sys.executable, "-m", *args], env=dict(env), check=False).returncode


def retrain(cfg: TrainingConfig, config_path: Path, report: RetrainReport) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from training.train import prepare_data, run_training

    try:
        url = database_of(cfg)
        rows, textless = read_feedback_rows(url)
    except SQLAlchemyError as exc:
        report.step("feedback", f"failed: cannot read the prediction store ({exc.code})", False)
        return EXIT_UNUSABLE
    database = safe_url(url)
    # Too few texts even before the evaluation split's are dropped: no need to load SST-2.
    enough = len(deduplicate(rows)[0]) >= cfg.retrain.min_feedback
    sst2_train, evaluation = prepare_data(cfg) if enough else (LabelledTexts([], []),) * 2
    # The whole evaluation split (the gate measures on it), not training's sample of it.
    split = cfg.data.eval_splits[0]
    full_eval = (
        load_splits([split], cfg.data.data_dir, cfg.data.dataset, cfg.data.task)[split]
        if enough
        else LabelledTexts([], [])
    )
    data, excluded = prepare_feedback(rows, cfg.retrain.holdout_fraction, full_eval.texts)
    summary = feedback_summary(data, excluded, textless)
    report.feedback = {**summary, "database": database}
    report.step(
        "feedback",
        f"{summary['texts']} labelled texts from {database} ({summary['labels_read']} labels, "
        f"{textless} without a stored text, {excluded} in the SST-2 evaluation split dropped)"
        + (
            f", labelled {summary['first_label_at']} to {summary['last_label_at']}"
            if data.examples
            else ""
        )
        + f"; {summary['train']} to train on, {summary['holdout']} held out",
        True,
    )
    if summary["texts"] < cfg.retrain.min_feedback:
        report.step(
            "skipped",
            f"{summary['texts']} labelled feedback texts, fewer than retrain.min_feedback="
            f"{cfg.retrain.min_feedback}: no model trained",
            True,
        )
        return EXIT_SKIPPED

    datasets, params, tags = lineage(cfg, sst2_train, evaluation, data, summary, database)
    train = combine(sst2_train, as_labelled(data.train))
    outcome = run_training(
        cfg,
        config_path,
        data=(train, evaluation),
        on_run_start=lambda: log_lineage(datasets, params, tags),
    )
    if outcome is None:
        return EXIT_OK  # a torchrun rank other than 0: rank 0 registers and evaluates
    report.model_name, report.version = outcome.model_name, outcome.version
    report.run_id, report.alias = outcome.run_id, outcome.alias
    report.registered_at = time.time()
    registry = Registry(cfg.mlflow.tracking_uri)
    registry.set_version_tags(
        outcome.model_name,
        outcome.version,
        {
            "retrain.feedback_count": summary["texts"],
            "retrain.feedback_train": summary["train"],
            "retrain.feedback_holdout": summary["holdout"],
            "retrain.feedback_from": summary["first_label_at"],
            "retrain.feedback_to": summary["last_label_at"],
        },
    )
    report.step(
        "train",
        f"registered {outcome.model_name} v{outcome.version} as @{outcome.alias} "
        f"(run {outcome.run_id}; {len(sst2_train)} SST-2 + {summary['train']} feedback "
        f"sentences; validation accuracy {outcome.metrics['accuracy']:.4f} "
        f"F1 {outcome.metrics['f1']:.4f}; fine-tuning {outcome.train_seconds:.0f} s)",
        True,
    )

    env = {**os.environ, "CONFIG": str(config_path)}
    version = outcome.version
    before = registry.run_record(outcome.run_id).metrics
    code = run_module(["evaluation", "--model", version], env)
    after = registry.run_record(outcome.run_id).metrics
    slugs = [s for s in new_eval_slugs(before, after) if s != HOLDOUT_SLUG]
    if code != 0 or not slugs:
        report.step("evaluate", f"failed (python -m evaluation exit {code})", False)
        return EXIT_FAILED
    for slug in slugs:
        got = eval_metrics(after, slug)
        report.metrics.update({f"{slug}.{k}": v for k, v in got.items()})
        report.step(
            f"evaluate {slug}",
            f"accuracy {got['accuracy']:.4f} F1 {got.get('f1', float('nan')):.4f}",
            True,
        )

    if data.holdout:
        with tempfile.TemporaryDirectory(prefix="retrain-") as tmp:
            path = write_holdout(as_labelled(data.holdout), Path(tmp))
            code = run_module(["evaluation", "--model", version, "--data", str(path)], env)
        got = eval_metrics(registry.run_record(outcome.run_id).metrics, HOLDOUT_SLUG)
        if code != 0 or "accuracy" not in got:
            report.step(f"evaluate {HOLDOUT_SLUG}", f"failed (exit {code})", False)
            return EXIT_FAILED
        accuracy = got["accuracy"]
        registry.log_run_metrics(outcome.run_id, {HOLDOUT_METRIC: accuracy})
        registry.set_version_tags(outcome.model_name, version, {HOLDOUT_METRIC: f"{accuracy:.6f}"})
        report.metrics[HOLDOUT_METRIC] = accuracy
        report.step(
            f"evaluate {HOLDOUT_SLUG}",
            f"accuracy {accuracy:.4f} on {len(data.holdout)} held-out feedback texts",
            True,
        )
    else:
        report.step(f"evaluate {HOLDOUT_SLUG}", "skipped: no feedback text held out", True)

    code = run_module(["evaluation.promote", "--model", version], env)
    decision = registry.resolve(f"models:/{outcome.model_name}/{version}").tags.get(
        "promotion.decision", ""
    )
    if code not in (0, 1) or not decision:
        report.step("promotion gate", f"failed (python -m evaluation.promote exit {code})", False)
        return EXIT_FAILED
    report.decision, report.decided_at = decision, time.time()
    report.step("promotion gate", f"{decision} v{version}", True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", help="training YAML (default: $CONFIG or the full profile)")
    parser.add_argument("--json", help="also write what happened, as JSON, to this file")
    args = parser.parse_args(argv)
    report = RetrainReport(started_at=time.time())
    try:
        cfg = load_training_config(args.config)
        config_path = training_config_path(args.config)
        code = retrain(cfg, config_path, report)
    except (ConfigError, DataUnavailableError) as exc:
        report.step("error", str(exc), False)
        code = EXIT_UNUSABLE
    report.exit_code = code
    took = time.time() - report.started_at
    result = {EXIT_OK: "completed", EXIT_SKIPPED: "skipped"}.get(code, "failed")
    say("done", f"{result} in {took:.0f} s (exit {code})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.__dict__, indent=1), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
