"""The model under behavioural test: BEHAVIOUR_MODEL names a registered version.

`make behaviour-tests MODEL=production` sets it (an alias, a version number or a models:/ URI,
in the registry at MLFLOW_TRACKING_URI). Without it these tests have no model to judge.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from evaluation.behaviour import Explain, Predict, classifier_explain, classifier_predict


@pytest.fixture(scope="session")
def model_classifier() -> Any:
    from evaluation.predict import load_classifier
    from evaluation.settings import load_evaluation_config
    from sentiment.config import load_training_config
    from training.registry import Registry, model_uri

    named = os.environ.get("BEHAVIOUR_MODEL")
    if not named:
        pytest.fail(
            "no model named: run `make behaviour-tests MODEL=<alias|version|models:/ URI>`",
            pytrace=False,
        )
    registry = load_training_config().mlflow
    uri = model_uri(named, registry.registered_model_name, registry.alias)
    mlflow_registry = Registry(registry.tracking_uri)
    ref = mlflow_registry.resolve(uri)
    with mlflow_registry.downloaded_transformers(ref) as (weights, tokenizer):
        classifier = load_classifier(
            ref, weights, tokenizer, load_evaluation_config().evaluation.as_served
        )
    print(f"behavioural tests against {ref.label}")
    return classifier


@pytest.fixture(scope="session")
def model_predict(model_classifier: Any) -> Predict:
    return classifier_predict(model_classifier)


@pytest.fixture(scope="session")
def model_explain(model_classifier: Any) -> Explain:
    """Word attributions of the same model, for the report of a failed case."""
    return classifier_explain(model_classifier)
