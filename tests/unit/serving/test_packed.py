"""Forward passes without padding (serving/packed.py) and how a batch is cut into passes
(serving/classifier.py), on hand-built lengths and a tiny randomly initialised BERT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    BertForSequenceClassification,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from serving.classifier import Classifier, pad_rows, padding_aware_chunks
from serving.int8 import quantize_int8
from serving.packed import packed_forward, supports_packing
from tests.unit.serving.test_int8 import tiny_bert

ROWS = [[1, 5, 7, 9, 11, 2], [1, 4, 2], [1, 8, 3, 2], [1, 2]]


def padded_reference(
    model: BertForSequenceClassification, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    weights = mask.unsqueeze(-1).float()
    mean = (out.hidden_states[-1] * weights).sum(1) / weights.sum(1)
    return out.logits, mean


def test_padding_aware_chunks_without_overhead_runs_every_text_alone() -> None:
    chunks = padding_aware_chunks([5, 1, 3, 2], max_chunk=2, overhead_tokens=0)
    assert chunks == [[1], [3], [2], [0]]


def test_padding_aware_chunks_with_a_large_overhead_makes_the_fewest_passes() -> None:
    assert padding_aware_chunks([5, 1, 3, 2], max_chunk=2, overhead_tokens=100) == [[1, 3], [2, 0]]
    # Three passes of at most 2 texts; where cuts tie on cost, the later pass is the longer one.
    assert padding_aware_chunks([3] * 5, max_chunk=2, overhead_tokens=100) == [[0], [1, 2], [3, 4]]


def test_padding_aware_chunks_keeps_one_long_text_from_padding_the_short_ones() -> None:
    # One pass: 20 + 4 * 50 = 220; short ones together, long one alone: 20 + 30 + 20 + 50 = 120.
    assert padding_aware_chunks([10, 50, 10, 10], max_chunk=4, overhead_tokens=20) == [
        [0, 2, 3],
        [1],
    ]


def test_padding_aware_chunks_edge_cases() -> None:
    assert padding_aware_chunks([], max_chunk=4, overhead_tokens=20) == []
    assert padding_aware_chunks([7], max_chunk=1, overhead_tokens=0) == [[0]]
    with pytest.raises(ValueError):
        padding_aware_chunks([1, 2], max_chunk=0, overhead_tokens=20)
    with pytest.raises(ValueError):
        padding_aware_chunks([1, 2], max_chunk=2, overhead_tokens=-1)


def test_pad_rows_pads_on_the_right_and_masks_the_padding() -> None:
    ids, mask = pad_rows([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == torch.long


def test_supports_packing_only_bert_classifiers() -> None:
    assert supports_packing(tiny_bert())
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    )
    assert not supports_packing(distil)
    assert not supports_packing(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
def test_packed_forward_gives_the_padded_forwards_logits_and_mean_embedding(
    quantize: bool,
) -> None:
    model = tiny_bert()
    if quantize:
        model = quantize_int8(model)
    ids, mask = pad_rows(ROWS, pad_id=0)
    logits, mean = packed_forward(model, ids, mask, with_embeddings=True)
    expected_logits, expected_mean = padded_reference(model, ids, mask)
    assert mean is not None
    assert torch.allclose(logits, expected_logits, atol=1e-5)
    assert torch.allclose(mean, expected_mean, atol=1e-5)
    assert packed_forward(model, ids, mask, with_embeddings=False)[1] is None


def test_a_texts_packed_result_does_not_depend_on_its_batch() -> None:
    model = quantize_int8(tiny_bert())
    ids, mask = pad_rows(ROWS, pad_id=0)
    together, _ = packed_forward(model, ids, mask, with_embeddings=False)
    for row, tokens in enumerate(ROWS):
        alone, _ = packed_forward(model, *pad_rows([tokens], pad_id=0), with_embeddings=False)
        assert torch.allclose(together[row], alone[0], atol=1e-5)


def test_runtime_predicts_the_same_with_and_without_skipping_padding(tmp_path: Path) -> None:
    words = ["good", "bad", "film", "plot", "not", "dull", "great", "acting"]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate([*specials, *words])}
    BertTokenizerFast(vocab=vocab).save_pretrained(tmp_path)
    tiny_bert().save_pretrained(tmp_path)
    texts = ["good film", "bad plot, not great acting", "dull", "great great film not bad", "x"]
    results = {}
    for skip in (False, True):
        runtime = Classifier(
            tmp_path,
            device="cpu",
            quantize=True,
            skip_padding=skip,
            chunk_size=2,
            overhead_tokens=1,
        )
        assert runtime.packed == skip
        results[skip] = runtime.predict(texts, with_embeddings=True)
    for padded, packed in zip(results[False], results[True], strict=True):
        assert packed.label == padded.label
        assert packed.n_tokens == padded.n_tokens
        assert packed.unk_ratio == padded.unk_ratio
        assert packed.confidence == pytest.approx(padded.confidence, abs=1e-5)
        assert packed.embedding == pytest.approx(padded.embedding, abs=1e-5)
        # An array, not a list: it crosses the pipe to the server worker as bytes.
        for embedding in (padded.embedding, packed.embedding):
            assert isinstance(embedding, np.ndarray) and embedding.dtype == np.float32
    # "," and "x" are not in the vocabulary.
    assert [p.n_tokens for p in results[True]] == [2, 6, 1, 5, 1]
    assert [p.unk_ratio for p in results[True]] == [0.0, 1 / 6, 0.0, 0.0, 1.0]


def test_packed_forward_refuses_empty_or_left_padded_rows() -> None:
    model = tiny_bert()
    with pytest.raises(ValueError, match="right-padded"):
        packed_forward(model, *pad_rows([[1, 2], []], pad_id=0), with_embeddings=False)
    left = torch.tensor([[0, 1, 2], [1, 2, 3]])
    with pytest.raises(ValueError, match="right-padded"):
        packed_forward(model, left, (left != 0).long(), with_embeddings=False)


def test_supports_packing_refuses_a_model_in_training_mode() -> None:
    assert not supports_packing(tiny_bert().train())
