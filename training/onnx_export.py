"""The ONNX Runtime copy of a fine-tuned model, made once at `import_model` time.

`torch.onnx.export(dynamo=True)` (the exporter torch maintains; onnxscript under it) writes
the fp32 graph; `per_token_int8` then stores every weight MatMul as int8 with one scale per
output channel and quantises its activations with one scale per token, as the torch path's
`serving.int8.Int8Linear` does.

Why not ONNX Runtime's `quantize_dynamic`: its activations get one scale for the whole input
tensor, padding rows included, so a text's answer depended on the texts that shared its pass
(CI: the same review scored 0.5968 in one batch and 0.5891 in another, and `/explain` and
`/predict` disagreed by 0.002). Here each token row is divided by its largest magnitude and
two columns holding 1 and -1 (over zero weight rows) are appended, so the range ONNX Runtime's
fused `DynamicQuantizeMatMul` picks for the tensor is always exactly [-1, 1] and each token is
quantised on its own range whatever the batch holds; the product is scaled back per token.
Over SST-2 validation (quick model, one text per pass against batches of 32) no text's answer
moved at all, against 870 of 872 (up to 0.249) under per-tensor scales (`make
engine-agreement`). The MatMuls that read one activation (query, key, value) run as one: 478
nodes per pass instead of 640 for a first version with an anchor row and one MatMul each, and
466 since the range pins are appended in one copy and the exporter's NaN guards after the
attention softmax go (`drop_nan_guards`), the same numbers to the bit each time (a pass takes
0.80-1.03 x the time, median 0.97 x, at batches of 1-32, one thread, alternating); 449 with
each GELU as one node (`fuse_gelu`; not to the bit: SST-2 validation accuracy 0.8612 -> 0.8601,
fp32's, no text moving with its batch). What batch
independence costs in speed is in the README (Performance). Per-tensor weights (ONNX Runtime's
default) cost SST-2 accuracy on AVX2, where activations are u8 and the products saturate;
per-channel scales keep it (issue 21: −1.3 points per-tensor, none per-channel).

The graph takes right-padded `input_ids` and `attention_mask` (int64, dynamic batch and
sequence) and answers `logits` and `mean_hidden` — the attention-masked mean of the last
hidden state, the embedding drift monitoring reads — so it can stand in for the torch forward
pass of `serving.classifier` on any batch. Only the file ships in the Bento; a container needs
ONNX Runtime, no exporter.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serving.onnx_engine import ONNX_INPUTS, ONNX_OUTPUTS

# 18: the opset torch 2.13's exporter writes natively (no version conversion pass).
OPSET = 18


class LogitsAndMean(torch.nn.Module):
    """The classifier's forward pass with the outputs serving needs, as plain tensors."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        hidden = out.hidden_states[-1]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return out.logits, mean


def export_fp32(weights_dir: Path, out_path: Path) -> Path:
    """The fp32 graph of the transformers model in `weights_dir`, written to `out_path`."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615 (a local folder)
        str(weights_dir), local_files_only=True
    )
    model.eval()
    # The exporter warns once per torchvision operator it cannot register (not installed here).
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    batch = torch.export.Dim("batch", min=1, max=4096)
    tokens = torch.export.Dim("tokens", min=1, max=4096)
    with torch.inference_mode():
        program = torch.onnx.export(
            LogitsAndMean(model).eval(),
            (ids, mask),
            dynamo=True,
            input_names=list(ONNX_INPUTS),
            output_names=list(ONNX_OUTPUTS),
            dynamic_shapes={
                "input_ids": {0: batch, 1: tokens},
                "attention_mask": {0: batch, 1: tokens},
            },
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    # One file: the MiniLM weights (≈90 MB fp32) fit under protobuf's 2 GB limit.
    program.save(str(out_path), external_data=False)
    return out_path


# Smallest token magnitude divided by: an all-zero row stays zero instead of NaN.
TOKEN_EPS = 1e-12
QMAX = 127
# The two columns appended to every normalised activation (amax / amax and -amax / amax): with
# them the kernel's tensor-wide range is exactly [-1, 1] whatever the batch holds. Their weight
# rows are zero.
RANGE_PINS = (1.0, -1.0)


def weight_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A [K, N] MatMul weight as int8 with one symmetric scale per output column."""
    scales = np.maximum(np.abs(weight).max(axis=0), 1e-8) / QMAX
    quantized = np.clip(np.rint(weight / scales), -QMAX, QMAX).astype(np.int8)
    return quantized, scales.astype(np.float32)


