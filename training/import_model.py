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

from sentiment.config import (
    ConfigError,
    ServingConfig,
    TrainingConfig,
    load_serving_config,
    load_training_config,
)
from serving.store import ONNX_FILE_NAME, ONNX_SUBDIR
from training.onnx_export import export_int8
from training.reference import monitoring_objects_for
from training.registry import ModelVersion, Registry


def bento_tag_for(bento_name: str, version: ModelVersion) -> str:
    return f"{bento_name}:v{version.version}-{version.run_id[:8]}"


def bento_metadata(version: ModelVersion) -> tuple[dict[str, str], dict[str, Any]]:
    """Labels (short strings for filtering) and metadata (provenance and metrics)."""
    labels = {
        "mlflow_model": version.name,
        "mlflow_version": version.version,
        "mlflow_alias": version.alias or "",
        "stage": "imported",
    }
    metadata: dict[str, Any] = {
        "mlflow_model_name": version.name,
        "mlflow_model_version": version.version,
        "mlflow_alias": version.alias or "",
        "mlflow_run_id": version.run_id,
        "mlflow_uri": version.requested,
        "temperature": version.temperature,
        "max_length": version.max_length,
    }
    for key in ("best_accuracy", "best_f1", "best_precision", "best_recall", "best_loss"):
        if key in version.run_metrics:
            metadata[f"val_{key.removeprefix('best_')}"] = float(version.run_metrics[key])
    return labels, metadata


def in_store(tag: str) -> bool:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
    except NotFound:
        return False
    return True


def import_version(
    registry: Registry,
    version: ModelVersion,
    tag: str,
    custom_objects: dict[str, Any] | None = None,
) -> str:
    """Import `version` into the BentoML store as `tag`, with its int8 ONNX graph exported
    beside the weights (`serving.store.BENTO_ONNX_FILE`); returns the stored tag."""
    import bentoml

    labels, metadata = bento_metadata(version)
    # The pinned version, not the alias: the alias could move after it was resolved, and the
    # weights must be those the drift reference and the metadata describe.
    with registry.downloaded_transformers(version) as (weights, _):
        root = weights.parent
        print(f"exporting {version.version_uri} to ONNX (int8, per-channel weights)", flush=True)
        export_int8(weights, root / ONNX_SUBDIR / ONNX_FILE_NAME)
        model = bentoml.mlflow.import_model(
            tag,
            str(root),
            labels=labels,
            metadata=metadata,
            custom_objects=custom_objects,
        )
    return str(model.tag)


@dataclass(frozen=True)
class Imported:
    tag: str
    version: ModelVersion
    # False when the tag was in the store already (importing is then a no-op).
    imported: bool


def import_alias(training: TrainingConfig, serving: ServingConfig, alias: str) -> Imported:
    """Import the version `alias` points to, with its drift reference and accuracy estimator.

    The alias is resolved once, so the reference is made from the very version imported."""
    registry = Registry(training.mlflow.tracking_uri)
    version = registry.resolve_alias(
        training.mlflow.registered_model_name, alias, with_run_metrics=True
    )
    tag = bento_tag_for(serving.model.name, version)
    if in_store(tag):
        return Imported(tag, version, imported=False)
    # The model's predictions on SST-2 validation travel inside the Bento model as the
    # reference for drift monitoring, with the accuracy estimator fitted on them.
    objects = monitoring_objects_for(registry, version, training, serving)
    stored = import_version(registry, version, tag, custom_objects=objects)
    return Imported(stored, version, imported=True)


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
        result = import_alias(training, serving, alias)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verb = "imported" if result.imported else "already in the store:"
    print(f"{verb} {result.tag} from models:/{training.mlflow.registered_model_name}@{alias}")
    return 0


def has_bento_model(name: str) -> bool:
    import bentoml

    return any(m.tag.name == name for m in bentoml.models.list())


def bentoml_home() -> str:
    return os.environ.get("BENTOML_HOME", os.path.expanduser("~/bentoml"))


if __name__ == "__main__":
    sys.exit(main())
