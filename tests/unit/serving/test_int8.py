"""The CPU int8 path (serving/int8.py): per-token activation scales, on small inputs and a tiny
randomly initialised BERT."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from serving.int8 import Int8Linear, quantize_int8


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


def test_int8_linear_is_close_to_the_float_layer() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(3, 5, 64)
    with torch.inference_mode():
        expected = linear(x)
        got = Int8Linear(linear)(x)
    assert got.shape == (3, 5, 32)
    # 7-bit activations and 8-bit weights: within 3 % of the output range (2.05 % measured).
    assert (got - expected).abs().max() < 0.03 * expected.abs().max()


def test_a_rows_output_does_not_depend_on_the_other_rows() -> None:
    torch.manual_seed(0)
    layer = Int8Linear(torch.nn.Linear(16, 8))
    row = torch.randn(1, 16)
    # A tensor-wide activation scale would be set by the large row and coarsen the small one.
    others = torch.cat([torch.randn(1, 16) * 100, -torch.rand(2, 16)])
    with torch.inference_mode():
        alone = layer(row)
        together = layer(torch.cat([others[:1], row, others[1:]]))
    assert torch.equal(together[1:2], alone)


def test_a_zero_row_gives_the_bias() -> None:
    linear = torch.nn.Linear(4, 2)
    with torch.inference_mode():
        out = Int8Linear(linear)(torch.zeros(1, 4))
    assert torch.equal(out[0], linear.bias.detach())


def test_int8_linear_without_bias_and_too_narrow_layers() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 3, bias=False)
    x = torch.randn(2, 8)
    with torch.inference_mode():
        assert torch.allclose(Int8Linear(linear)(x), linear(x), atol=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        Int8Linear(torch.nn.Linear(1, 3))


def test_quantize_int8_swaps_every_linear_layer_and_keeps_the_logits_close() -> None:
    model = tiny_bert()
    ids = torch.tensor([[1, 5, 7, 9, 2], [1, 4, 2, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        before = model(input_ids=ids, attention_mask=mask).logits
    quantized = quantize_int8(model)
    kinds = {type(m) for m in quantized.modules()}
    assert torch.nn.Linear not in kinds
    assert sum(isinstance(m, Int8Linear) for m in quantized.modules()) == 2 * 6 + 2
    with torch.inference_mode():
        after = quantized(input_ids=ids, attention_mask=mask).logits
        alone = quantized(input_ids=ids[1:, :3], attention_mask=mask[1:, :3]).logits
    assert torch.allclose(before, after, atol=0.05)
    # Padding and the other text change nothing but float summation order.
    assert torch.allclose(after[1], alone[0], atol=1e-5)
