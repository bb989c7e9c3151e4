"""The MLflow Model Registry: the one module that talks to it.

Training sets the alias, the import step resolves it, evaluation and the promotion gate read
versions and write their decisions as tags, deployment resolves what it ships. Each of them
calls this module, so a name like `candidate`, `3` or `models:/sentiment@production` is read
the same way everywhere and a missing version gets the same one-line remedy.

Run tracking (logging metrics and the model) is not here: that belongs to the run, not to the
registry, and stays with `training.train` and `evaluation`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w.-]+)|/(?P<version>\d+))$")

HOW_TO_REGISTER = "train and register one with `make train-quick`, or name another version"


class ModelNotRegisteredError(LookupError):
    """The name, alias or version is not in the registry; the message says what to do."""


def model_uri(value: str | None, name: str, default_alias: str) -> str:
    """Turn what a user typed (MODEL=, --model, --alias) into a registry URI.

    Accepts a full `models:/name@alias` or `models:/name/3`, `name@alias`, `name/3`,
    a bare alias (`production`) or a bare version number (`3`); empty means the default alias.
    """
    value = (value or "").strip()
    if not value:
        return f"models:/{name}@{default_alias}"
    if value.startswith("models:/"):
        candidate = value
    elif "@" in value or "/" in value:
        candidate = f"models:/{value}"
    elif value.isdigit():
        candidate = f"models:/{name}/{value}"
    else:
        candidate = f"models:/{name}@{value}"
    if not _URI.match(candidate):
        raise ValueError(
            f"cannot read MODEL={value!r}: use an alias (candidate), a version number, "
            "or a URI like models:/sentiment@production or models:/sentiment/3"
        )
    return candidate


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, however it was named."""

    name: str
    version: str
    run_id: str
    # The URI it was resolved from: `models:/sentiment@candidate` or `models:/sentiment/3`.
    requested: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    # The metrics of the run that logged it (only when asked for: one more registry call).
    run_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def alias(self) -> str | None:
        """The alias it was resolved through, or None when it was named by number."""
        match = _URI.match(self.requested)
        return match["alias"] if match else None

    @property
    def version_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def temperature(self) -> float:
        return float(self.tags.get("temperature", self.run_metrics.get("temperature", 1.0)))

    @property
    def max_length(self) -> int:
        return int(self.tags.get("max_length", 128))

    @property
    def label(self) -> str:
        alias = f" @{','.join(self.aliases)}" if self.aliases else ""
        return f"{self.name} v{self.version}{alias}"


class Registry:
    """An MLflow registry client for one tracking URI.

    Creating one also points MLflow's fluent API at the same store, so a run logged right after
    (evaluation results, for instance) lands beside the versions read here."""

    def __init__(self, tracking_uri: str) -> None:
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(tracking_uri)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)

    def resolve(self, uri: str, *, with_run_metrics: bool = False) -> ModelVersion:
        """The version a `models:/name@alias` or `models:/name/N` URI names."""
        from mlflow.exceptions import MlflowException

        match = _URI.match(uri)
        if not match:
            raise ValueError(f"not a registry URI: {uri}")
        name = match["name"]
        try:
            if match["alias"]:
                mv = self.client.get_model_version_by_alias(name, match["alias"])
            else:
                mv = self.client.get_model_version(name, match["version"])
        except MlflowException as exc:
            raise ModelNotRegisteredError(
                f"no model version {uri} in the MLflow registry at {self.tracking_uri} "
                f"({exc.error_code}); {HOW_TO_REGISTER}"
            ) from None
        metrics: dict[str, float] = {}
        if with_run_metrics and mv.run_id:
            metrics = dict(self.client.get_run(mv.run_id).data.metrics)
        return ModelVersion(
            name=name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            requested=uri,
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", []) or []),
            run_metrics=metrics,
        )

    def resolve_alias(
        self, name: str, alias: str, *, with_run_metrics: bool = False
    ) -> ModelVersion:
        return self.resolve(f"models:/{name}@{alias}", with_run_metrics=with_run_metrics)

    def find_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version an alias points to, or None when the alias is not set."""
        try:
            return self.resolve_alias(name, alias)
        except ModelNotRegisteredError:
            return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def list_versions(self, name: str) -> list[str]:
        """Every version number of `name`, oldest first."""
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted((str(mv.version) for mv in found), key=int)

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))

    def model_tags(self, name: str) -> dict[str, str]:
        """The registered model's own tags (not a version's)."""
        return dict(self.client.get_registered_model(name).tags or {})

    def set_model_tags(self, name: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_registered_model_tag(name, key, value)

    @contextmanager
    def downloaded_transformers(self, version: ModelVersion) -> Iterator[tuple[Path, Path]]:
        """The version's transformers weights and tokenizer folders (the mlflow.transformers
        layout: `model/`, `components/tokenizer/`), in a temporary copy removed on exit."""
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory(prefix="sentiment-model-") as tmp:
            root = Path(download_artifacts(artifact_uri=version.version_uri, dst_path=tmp))
            weights = root / "model"
            tokenizer = root / "components" / "tokenizer"
            if not (weights / "config.json").is_file():
                raise ModelNotRegisteredError(
                    f"{version.version_uri} holds no transformers weights under model/ (is it a "
                    "mlflow.transformers model?)"
                )
            yield weights, tokenizer if tokenizer.is_dir() else weights