def pinned_weight(weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The int8 weight and per-column scales of MatMuls that read the same activation, side by
    side ([K, N1 + N2 + ...]), with one zero row per range pin below."""
    quantized, scales = weight_int8(np.concatenate(weights, axis=1))
    pins = np.zeros((len(RANGE_PINS), quantized.shape[1]), dtype=np.int8)
    return np.concatenate([quantized, pins], axis=0), scales


class _GraphBuilder:
    """Nodes and constants for the rewrite, each constant stored once."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.consts: dict[str, Any] = {}
        self.nodes: list[Any] = []

    def const(self, name: str, value: np.ndarray) -> str:
        if name not in self.consts:
            self.consts[name] = self.numpy_helper.from_array(value, name)
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]


def _int8_matmuls(g: _GraphBuilder, x: str, group: list[tuple[str, np.ndarray, str]]) -> None:
    """The MatMuls `group` ((weight name, weight, output) each), all reading `x`, as one int8
    MatMul over `x` with each token row divided by its largest magnitude and the range pins
    appended; the product is scaled back per token and split into the MatMuls' outputs."""
    last = g.const("pt_last", np.array([-1]))
    amax = g.node(
        "Max",
        [
            g.node("ReduceMax", [g.node("Abs", [x], [f"{x}_pt_abs"]), last], [f"{x}_pt_amax0"]),
            g.const("pt_eps", np.array(TOKEN_EPS, dtype=np.float32)),
        ],
        [f"{x}_pt_amax"],
    )
    # The pins are amax and -amax appended before the division (a / a is exactly 1 in IEEE
    # arithmetic): one copy of x and one division, where dividing and then padding twice made
    # three passes over the activation (Pad was 4.5 % of a batch-16 pass), the same numbers.
    pins = [amax, g.node("Neg", [amax], [f"{x}_pt_negamax"])]
    pinned = g.node(
        "Div", [g.node("Concat", [x, *pins], [f"{x}_pt_cat"], axis=-1), amax], [f"{x}_pt_norm"]
    )
    quantized, scales = pinned_weight([weight for _, weight, _ in group])
    first = group[0][0]
    product = g.node(
        "DynamicQuantizeMatMul",
        [pinned, g.const(f"{first}_int8", quantized), g.const(f"{first}_scale", scales)],
        [f"{x}_pt_q"],
        domain="com.microsoft",
    )
    outputs = [out for _, _, out in group]
    if len(group) == 1:
        g.node("Mul", [product, amax], outputs)
        return
    scaled = g.node("Mul", [product, amax], [f"{x}_pt_scaled"])
    widths = np.array([weight.shape[1] for _, weight, _ in group])
    g.node("Split", [scaled, g.const(f"{first}_split", widths)], outputs, axis=-1)


def _weight_input(node: Any) -> str:
    """The second input of a MatMul (a weight, when it is an initializer); "" for other nodes."""
    return str(node.input[1]) if node.op_type == "MatMul" else ""


