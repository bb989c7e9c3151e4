"""Which layers the CPU int8 path quantises, on a tiny randomly initialised BERT."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification

from sentiment.runtime import int8_layer_names, quantize_int8


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return BertForSequenceClassification(config).eval()


def test_the_residual_output_projections_stay_in_float() -> None:
    per_layer = ["attention.self.query", "attention.self.key", "attention.self.value"]
    per_layer.append("intermediate.dense")
    expected = [f"bert.encoder.layer.{i}.{name}" for i in range(2) for name in per_layer]
    assert int8_layer_names(tiny_bert()) == [*expected, "bert.pooler.dense", "classifier"]


def test_quantize_int8_swaps_exactly_those_layers_and_keeps_the_outputs_close() -> None:
    model = tiny_bert()
    ids = torch.tensor([[1, 5, 7, 9, 2], [1, 4, 2, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        before = model(input_ids=ids, attention_mask=mask).logits
    quantized = quantize_int8(model)
    kinds = {
        name: type(module).__module__
        for name, module in quantized.named_modules()
        if name.endswith(("query", "dense", "classifier"))
    }
    assert "quantized.dynamic" in kinds["bert.encoder.layer.0.attention.self.query"]
    assert "quantized.dynamic" in kinds["bert.encoder.layer.0.intermediate.dense"]
    assert kinds["bert.encoder.layer.0.output.dense"] == "torch.nn.modules.linear"
    assert kinds["bert.encoder.layer.0.attention.output.dense"] == "torch.nn.modules.linear"
    with torch.inference_mode():
        after = quantized(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(before, after, atol=0.05)
