"""training.batches and the fine-tuning levers: which rows share a batch, which learning rate
each parameter gets, which rows are trained on. Hand-built inputs, exact expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from sentiment.config import TrainingConfig
from sentiment.data import LabelledTexts, rows_with_min_words
from training.batches import length_grouped_batches, padded_tokens, random_batches
from training.finetune import layer_depth, parameter_groups


def test_random_batches_cut_the_order_in_place() -> None:
    order = np.array([4, 2, 0, 1, 3])
    assert [b.tolist() for b in random_batches(order, 2)] == [[4, 2], [0, 1], [3]]


def test_length_grouped_batches_sort_within_chunks_and_keep_every_row() -> None:
    lengths = np.array([9, 1, 8, 2, 7, 3, 6, 4])
    order = np.arange(8)
    batches = length_grouped_batches(order, lengths, 2, np.random.default_rng(0), chunk_batches=2)
    # Chunks of 4 rows: [0..3] sorted by length -> 1,3,2,0 ; [4..7] -> 5,7,6,4.
    assert sorted(tuple(b.tolist()) for b in batches) == [(1, 3), (2, 0), (5, 7), (6, 4)]
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))


def test_grouping_cuts_padding() -> None:
    lengths = np.array([50, 2, 48, 3, 47, 2, 49, 3])
    order = np.arange(8)
    grouped = length_grouped_batches(order, lengths, 2, np.random.default_rng(1), chunk_batches=4)
    assert padded_tokens(random_batches(order, 2), lengths) == 2 * (50 + 48 + 47 + 49)
    assert padded_tokens(grouped, lengths) == 2 * (2 + 3 + 48 + 50)


def test_grouped_batch_order_is_shuffled_by_the_generator() -> None:
    lengths = np.arange(40)
    order = np.arange(40)
    first = length_grouped_batches(order, lengths, 2, np.random.default_rng(0))
    again = length_grouped_batches(order, lengths, 2, np.random.default_rng(0))
    other = length_grouped_batches(order, lengths, 2, np.random.default_rng(1))
    assert [b.tolist() for b in first] == [b.tolist() for b in again]
    assert [b.tolist() for b in first] != [b.tolist() for b in other]
    assert [b.tolist() for b in first] != [b.tolist() for b in sorted(first, key=lambda b: b[0])]


def test_rows_with_min_words() -> None:
    data = LabelledTexts(["a", "a b c", "a b", "one two three four"], [0, 1, 0, 1])
    assert rows_with_min_words(data, 3).texts == ["a b c", "one two three four"]
    assert rows_with_min_words(data, 0) is data
    assert rows_with_min_words(data, 5).texts == []


@pytest.mark.parametrize(
    ("name", "depth"),
    [
        ("bert.embeddings.word_embeddings.weight", -1),
        ("bert.embeddings.LayerNorm.bias", -1),
        ("bert.encoder.layer.0.attention.self.query.weight", 0),
        ("bert.encoder.layer.11.output.dense.bias", 11),
        ("bert.pooler.dense.weight", 2),
        ("classifier.weight", 2),
    ],
)
def test_layer_depth(name: str, depth: int) -> None:
    assert layer_depth(name, 2) == depth


def tiny_bert() -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    return BertForSequenceClassification(config)


def learning_rates(model: torch.nn.Module, groups: list[dict]) -> dict[str, float]:
    by_param = {id(p): g["lr"] for g in groups for p in g["params"]}
    return {n: by_param[id(p)] for n, p in model.named_parameters() if id(p) in by_param}


def test_layer_wise_decay_and_frozen_embeddings() -> None:
    cfg = TrainingConfig.model_validate(
        {"training": {"learning_rate": 1.0, "layer_lr_decay": 0.5, "freeze_embeddings": True}}
    )
    model = tiny_bert()
    rates = learning_rates(model, parameter_groups(model, cfg))
    assert "bert.embeddings.word_embeddings.weight" not in rates
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad
    assert rates["bert.embeddings.position_embeddings.weight"] == 0.125
    assert rates["bert.encoder.layer.0.output.dense.weight"] == 0.25
    assert rates["bert.encoder.layer.1.output.dense.weight"] == 0.5
    assert rates["classifier.weight"] == 1.0


def test_default_groups_one_rate_and_no_decay_on_biases_and_layer_norms() -> None:
    cfg = TrainingConfig.model_validate({"training": {"learning_rate": 0.1, "weight_decay": 0.01}})
    model = tiny_bert()
    groups = parameter_groups(model, cfg)
    assert {g["lr"] for g in groups} == {0.1}
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert decay[id(params["classifier.bias"])] == 0.0
    assert decay[id(params["bert.encoder.layer.0.output.LayerNorm.weight"])] == 0.0
    assert decay[id(params["classifier.weight"])] == 0.01
    assert len(decay) == len(params)


def test_head_from_logistic_regression_predicts_as_the_regression_does() -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.finetune import init_head_from_logistic, resolve_base_model

    base = resolve_base_model("packaged:all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    texts = ["awful", "terrible film", "bad", "dull and bad"] * 5 + [
        "great",
        "wonderful",
        "good",
    ] * 5
    data = LabelledTexts(texts, [0] * 20 + [1] * 15)
    cfg = TrainingConfig.model_validate({"training": {"head_init_rows": 35, "eval_batch_size": 8}})
    accuracy = init_head_from_logistic(model, tokenizer, data, cfg, torch.device("cpu"))
    assert accuracy == 1.0
    weight = model.classifier.weight.detach()
    assert torch.equal(weight[0], -weight[1])
    with torch.inference_mode():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    assert logits.argmax(1).tolist() == data.labels


def test_lever_overrides_replace_keys_and_are_validated() -> None:
    from sentiment.config import load_training_config
    from training.levers import BASELINE, LEVERS, with_overrides

    base = with_overrides(load_training_config("configs/training_quick.yaml", env={}), BASELINE)
    assert base.training.max_train_samples == 3000 and not base.training.length_grouped
    assert base.training.batch_size == 32 and not base.training.freeze_embeddings
    lever = with_overrides(base, LEVERS["sentences_only"][1])
    assert lever.data.min_words == 8 and lever.training.length_grouped
    assert lever.training.max_train_samples == 3000  # untouched keys kept
    with pytest.raises(ValueError, match="layer_lr_decay"):
        with_overrides(base, {"training": {"layer_lr_decay": 2.0}})


def test_levers_table_reports_the_difference_to_the_baseline() -> None:
    from training.levers import markdown_table

    rows = [
        {"lever": "baseline", "change": "c", "train_rows": 3, "accuracy": 0.8, "fine_tuning_s": 10},
        {"lever": "x", "change": "d", "train_rows": 3, "accuracy": 0.85, "fine_tuning_s": 5.4},
    ]
    assert markdown_table(rows).splitlines()[-1] == "| x | d | 3 | 0.8500 | +0.0500 | 5 |"
