"""The BentoML model store: find the served model, or stop with one line saying how to get one.

Every serving-side read of the store goes through here, so the remedy in the error is written
once and a model process reads the same store as the server that started it.
"""

from __future__ import annotations

import sys
from typing import Any

# Inside a Bento model made by bentoml.mlflow.import_model from a transformers pipeline.
BENTO_WEIGHTS_SUBDIR = "mlflow_model/model"
BENTO_TOKENIZER_SUBDIR = "mlflow_model/components/tokenizer"
# The int8 ONNX graph `import_model` exports beside the weights (training/onnx_export.py).
ONNX_SUBDIR = "onnx"
ONNX_FILE_NAME = "model_int8.onnx"
BENTO_ONNX_FILE = f"mlflow_model/{ONNX_SUBDIR}/{ONNX_FILE_NAME}"

HOW_TO_GET_A_MODEL = (
    "run `make train import-model` (or `make serve`, which does both when the store is empty)"
)


class ModelNotFoundError(RuntimeError):
    """No model in the BentoML store; the message says how to get one."""


def get_bento_model(tag: str) -> Any:
    """The model from the BentoML store, or ModelNotFoundError with a one-line remedy."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        raise ModelNotFoundError(
            f"no model '{tag}' in the BentoML store ({bentoml_store_path()}); {HOW_TO_GET_A_MODEL}"
        ) from None


def require_model(tag: str) -> None:
    """Before any worker starts: stop `bentoml serve` with one line when the model is missing."""
    try:
        get_bento_model(tag)
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def bentoml_store_path() -> str:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


def use_model_store(path: str) -> None:
    """Read Bento models from `path`: inside a Bento (a container) BentoML points the server at
    the Bento's own model store in memory, which a spawned process does not inherit."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    BentoMLContainer.model_store.set(ModelStore(path))
