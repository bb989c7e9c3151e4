"""The MLflow Model Registry: the one module that talks to it.

Training sets the alias, the import step resolves it, evaluation and the promotion gate read
versions and write their decisions as tags, deployment resolves what it ships. Each of them
calls this module, so a name like `candidate`, `3` or `models:/sentiment@production` is read
the same way everywhere and a missing version gets the same one-line remedy.

Run tracking (logging metrics and the model) is not here: that belongs to the run, not to the
registry, and stays with `training.train` and `evaluation`. The exception is a run's data
lineage (`mlflow.data` datasets with their digests, and what retraining records beside them):
`log_lineage` writes it into the active run and `Registry.run_record` reads it back, so
retraining, its tests and an operator's script read it the same way.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
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


@dataclass(frozen=True)
class LineageDataset:
    """One dataset a run used, as `mlflow.data` records it (the rows are not stored: a profile,
    the schema, the digest and where they came from)."""

    name: str
    context: str  # "training" or "evaluation"
    # A file path, or a URL without its password (a database: recorded as its URI, not read).
    source: str
    texts: Sequence[str]
    labels: Sequence[int]
    # At most 36 characters (MLflow's limit); training/feedback.py's dataset_digest.
    digest: str


@dataclass(frozen=True)
class RunRecord:
    """What a run recorded: its parameters, tags, latest metrics and dataset inputs."""

    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    # One dict per input: name, digest, context, source_type, source, profile.
    datasets: list[dict[str, str]]


def log_lineage(
    datasets: Sequence[LineageDataset], params: Mapping[str, Any], tags: Mapping[str, Any]
) -> None:
    """Log datasets (`mlflow.log_input`), parameters and tags into the active run."""
    import mlflow
    import pandas as pd
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.pandas_dataset import from_pandas

    for ds in datasets:
        frame = pd.DataFrame({"sentence": list(ds.texts), "label": list(ds.labels)})
        # A file is a local source; a database URL has no MLflow source type: kept as its URI.
        source: Any = ds.source
        if "://" in ds.source:
            source = CodeDatasetSource(tags={"uri": ds.source})
        with warnings.catch_warnings():
            # MLflow's notes on a local path's two source classes and on integer columns.
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(
                frame, source=source, targets="label", name=ds.name, digest=ds.digest
            )
            mlflow.log_input(dataset, context=ds.context)
    mlflow.log_params(dict(params))
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


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

    def run_record(self, run_id: str) -> RunRecord:
        """A run's parameters, tags, latest metrics and dataset inputs (its data lineage)."""
        run = self.client.get_run(run_id)
        datasets = []
        for item in run.inputs.dataset_inputs if run.inputs else []:
            ds = item.dataset
            context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), "")
            datasets.append(
                {
                    "name": ds.name,
                    "digest": ds.digest,
                    "context": context,
                    "source_type": ds.source_type,
                    "source": ds.source,
                    "profile": ds.profile or "",
                }
            )
        return RunRecord(
            run_id,
            dict(run.data.params),
            dict(run.data.tags),
            dict(run.data.metrics),
            datasets,
        )

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Add metrics to a finished run (one more evaluation of its model)."""
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))

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
