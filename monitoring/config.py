"""Monitoring settings: `configs/monitoring_config.yaml` plus environment overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from sentiment.config import CONFIG_DIR, StrictModel, load_config


class MonitorSection(StrictModel):
    name: str = "sentiment_predictions"
    # Predictions (not requests) waiting for the background thread: bounds memory when it lags.
    max_pending: int = Field(default=4096, ge=64)
    refresh_interval_s: float = Field(default=2.0, gt=0)
    drift_interval_s: float = Field(default=10.0, ge=0)
    latency_window: int = Field(default=10_000, ge=100)


class DriftSection(StrictModel):
    window_size: int = Field(default=1000, ge=10)
    min_window: int = Field(default=100, ge=5)
    threshold: float = Field(default=0.05, gt=0, lt=1)
    length_feature: Literal["n_chars", "n_tokens"] = "n_chars"
    mmd_permutations: int = Field(default=200, ge=19)
    mmd_max_samples: int = Field(default=1000, ge=10)
    seed: int = 0


class PerformanceSection(StrictModel):
    # Both accuracies are over the last window_size predictions: the estimate over predictions
    # (labels or not), the realized accuracy over labelled ones of the serving model version.
    window_size: int = Field(default=500, ge=10)
    # No estimate below this many predictions (the benchmark's error at 200 is about 0.02).
    min_window: int = Field(default=200, ge=10)
    # The alert SentimentEstimatedAccuracyLow fires below this (exported as model_accuracy_floor).
    accuracy_floor: float = Field(default=0.75, gt=0, lt=1)


class ReferenceSection(StrictModel):
    split: str = "validation"
    max_embeddings: int = Field(default=1000, ge=10)
    batch_size: int = Field(default=64, ge=1)


class BenchmarkSection(StrictModel):
    windows: int = Field(default=100, ge=1)
    window_sizes: list[int] = Field(default_factory=lambda: [200, 500])
    max_pool: int = Field(default=3000, ge=100)
    training_config: str = "configs/training_quick.yaml"
    output: str = "results/drift_benchmark.json"
    cache_dir: str = "results/drift_benchmark_cache"


class MonitoringConfig(StrictModel):
    monitor: MonitorSection = MonitorSection()
    drift: DriftSection = DriftSection()
    performance: PerformanceSection = PerformanceSection()
    reference: ReferenceSection = ReferenceSection()
    benchmark: BenchmarkSection = BenchmarkSection()


MONITORING_ENV: dict[str, tuple[str, ...]] = {
    "DRIFT_WINDOW_SIZE": ("drift", "window_size"),
    "DRIFT_MIN_WINDOW": ("drift", "min_window"),
    "DRIFT_THRESHOLD": ("drift", "threshold"),
    "ACCURACY_WINDOW_SIZE": ("performance", "window_size"),
    "ACCURACY_MIN_WINDOW": ("performance", "min_window"),
    "ACCURACY_FLOOR": ("performance", "accuracy_floor"),
    "MONITORING_REFRESH_S": ("monitor", "refresh_interval_s"),
    "MONITORING_DRIFT_INTERVAL_S": ("monitor", "drift_interval_s"),
    "DRIFT_BENCHMARK_WINDOWS": ("benchmark", "windows"),
}


def load_monitoring_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> MonitoringConfig:
    """The file given, else $MONITORING_CONFIG, else configs/monitoring_config.yaml."""
    env = os.environ if env is None else env
    path = path or env.get("MONITORING_CONFIG") or CONFIG_DIR / "monitoring_config.yaml"
    return load_config(MonitoringConfig, path, MONITORING_ENV, env)
