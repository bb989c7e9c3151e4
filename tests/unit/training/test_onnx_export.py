"""The int8 rewrite of the ONNX graph: per-channel weights, per-token activations, and a
token's answer that does not depend on the rows beside it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.onnx_export import drop_nan_guards, fuse_gelu, per_token_int8, weight_int8


def test_each_output_column_gets_its_own_symmetric_scale() -> None:
    weight = np.array([[1.0, -2.0], [0.5, 4.0]], dtype=np.float32)
    quantized, scales = weight_int8(weight)
    np.testing.assert_allclose(scales, [1 / 127, 4 / 127], rtol=1e-6)
    # 0.5 * 127 = 63.5 and -2 / (4/127) = -63.5: rounded half to even, as ONNX Runtime does.
    np.testing.assert_array_equal(quantized, [[127, -64], [64, 127]])
    assert quantized.dtype == np.int8


def test_an_all_zero_column_is_kept_at_zero() -> None:
    quantized, scales = weight_int8(np.zeros((3, 2), dtype=np.float32))
    np.testing.assert_array_equal(quantized, np.zeros((3, 2)))
    assert (scales > 0).all()


def linear_graph(weight: np.ndarray, bias: np.ndarray, rank: int) -> onnx.ModelProto:
    """y = x @ weight + bias, for x of `rank` 2 ([rows, k]) or 3 ([batch, tokens, k])."""
    k, n = weight.shape
    dims_in: list[str | int] = ["b", "t", k][-rank:]
    dims_out: list[str | int] = ["b", "t", n][-rank:]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "bias"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims_in)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims_out)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "bias")],
    )
    # IR 10: what the exporter writes; the onnx package's newer default is ahead of ONNX Runtime.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )


@pytest.fixture
def weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(16, 8)).astype(np.float32),
        rng.normal(size=8).astype(np.float32),
    )


def test_weight_matmuls_become_int8_and_the_initializers_go(weights) -> None:
    model = per_token_int8(linear_graph(*weights, rank=3))
    ops = [node.op_type for node in model.graph.node]
    assert "MatMul" not in ops and ops.count("DynamicQuantizeMatMul") == 1
    stored = {init.name: init.data_type for init in model.graph.initializer}
    assert "w" not in stored and stored["w_int8"] == TensorProto.INT8


@pytest.mark.parametrize("rank", [2, 3])
def test_a_token_gets_the_same_answer_whatever_shares_its_pass(weights, rank: int) -> None:
    run = session(per_token_int8(linear_graph(*weights, rank=rank)))
    rng = np.random.default_rng(1)
    token = rng.normal(size=16).astype(np.float32)
    # Neighbours a thousand times larger, and all-zero padding rows.
    loud = 1000 * rng.normal(size=(3, 16)).astype(np.float32)
    rows = np.vstack([token, loud, np.zeros((2, 16), dtype=np.float32)])
    alone = token[None, :] if rank == 2 else token[None, None, :]
    batch = rows if rank == 2 else rows.reshape(2, 3, 16)
    (y_alone,) = run.run(None, {"x": alone})
    (y_batch,) = run.run(None, {"x": batch})
    assert y_batch.shape == ((6, 8) if rank == 2 else (2, 3, 8))
    np.testing.assert_array_equal(y_batch.reshape(6, 8)[0], y_alone.reshape(8))
    # Padding rows answer the bias alone: zero activations stay zero, not NaN.
    np.testing.assert_allclose(y_batch.reshape(6, 8)[-1], weights[1], atol=1e-6)


def test_int8_stays_within_a_percent_of_fp32(weights) -> None:
    x = np.random.default_rng(2).normal(size=(4, 5, 16)).astype(np.float32)
    (exact,) = session(linear_graph(*weights, rank=3)).run(None, {"x": x})
    (int8,) = session(per_token_int8(linear_graph(*weights, rank=3))).run(None, {"x": x})
    assert np.abs(int8 - exact).max() < 0.01 * np.abs(exact).max()


def test_a_weight_read_twice_stays_fp32(weights) -> None:
    model = linear_graph(*weights, rank=2)
    model.graph.node.append(helper.make_node("MatMul", ["x", "w"], ["again"]))
    model.graph.output.append(helper.make_tensor_value_info("again", TensorProto.FLOAT, ["r", 8]))
    ops = [node.op_type for node in per_token_int8(model).graph.node]
    assert ops.count("MatMul") == 2 and "DynamicQuantizeMatMul" not in ops


def test_matmuls_reading_one_activation_become_one_with_the_same_answers(weights) -> None:
    w, bias = weights
    other = np.random.default_rng(3).normal(size=(16, 5)).astype(np.float32)
    both = linear_graph(w, bias, rank=3)
    both.graph.initializer.append(numpy_helper.from_array(other, "w2"))
    both.graph.node.append(helper.make_node("MatMul", ["x", "w2"], ["second"]))
    both.graph.output.append(
        helper.make_tensor_value_info("second", TensorProto.FLOAT, ["b", "t", 5])
    )
    fused = per_token_int8(both)
    ops = [node.op_type for node in fused.graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 1 and "Split" in ops
    x = np.random.default_rng(4).normal(size=(2, 3, 16)).astype(np.float32)
    y, second = session(fused).run(None, {"x": x})
    (y_alone,) = session(per_token_int8(linear_graph(w, bias, rank=3))).run(None, {"x": x})
    (second_alone,) = session(per_token_int8(linear_graph(other, np.zeros(5, np.float32), 3))).run(
        None, {"x": x}
    )
    # Per-column weight scales and per-token activation scales: side by side changes nothing.
    np.testing.assert_array_equal(y, y_alone)
    np.testing.assert_array_equal(second, second_alone)


def guarded_softmax_graph() -> onnx.ModelProto:
    """p = Softmax(x); y = Where(IsNaN(p), 0, p) @ v, as the exporter writes attention."""
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["x"], ["p"], axis=-1),
            helper.make_node("IsNaN", ["p"], ["nan"]),
            helper.make_node("Where", ["nan", "zero", "p"], ["safe"]),
            helper.make_node("MatMul", ["safe", "v"], ["y"]),
        ],
        "attention",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["r", 4]),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [4, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["r", 3])],
        [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_the_nan_guard_goes_and_the_answers_stay() -> None:
    rng = np.random.default_rng(5)
    feeds = {
        "x": rng.normal(size=(5, 4)).astype(np.float32),
        "v": rng.normal(size=(4, 3)).astype(np.float32),
    }
    (guarded,) = session(guarded_softmax_graph()).run(None, feeds)
    model = guarded_softmax_graph()
    model.graph.value_info.append(helper.make_tensor_value_info("safe", TensorProto.FLOAT, None))
    model = drop_nan_guards(model)
    onnx.checker.check_model(model)
    assert [node.op_type for node in model.graph.node] == ["Softmax", "MatMul"]
    assert not model.graph.value_info
    assert list(model.graph.node[1].input) == ["p", "v"]
    (unguarded,) = session(model).run(None, feeds)
    np.testing.assert_array_equal(unguarded, guarded)


def test_a_where_that_is_not_a_nan_guard_stays() -> None:
    model = guarded_softmax_graph()
    # A Where that keeps p where p is NaN and zero elsewhere is something else: it stays.
    model.graph.node[2].input[:] = ["nan", "p", "zero"]
    ops = [node.op_type for node in drop_nan_guards(model).graph.node]
    assert ops == ["Softmax", "IsNaN", "Where", "MatMul"]
    other = guarded_softmax_graph()
    other.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array(1.0, np.float32), "zero"))
    assert len(drop_nan_guards(other).graph.node) == 4
    # Not after a softmax: a NaN there may be real.
    relu = guarded_softmax_graph()
    relu.graph.node[0].CopyFrom(helper.make_node("Relu", ["x"], ["p"]))
    assert len(drop_nan_guards(relu).graph.node) == 4


def test_a_guard_whose_answer_leaves_the_graph_stays_and_a_shared_check_is_kept() -> None:
    model = guarded_softmax_graph()
    model.graph.output.append(helper.make_tensor_value_info("safe", TensorProto.FLOAT, ["r", 4]))
    assert len(drop_nan_guards(model).graph.node) == 4
    shared = guarded_softmax_graph()
    shared.graph.output.append(helper.make_tensor_value_info("nan", TensorProto.BOOL, ["r", 4]))
    ops = [node.op_type for node in drop_nan_guards(shared).graph.node]
    assert ops == ["Softmax", "IsNaN", "MatMul"]


def gelu_graph(divisor: float = 2**0.5) -> onnx.ModelProto:
    """h = x + b; y = h * (0.5 * (1 + erf(h / divisor))), in the exporter's order."""
    consts = {"b": np.array([0.5, -1.0, 2.0], np.float32), "one": 1.0, "half": 0.5, "d": divisor}
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "b"], ["h"]),
            helper.make_node("Div", ["h", "d"], ["scaled"]),
            helper.make_node("Erf", ["scaled"], ["erf"]),
            helper.make_node("Add", ["erf", "one"], ["shifted"]),
            helper.make_node("Mul", ["half", "shifted"], ["halved"]),
            helper.make_node("Mul", ["h", "halved"], ["y"]),
        ],
        "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["r", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["r", 3])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_the_exporters_gelu_becomes_one_node_with_the_same_answers() -> None:
    x = np.random.default_rng(6).normal(scale=3, size=(7, 3)).astype(np.float32)
    (before,) = session(gelu_graph()).run(None, {"x": x})
    model = gelu_graph()
    model.graph.value_info.append(helper.make_tensor_value_info("erf", TensorProto.FLOAT, None))
    model = fuse_gelu(model)
    onnx.checker.check_model(model)
    assert [(node.op_type, node.domain) for node in model.graph.node] == [
        ("Add", ""),
        ("Gelu", "com.microsoft"),
    ]
    assert list(model.graph.node[1].input) == ["h"] and not model.graph.value_info
    (after,) = session(model).run(None, {"x": x})
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def test_what_is_not_exactly_the_exporters_gelu_stays() -> None:
    assert len(fuse_gelu(gelu_graph(divisor=2.0)).graph.node) == 6
    read_twice = gelu_graph()
    read_twice.graph.output.append(
        helper.make_tensor_value_info("shifted", TensorProto.FLOAT, ["r", 3])
    )
    assert len(fuse_gelu(read_twice).graph.node) == 6
    other_x = gelu_graph()
    other_x.graph.node[5].input[:] = ["x", "halved"]  # multiplies the input before the bias
    assert len(fuse_gelu(other_x).graph.node) == 6
