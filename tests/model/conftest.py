"""The model under behavioural test: BEHAVIOUR_MODEL names a registered version.

`make behaviour-tests MODEL=production` sets it (an alias, a version number or a models:/ URI,
in the registry at MLFLOW_TRACKING_URI). Without it these tests have no model to judge.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from training.behaviour import Predict, runtime_predict


@pytest.fixture(scope="session")
def model_predict() -> Iterator[Predict]:
    from sentiment.config import load_training_config
    from training.evaluate import (
        downloaded_model,
        load_evaluation_config,
        load_runtime,
        model_uri,
        registry_client,
        resolve_model,
    )

    named = os.environ.get("BEHAVIOUR_MODEL")
    if not named:
        pytest.fail(
            "no model named: run `make behaviour-tests MODEL=<alias|version|models:/ URI>`",
            pytrace=False,
        )
    registry = load_training_config().mlflow
    uri = model_uri(named, registry.registered_model_name, registry.alias)
    ref = resolve_model(uri, registry_client(registry.tracking_uri))
    with downloaded_model(ref) as (weights, tokenizer):
        runtime = load_runtime(
            ref, weights, tokenizer, load_evaluation_config().evaluation.as_served
        )
    print(f"behavioural tests against {ref.label}")
    yield runtime_predict(runtime)
