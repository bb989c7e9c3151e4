"""`python -m training.import_model`: MLflow alias -> BentoML model store, with provenance.

The version the alias points to is imported with `bentoml.mlflow.import_model` as
`sentiment:v<version>-<run id prefix>`, so the same MLflow version always maps to the same tag
and a second import of it is a no-op.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

from sentiment.config import ConfigError, load_serving_config, load_training_config


@dataclass(frozen=True)
class RegistryVersion:
    name: str
    version: str
    alias: str
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def bento_tag_for(bento_name: str, version: RegistryVersion) -> str:
    return f"{bento_name}:v{version.version}-{version.run_id[:8]}"


def resolve_alias(tracking_uri: str, name: str, alias: str) -> RegistryVersion:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise LookupError(
            f"no model version '{name}@{alias}' in the MLflow registry at {tracking_uri} "
            f"({exc.error_code}); run `make train` first"
        ) from None
    run = client.get_run(mv.run_id) if mv.run_id else None
    metrics = dict(run.data.metrics) if run else {}
    return RegistryVersion(name, str(mv.version), alias, mv.run_id or "", metrics, dict(mv.tags))


def bento_metadata(version: RegistryVersion) -> tuple[dict[str, str], dict[str, Any]]:
    """Labels (short strings for filtering) and metadata (provenance and metrics)."""
    labels = {
        "mlflow_model": version.name,
        "mlflow_version": version.version,
        "mlflow_alias": version.alias,
        "stage": "imported",
    }
    metadata: dict[str, Any] = {
        "mlflow_model_name": version.name,
        "mlflow_model_version": version.version,
        "mlflow_alias": version.alias,
        "mlflow_run_id": version.run_id,
        "mlflow_uri": version.uri,
        "temperature": float(
            version.tags.get("temperature", version.metrics.get("temperature", 1))
        ),
        "max_length": int(version.tags.get("max_length", 128)),
    }
    for key in ("best_accuracy", "best_f1", "best_precision", "best_recall", "best_loss"):
        if key in version.metrics:
            metadata[f"val_{key.removeprefix('best_')}"] = float(version.metrics[key])
    return labels, metadata


def import_alias(
    tracking_uri: str,
    name: str,
    alias: str,
    bento_name: str = "sentiment",
    custom_objects: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """Import `name@alias` unless its tag is in the store already; returns (tag, imported)."""
    import bentoml
    from bentoml.exceptions import NotFound

    version = resolve_alias(tracking_uri, name, alias)
    tag = bento_tag_for(bento_name, version)
    try:
        bentoml.models.get(tag)
        return tag, False
    except NotFound:
        pass
    labels, metadata = bento_metadata(version)
    model = bentoml.mlflow.import_model(
        tag,
        version.uri,
        labels=labels,
        metadata=metadata,
        custom_objects=custom_objects,
    )
    return str(model.tag), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alias", help="MLflow alias to import (default: the training config's)")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when the store already has a model of that name",
    )
    args = parser.parse_args(argv)
    try:
        training = load_training_config()
        serving = load_serving_config()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bento_name = serving.model.name
    if args.if_missing and has_bento_model(bento_name):
        print(f"BentoML store at {bentoml_home()} already has {bento_name}; nothing to import")
        return 0
    alias = args.alias or training.mlflow.alias
    try:
        # The model's predictions on SST-2 validation travel inside the Bento model as the
        # reference for drift monitoring (None when the tag is in the store already).
        from monitoring.reference import drift_reference_for

        tag, imported = import_alias(
            training.mlflow.tracking_uri,
            training.mlflow.registered_model_name,
            alias,
            bento_name,
            custom_objects=drift_reference_for(training, serving, alias),
        )
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verb = "imported" if imported else "already in the store:"
    print(f"{verb} {tag} from models:/{training.mlflow.registered_model_name}@{alias}")
    return 0


def has_bento_model(name: str) -> bool:
    import bentoml

    return any(m.tag.name == name for m in bentoml.models.list())


def bentoml_home() -> str:
    return os.environ.get("BENTOML_HOME", os.path.expanduser("~/bentoml"))


if __name__ == "__main__":
    sys.exit(main())
