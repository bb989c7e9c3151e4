"""OnnxEngine's contract with the exported graph: padded rows in, and no row without a first
token (the export drops the softmax NaN guards that such a row would need)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from serving.onnx_engine import ONNX_INPUTS, ONNX_OUTPUTS, OnnxEngine


@pytest.fixture
def engine(tmp_path: Path) -> OnnxEngine:
    """A stand-in graph with the served names: logits = the mask, mean_hidden = the ids."""
    ids, mask = ONNX_INPUTS
    logits, mean = ONNX_OUTPUTS
    graph = helper.make_graph(
        [
            helper.make_node("Cast", [mask], [logits], to=TensorProto.FLOAT),
            helper.make_node("Cast", [ids], [mean], to=TensorProto.FLOAT),
        ],
        "stand-in",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["b", "t"]),
            helper.make_tensor_value_info(mask, TensorProto.INT64, ["b", "t"]),
        ],
        [
            helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["b", "t"]),
            helper.make_tensor_value_info(mean, TensorProto.FLOAT, ["b", "t"]),
        ],
    )
    path = tmp_path / "stand_in.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path
    )
    return OnnxEngine(path)


def test_padded_rows_run_and_embeddings_only_when_asked(engine: OnnxEngine) -> None:
    ids = np.array([[101, 7, 102], [101, 102, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1], [1, 1, 0]], dtype=np.int64)
    logits, mean = engine.run(ids, mask, with_embeddings=False)
    np.testing.assert_array_equal(logits, mask.astype(np.float32))
    assert mean is None
    _, mean = engine.run(ids, mask, with_embeddings=True)
    assert mean is not None and mean.dtype == np.float32


@pytest.mark.parametrize(
    "mask", [np.array([[1, 1], [0, 0]]), np.array([[1, 1], [0, 1]]), np.zeros((1, 0))]
)
def test_a_row_without_its_first_token_is_refused(engine: OnnxEngine, mask: np.ndarray) -> None:
    ids = np.ones(mask.shape, dtype=np.int64)
    with pytest.raises(ValueError, match="at least one token"):
        engine.run(ids, mask.astype(np.int64), with_embeddings=False)
