"""The drift reference and the accuracy estimator that the import step puts inside the Bento
model.

The version is downloaded from the registry and run with the serving settings (quantisation,
packing, device), so the reference holds the numbers the service will produce; monitoring's
pure `build_reference` turns those predictions into what the drift tests compare against.
The estimator (monitoring.performance) is fitted on the same labelled predictions: the
benchmark (`make performance-estimation-benchmark`) measured it within 0.011 of the realized
accuracy on unseen SST-2 windows of 500. Without the SST-2 files the model is imported with
neither, and monitoring says so.
"""

from __future__ import annotations

import logging
from typing import Any

from monitoring.config import ReferenceSection, load_monitoring_config
from monitoring.performance import ESTIMATOR_OBJECT_KEY, fit_estimator
from monitoring.reference import CUSTOM_OBJECT_KEY, DriftReference, build_reference
from sentiment.config import ServingConfig, TrainingConfig
from sentiment.data import read_tsv, resolve_sst2_dir
from serving.classifier import Classifier, predict_in_chunks, serving_options
from training.registry import ModelVersion, Registry

logger = logging.getLogger("training.reference")


def monitoring_objects_for(
    registry: Registry, version: ModelVersion, training: TrainingConfig, serving: ServingConfig
) -> dict[str, Any] | None:
    """custom_objects for importing `version` into BentoML (drift reference, accuracy
    estimator), or None without the SST-2 files."""
    cfg = load_monitoring_config().reference
    folder = resolve_sst2_dir(training.data.data_dir)
    if folder is None or not (folder / f"{cfg.split}.tsv").is_file():
        logger.warning("no SST-2 %s.tsv found: importing without a drift reference", cfg.split)
        return None
    data = read_tsv(folder / f"{cfg.split}.tsv")
    reference = reference_for_version(registry, version, serving, cfg, data.texts, data.labels)
    print(f"drift reference: {reference.describe()}")
    estimator = fit_estimator(reference.confidence, reference.label, data.labels)
    print(f"accuracy estimator: {estimator.to_dict()}")
    return {CUSTOM_OBJECT_KEY: reference.to_dict(), ESTIMATOR_OBJECT_KEY: estimator.to_dict()}


def reference_for_version(
    registry: Registry,
    version: ModelVersion,
    serving: ServingConfig,
    cfg: ReferenceSection,
    texts: list[str],
    true_labels: list[int],
) -> DriftReference:
    with registry.downloaded_transformers(version) as (weights, tokenizer):
        classifier = Classifier(
            weights,
            tokenizer,
            max_length=version.max_length,
            temperature=version.temperature,
            **serving_options(serving.model),
        )
        predictions = predict_in_chunks(classifier, texts, cfg.batch_size, desc="drift reference")
    return build_reference(
        predictions,
        true_labels,
        max_embeddings=cfg.max_embeddings,
        source=f"sst2/{cfg.split}",
        labels=classifier.labels,
    )