def per_token_int8(model: Any) -> Any:
    """`model` (an `onnx.ModelProto`) with every MatMul by a 2-D weight initializer replaced by
    int8 weights (per output channel) times per-token int8 activations; returns `model`.

    The MatMuls that read the same activation (attention's query, key and value) become one
    int8 MatMul over one normalisation of it: fewer, larger kernels, the same numbers. The
    MatMuls between two activations (attention scores and mixing) stay fp32, as they do in the
    torch path."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer if len(init.dims) == 2}
    uses = Counter(name for node in graph.node for name in node.input)
    groups: dict[str, list[tuple[str, np.ndarray, str]]] = {}
    for node in graph.node:
        w_name = _weight_input(node)
        if w_name in weights and uses[w_name] == 1:
            weight = numpy_helper.to_array(weights[w_name]).astype(np.float32)
            groups.setdefault(node.input[0], []).append((w_name, weight, node.output[0]))
    rewritten = {w_name for group in groups.values() for w_name, _, _ in group}
    g = _GraphBuilder()
    for node in graph.node:
        w_name = _weight_input(node)
        if w_name not in rewritten:
            g.nodes.append(node)
        elif groups[node.input[0]][0][0] == w_name:
            # At the group's first MatMul: every member's input exists there already.
            _int8_matmuls(g, node.input[0], groups[node.input[0]])
    kept = [init for init in graph.initializer if init.name not in rewritten]
    del graph.initializer[:]
    graph.initializer.extend([*kept, *g.consts.values()])
    del graph.node[:]
    graph.node.extend(g.nodes)
    # The exporter's shape annotations describe the fp32 graph; ONNX Runtime infers afresh.
    graph.ClearField("value_info")
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(model)
    return model


def _scalar_is(name: str, constants: dict[str, Any], value: float) -> bool:
    """Whether `name` is a one-element constant equal to `value` within float32 rounding (a
    millionth of it; exactly, for zero)."""
    from onnx import numpy_helper

    if name not in constants:
        return False
    array = numpy_helper.to_array(constants[name])
    return array.size == 1 and abs(float(array.ravel()[0]) - value) <= 1e-6 * abs(value)


def _is_nan_guard(node: Any, produced: dict[str, Any], constants: dict[str, Any]) -> bool:
    """Whether `node` is `Where(IsNaN(p), 0, p)` with `p` a Softmax output."""
    if node.op_type != "Where":
        return False
    check, guarded = produced.get(node.input[0]), produced.get(node.input[2])
    return (
        check is not None
        and check.op_type == "IsNaN"
        and check.input[0] == node.input[2]
        and guarded is not None
        and guarded.op_type == "Softmax"
        and _scalar_is(node.input[1], constants, 0.0)
    )


def _replace_nodes(graph: Any, nodes: list[Any], produced_before: set[str]) -> None:
    """`graph`'s nodes set to `nodes`, without the shape notes (`value_info`) of values that
    no node makes any more."""
    gone = produced_before - {out for node in nodes for out in node.output}
    kept_info = [info for info in graph.value_info if info.name not in gone]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    del graph.node[:]
    graph.node.extend(nodes)


def drop_nan_guards(model: Any) -> Any:
    """`model` (an `onnx.ModelProto`) without the exporter's `Where(IsNaN(p), 0, p)` after each
    attention softmax; returns `model`.

    The guard turns the NaN of a query row whose keys are all masked into zeros. Here no row is:
    every text in a pass keeps its [CLS] token (mask 1 at position 0; `serving.onnx_engine`
    refuses a pass without it), so the guard never fires and its two full passes over the
    attention probabilities (1.8 % of a batch-16 pass) buy nothing. The answers are the same
    to the bit."""
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    produced = {out: node for node in graph.node for out in node.output}
    outputs = {out.name for out in graph.output}
    renamed: dict[str, str] = {}
    dropped: set[int] = set()
    for index, node in enumerate(graph.node):
        if node.output[0] not in outputs and _is_nan_guard(node, produced, constants):
            renamed[node.output[0]] = node.input[2]
            dropped.add(index)
    nodes = [node for index, node in enumerate(graph.node) if index not in dropped]
    uses = Counter(name for node in nodes for name in node.input)
    uses.update(outputs)
    nodes = [node for node in nodes if node.op_type != "IsNaN" or uses[node.output[0]]]
    for node in nodes:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    _replace_nodes(graph, nodes, set(produced))
    return model


def _other_input(node: Any, known: str) -> str:
    """The input of a two-input node that is not `known` ("" when neither or both are)."""
    first, second = node.input
    if first == known and second != known:
        return str(second)
    if second == known and first != known:
        return str(first)
    return ""


def _gelu_nodes(
    erf: Any, consumers: dict[str, list[Any]], produced: dict[str, Any], constants: dict[str, Any]
) -> tuple[str, list[Any]] | None:
    """(x, the five nodes) when `erf` is the middle of `Mul(x, Mul(0.5, Add(Erf(Div(x, sqrt
    2)), 1)))`, the exporter's exact GELU, each inner result read once; else None."""
    div = produced.get(erf.input[0])
    if div is None or div.op_type != "Div" or not _scalar_is(div.input[1], constants, 2**0.5):
        return None
    x = str(div.input[0])
    chain, value = [div, erf], erf.output[0]
    for op, constant in (("Add", 1.0), ("Mul", 0.5)):
        readers = consumers.get(value, [])
        if len(readers) != 1 or readers[0].op_type != op:
            return None
        if not _scalar_is(_other_input(readers[0], value), constants, constant):
            return None
        chain.append(readers[0])
        value = readers[0].output[0]
    readers = consumers.get(value, [])
    if len(readers) != 1 or readers[0].op_type != "Mul" or _other_input(readers[0], value) != x:
        return None
    if len(consumers.get(div.output[0], [])) != 1:
        return None
    return x, [*chain, readers[0]]


