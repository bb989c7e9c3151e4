"""UI settings: configs/ui_config.yaml, then environment overrides (UI_ENV)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, field_validator

from sentiment.config import CONFIG_DIR, StrictModel, load_config


class SingleSection(StrictModel):
    max_text_chars: int = Field(default=5000, ge=1)
    log_by_default: bool = True


class BatchSection(StrictModel):
    max_rows: int = Field(default=5000, ge=1)
    max_file_mb: float = Field(default=10, gt=0)
    batch_size: int = Field(default=32, ge=1)
    preview_rows: int = Field(default=200, ge=1)
    log_by_default: bool = False

    @property
    def max_file_bytes(self) -> int:
        """The upload limit in bytes: the batch tab's check and Gradio's upload route."""
        return int(self.max_file_mb * 1_000_000)


class UIConfig(StrictModel):
    path: str = "/ui"
    # Seconds between refreshes of the monitoring figures on an open page.
    live_refresh_s: float = Field(default=15, ge=1)
    # How often Gradio's event queue looks for work while idle. Gradio's own 1 ms kept the
    # server worker at about 6 % of a core with no traffic at all.
    queue_poll_s: float = Field(default=0.02, gt=0, le=1)
    single: SingleSection = SingleSection()
    batch: BatchSection = BatchSection()
    examples: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _rooted(cls, value: str) -> str:
        if not value.startswith("/") or value == "/":
            raise ValueError("must start with '/' and not be '/' itself (the API owns '/')")
        return value.rstrip("/")


UI_ENV: dict[str, tuple[str, ...]] = {
    "SENTIMENT_UI_MAX_ROWS": ("batch", "max_rows"),
    "SENTIMENT_UI_MAX_FILE_MB": ("batch", "max_file_mb"),
    "SENTIMENT_UI_BATCH_SIZE": ("batch", "batch_size"),
    "SENTIMENT_UI_MAX_TEXT_CHARS": ("single", "max_text_chars"),
}


def load_ui_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> UIConfig:
    """The file given, else $UI_CONFIG, else configs/ui_config.yaml; env overrides on top."""
    env = os.environ if env is None else env
    path = path or env.get("UI_CONFIG") or CONFIG_DIR / "ui_config.yaml"
    return load_config(UIConfig, path, UI_ENV, env)
