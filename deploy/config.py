"""configs/deployment_config.yaml as typed settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from sentiment.config import CONFIG_DIR, ConfigError, StrictModel, load_config


class ImageSection(StrictModel):
    repository: str = "sentiment-api"
    registry: str = ""


class EnvironmentSection(StrictModel):
    alias: str
    port: int = Field(ge=1, le=65535)
    blue_port: int = Field(ge=1, le=65535)
    green_port: int = Field(ge=1, le=65535)
    cpus: float | None = Field(None, gt=0)
    memory: str | None = None
    # true: the stable port listens on every interface; false: on 127.0.0.1 only.
    public: bool = False
    env: dict[str, str] = Field(default_factory=dict)


class SmokeCase(StrictModel):
    text: str
    expected: Literal["positive", "negative"]


class SmokeSection(StrictModel):
    startup_timeout_s: float = Field(300, gt=0)
    request_timeout_s: float = Field(30, gt=0)
    latency_requests: int = Field(10, ge=1)
    max_latency_ms: float = Field(1500, gt=0)
    ui_path: str = "/ui/"
    cases: list[SmokeCase] = Field(min_length=1)


class CanarySection(StrictModel):
    """`make deploy CANARY=N`: how long the canary is watched, and what rolls it back."""

    # The whole observation; the decision comes at its end unless a rule fails first.
    window_s: float = Field(300, gt=0)
    check_interval_s: float = Field(15, gt=0)
    # No rule judges the canary before it has answered this many requests in the window.
    min_requests: int = Field(50, ge=1)
    # Answers 5xx / answers, on `endpoints`.
    max_5xx_rate: float = Field(0.02, ge=0, le=1)
    # Canary p95 <= stable p95 * max_p95_ratio + p95_slack_ms, on `latency_endpoints`.
    max_p95_ratio: float = Field(1.5, ge=1)
    p95_slack_ms: float = Field(50, ge=0)
    # Canary p95 above this rolls it back even with no stable p95 to compare with (the router
    # splits connections, so a window can leave the stable colour too few timed requests).
    max_p95_ms: float = Field(2000, gt=0)
    # Canary estimated accuracy >= stable's - max_accuracy_drop (when both have one).
    max_accuracy_drop: float = Field(0.05, ge=0, le=1)
    # The canary's /metrics unanswered on this many checks in a row: roll back.
    max_failed_scrapes: int = Field(2, ge=1)
    # The window over with fewer than min_requests on the canary: this.
    insufficient_traffic: Literal["rollback", "promote"] = "rollback"
    endpoints: list[str] = Field(default_factory=lambda: ["/predict", "/explain", "/feedback"])
    latency_endpoints: list[str] = Field(default_factory=lambda: ["/predict"])
    request_timeout_s: float = Field(10, gt=0)


class DeploymentConfig(StrictModel):
    image: ImageSection = ImageSection()
    environments: dict[str, EnvironmentSection]
    smoke: SmokeSection
    canary: CanarySection = CanarySection()

    def environment(self, name: str) -> EnvironmentSection:
        if name not in self.environments:
            known = ", ".join(sorted(self.environments))
            raise ConfigError(f"unknown environment '{name}' (configured: {known})")
        return self.environments[name]


DEPLOYMENT_ENV: dict[str, tuple[str, ...]] = {
    "DEPLOY_IMAGE_REPOSITORY": ("image", "repository"),
    "DEPLOY_REGISTRY": ("image", "registry"),
    "DEPLOY_STARTUP_TIMEOUT_S": ("smoke", "startup_timeout_s"),
    "DEPLOY_MAX_LATENCY_MS": ("smoke", "max_latency_ms"),
    "DEPLOY_CANARY_WINDOW_S": ("canary", "window_s"),
    "DEPLOY_CANARY_CHECK_INTERVAL_S": ("canary", "check_interval_s"),
    "DEPLOY_CANARY_MIN_REQUESTS": ("canary", "min_requests"),
    "DEPLOY_CANARY_MAX_P95_MS": ("canary", "max_p95_ms"),
}


def load_deployment_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> DeploymentConfig:
    env = os.environ if env is None else env
    path = path or env.get("DEPLOYMENT_CONFIG") or CONFIG_DIR / "deployment_config.yaml"
    cfg = load_config(DeploymentConfig, path, DEPLOYMENT_ENV, env)
    for name, section in cfg.environments.items():
        ports = [section.port, section.blue_port, section.green_port]
        if len(set(ports)) != 3:
            raise ConfigError(
                f"{path}: environments.{name}: port, blue_port, green_port must differ"
            )
    return cfg
