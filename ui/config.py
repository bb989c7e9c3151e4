"""UI settings: configs/ui_config.yaml, then environment overrides (UI_ENV).

The batch tab's file limits have one source, the service's (`api.max_file_bytes`,
`api.max_file_rows` in configs/serving_config.yaml): the UI's `batch.max_file_mb` and
`batch.max_file_rows` are empty by default and, when set, can only lower them (`file_limits`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from sentiment.config import (
    CONFIG_DIR,
    ApiSection,
    StrictModel,
    load_config,
    load_serving_config,
)


class SingleSection(StrictModel):
    max_text_chars: int = Field(default=5000, ge=1)
    log_by_default: bool = True


class BatchSection(StrictModel):
    # The inline limit: a file of up to this many rows is analyzed in the page; a larger one is
    # scored by the service's file code (the `/predict_file` task's), up to `file_limits`.
    max_rows: int = Field(default=5000, ge=1)
    # Caps of the UI's own on any upload; None is the service's limit, and a number can only
    # lower it (the lower wins).
    max_file_mb: float | None = Field(default=None, gt=0)
    max_file_rows: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=32, ge=1)
    preview_rows: int = Field(default=200, ge=1)
    log_by_default: bool = False

    @property
    def max_file_bytes(self) -> int:
        """The upload limit in bytes against the serving config ($SERVING_CONFIG and its
        environment); kept for callers of the earlier single limit: `load_file_limits`."""
        return file_limits(self, load_serving_config().api).max_bytes


@dataclass(frozen=True)
class FileLimits:
    """What the batch tab accepts. Up to `inline_rows` rows: analyzed in the page. Above, up to
    `max_rows`: scored by the service's file code. Any file: at most `max_bytes` (also the limit
    of Gradio's upload route)."""

    inline_rows: int
    max_rows: int
    max_bytes: int

    @property
    def max_mb(self) -> float:
        return self.max_bytes / 1_000_000


def file_limits(batch: BatchSection, api: ApiSection | None = None) -> FileLimits:
    """The batch tab's limits: the service's file limits (`api`, by default the serving
    config's defaults), lowered by the UI's own caps where those are set."""
    api = api or ApiSection()
    max_bytes = api.max_file_bytes
    if batch.max_file_mb is not None:
        max_bytes = min(max_bytes, int(batch.max_file_mb * 1_000_000))
    max_rows = api.max_file_rows
    if batch.max_file_rows is not None:
        max_rows = min(max_rows, batch.max_file_rows)
    # A file of up to max_rows rows never needs the service's file code.
    return FileLimits(
        inline_rows=batch.max_rows, max_rows=max(max_rows, batch.max_rows), max_bytes=max_bytes
    )


class UIConfig(StrictModel):
    path: str = "/ui"
    # Seconds between refreshes of the monitoring figures on an open page.
    live_refresh_s: float = Field(default=15, ge=1)
    # How often Gradio's event queue looks for work while idle. Gradio's own 1 ms kept the
    # server worker at 9 % of a core with no traffic at all (3.5 % with 20 ms).
    queue_poll_s: float = Field(default=0.02, gt=0, le=1)
    # Events the page may have waiting at once; one more gets a 503 "Queue is full" instead of
    # memory (BentoML's startup hook leaves Gradio's queue unbounded). At most 1,024: a waiting
    # event holds its inputs (a text of up to single.max_text_chars, or an upload's path), so a
    # full queue stays in the tens of MB whatever the environment says.
    queue_max_size: int = Field(default=64, ge=1, le=1024)
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
    "SENTIMENT_UI_MAX_FILE_ROWS": ("batch", "max_file_rows"),
    "SENTIMENT_UI_BATCH_SIZE": ("batch", "batch_size"),
    "SENTIMENT_UI_MAX_TEXT_CHARS": ("single", "max_text_chars"),
    "SENTIMENT_UI_QUEUE_POLL_S": ("queue_poll_s",),
    "SENTIMENT_UI_QUEUE_MAX_SIZE": ("queue_max_size",),
}


def load_ui_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> UIConfig:
    """The file given, else $UI_CONFIG, else configs/ui_config.yaml; env overrides on top."""
    env = os.environ if env is None else env
    path = path or env.get("UI_CONFIG") or CONFIG_DIR / "ui_config.yaml"
    return load_config(UIConfig, path, UI_ENV, env)


def load_file_limits(
    cfg: UIConfig | None = None, env: Mapping[str, str] | None = None
) -> FileLimits:
    """The batch tab's limits from both config files (and `env`): what the service applies."""
    cfg = cfg or load_ui_config(env=env)
    return file_limits(cfg.batch, load_serving_config(env=env).api)
