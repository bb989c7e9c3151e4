"""The ONNX Runtime copy of a fine-tuned model, made once at `import_model` time.

`torch.onnx.export(dynamo=True)` (the exporter torch maintains; onnxscript under it) writes
the fp32 graph; `per_token_int8` then stores every weight MatMul as int8 with one scale per
output channel and quantises its activations with one scale per token, as the torch path's
`serving.int8.Int8Linear` does.

Why not ONNX Runtime's `quantize_dynamic`: its activations get one scale for the whole input
tensor, padding rows included, so a text's answer depended on the texts that shared its pass
(CI: the same review scored 0.5968 in one batch and 0.5891 in another, and `/explain` and
`/predict` disagreed by 0.002). Per-token scales are pinned the same way as in the torch
path: each token row is divided by its largest magnitude and one extra row holding exactly
-1 and 1 fixes the range ONNX Runtime's fused `DynamicQuantizeMatMul` picks, so each token is
quantised on its own range whatever the batch holds. Over SST-2 validation (quick model, one
text per pass against batches of 32) no text moved at all, against 853 of 872 moved by more
than 1e-4 (up to 0.22) under per-tensor scales. The extra nodes cost some speed on one thread
(texts/s, per-tensor then per-token, one run each: 240 / 208 at one text, 312 / 311 at 16, 370 /
337 at 64); the packed torch path did 132, 279 and 291 in the same run. Per-tensor weights (ONNX Runtime's
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


def weight_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A [K, N] MatMul weight as int8 with one symmetric scale per output column."""
    scales = np.maximum(np.abs(weight).max(axis=0), 1e-8) / QMAX
    quantized = np.clip(np.rint(weight / scales), -QMAX, QMAX).astype(np.int8)
    return quantized, scales.astype(np.float32)


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

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], **attrs))
        return output


def _pinned_rows(g: _GraphBuilder, x: str, k: int) -> tuple[str, str, str]:
    """`x` as [rows, k] with each row divided by its largest magnitude, plus the row of -1 and
    1 that pins the quantiser's range; answers (pinned, per-row magnitude, leading shape)."""
    lead = g.node(
        "Slice",
        [
            g.node("Shape", [x], f"{x}_pt_shape"),
            g.const("pt_0", np.array([0])),
            g.const("pt_-1", np.array([-1])),
        ],
        f"{x}_pt_lead",
    )
    flat = g.node("Reshape", [x, g.const(f"pt_flat_{k}", np.array([-1, k]))], f"{x}_pt_flat")
    amax = g.node(
        "Max",
        [
            g.node(
                "ReduceMax",
                [g.node("Abs", [flat], f"{x}_pt_abs"), g.const("pt_1", np.array([1]))],
                f"{x}_pt_amax0",
                keepdims=1,
            ),
            g.const("pt_eps", np.array(TOKEN_EPS, dtype=np.float32)),
        ],
        f"{x}_pt_amax",
    )
    anchor = np.zeros((1, k), dtype=np.float32)
    anchor[0, 0], anchor[0, 1] = 1.0, -1.0
    pinned = g.node(
        "Concat",
        [g.node("Div", [flat, amax], f"{x}_pt_norm"), g.const(f"pt_anchor_{k}", anchor)],
        f"{x}_pt_pinned",
        axis=0,
    )
    return pinned, amax, lead


def _int8_matmul(
    g: _GraphBuilder, rows: tuple[str, str, str], w_name: str, weight: np.ndarray, out: str
) -> None:
    """`out` = the pinned rows times `weight` in int8, scaled back and reshaped like the MatMul."""
    pinned, amax, lead = rows
    quantized, scales = weight_int8(weight)
    product = g.node(
        "DynamicQuantizeMatMul",
        [pinned, g.const(f"{w_name}_int8", quantized), g.const(f"{w_name}_scale", scales)],
        f"{out}_pt_q",
        domain="com.microsoft",
    )
    token_rows = g.node(
        "Slice",
        [product, g.const("pt_0", np.array([0])), g.const("pt_-1", np.array([-1]))],
        f"{out}_pt_rows",
    )
    shape = g.node(
        "Concat",
        [lead, g.const(f"pt_n_{weight.shape[1]}", np.array([weight.shape[1]]))],
        f"{out}_pt_outshape",
        axis=0,
    )
    g.node("Reshape", [g.node("Mul", [token_rows, amax], f"{out}_pt_scaled"), shape], out)


def per_token_int8(model: Any) -> Any:
    """`model` (an `onnx.ModelProto`) with every MatMul by a 2-D weight initializer replaced by
    int8 weights (per output channel) times per-token int8 activations; returns `model`.

    MatMuls that read the same activation (attention's query, key and value) share one
    normalisation of it. The MatMuls between two activations (attention scores and mixing)
    stay fp32, as they do in the torch path."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer if len(init.dims) == 2}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    g = _GraphBuilder()
    pinned: dict[str, tuple[str, str, str]] = {}
    replaced: set[str] = set()
    for node in graph.node:
        w_name = node.input[1] if node.op_type == "MatMul" else ""
        if w_name not in weights or uses[w_name] != 1:
            g.nodes.append(node)
            continue
        weight = numpy_helper.to_array(weights[w_name]).astype(np.float32)
        x = node.input[0]
        if x not in pinned:
            pinned[x] = _pinned_rows(g, x, weight.shape[0])
        _int8_matmul(g, pinned[x], w_name, weight, node.output[0])
        replaced.add(w_name)
    kept = [init for init in graph.initializer if init.name not in replaced]
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


def quantize_int8(fp32_path: Path, out_path: Path) -> Path:
    """`fp32_path` with its weight MatMuls int8 (`per_token_int8`), written to `out_path`."""
    import onnx

    model = per_token_int8(onnx.load(str(fp32_path)))
    onnx.save(model, str(out_path))
    return out_path


def export_int8(weights_dir: Path, out_path: Path) -> Path:
    """The int8 ONNX graph of the model in `weights_dir` at `out_path` (its folder is made)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sentiment-onnx-") as tmp:
        fp32 = export_fp32(weights_dir, Path(tmp) / "model_fp32.onnx")
        return quantize_int8(fp32, out_path)