def fuse_gelu(model: Any) -> Any:
    """`model` (an `onnx.ModelProto`) with each of the exporter's exact GELUs (five nodes,
    `x * 0.5 * (1 + erf(x / sqrt 2))`) as one ONNX Runtime `Gelu`; returns `model`.

    ONNX Runtime's own GELU fusion does not match the order the exporter writes, so each feed-
    forward layer made five passes over its 1,536-wide activation. As one `Gelu`, ONNX Runtime
    then folds the bias before it in too (`BiasGelu`): a pass at 1-32 texts took 0.96-0.99 x
    the time (one thread, alternating; README, Performance). GELU is the same function per
    element, so a text's answer still does not depend on its batch-mates."""
    from onnx import helper

    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    produced = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {out.name for out in graph.output}
    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for erf in [node for node in graph.node if node.op_type == "Erf"]:
        found = _gelu_nodes(erf, consumers, produced, constants)
        if found is None:
            continue
        x, chain = found
        if any(node.output[0] in outputs for node in chain[:-1]):
            continue
        dropped.update(id(node) for node in chain[:-1])
        last = chain[-1]
        replaced[id(last)] = helper.make_node(
            "Gelu", [x], [last.output[0]], name=f"{last.output[0]}_gelu", domain="com.microsoft"
        )
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped]
    _replace_nodes(graph, nodes, set(produced))
    if replaced and not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def quantize_int8(fp32_path: Path, out_path: Path) -> Path:
    """`fp32_path` without its NaN guards (`drop_nan_guards`), with one node per GELU
    (`fuse_gelu`) and with its weight MatMuls int8 (`per_token_int8`), written to `out_path`."""
    import onnx

    model = per_token_int8(fuse_gelu(drop_nan_guards(onnx.load(str(fp32_path)))))
    onnx.save(model, str(out_path))
    return out_path


def export_int8(weights_dir: Path, out_path: Path) -> Path:
    """The int8 ONNX graph of the model in `weights_dir` at `out_path` (its folder is made)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sentiment-onnx-") as tmp:
        fp32 = export_fp32(weights_dir, Path(tmp) / "model_fp32.onnx")
        return quantize_int8(fp32, out_path)
