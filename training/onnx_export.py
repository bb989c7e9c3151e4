"""The ONNX Runtime copy of a fine-tuned model, made once at `import_model` time.

`torch.onnx.export(dynamo=True)` (the exporter torch maintains; onnxscript under it) writes
the fp32 graph; ONNX Runtime's dynamic quantization then stores its MatMul weights as int8
with one scale per output channel. Per-tensor weights (ONNX Runtime's default) cost SST-2
accuracy on AVX2, where activations are u8 and the products saturate; per-channel scales kept
the predictions (issue 21's measurement: −1.3 points per-tensor, none per-channel).

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
            LogitsAndMean(model),
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


def quantize_int8(fp32_path: Path, out_path: Path) -> Path:
    """`fp32_path`'s MatMul weights as int8, one scale per output channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The exporter's intermediate shape annotations can disagree with ONNX's own shape
    # inference, which the quantizer runs and then refuses; without them it infers afresh.
    graph = onnx.load(str(fp32_path))
    graph.graph.ClearField("value_info")
    clean = fp32_path.with_name(fp32_path.stem + "_clean.onnx")
    onnx.save(graph, str(clean))
    quantize_dynamic(
        str(clean),
        str(out_path),
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
    )
    return out_path


def export_int8(weights_dir: Path, out_path: Path) -> Path:
    """The int8 ONNX graph of the model in `weights_dir` at `out_path` (its folder is made)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sentiment-onnx-") as tmp:
        fp32 = export_fp32(weights_dir, Path(tmp) / "model_fp32.onnx")
        return quantize_int8(fp32, out_path)
