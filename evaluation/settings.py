"""Settings of the validation commands: `configs/evaluation_config.yaml` and its environment
overrides (the table below is what the README's settings section lists)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from sentiment.config import CONFIG_DIR, ConfigError, StrictModel, load_config


class EvaluationSection(StrictModel):
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


class ReportSection(StrictModel):
    pdf: Literal["auto", "always", "never"] = "auto"
    chromium: str = "chromium"


class EvaluationConfig(StrictModel):
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
    env = os.environ if env is None else env
    path = path or env.get("EVALUATION_CONFIG") or CONFIG_DIR / "evaluation_config.yaml"
    cfg = load_config(EvaluationConfig, path, EVALUATION_ENV, env)
    edges = cfg.evaluation.length_buckets
    if any(b <= a for a, b in itertools.pairwise(edges)) or (edges and edges[0] < 2):
        raise ConfigError(f"{path}: evaluation.length_buckets must rise and start at 2 or more")
    return cfg
