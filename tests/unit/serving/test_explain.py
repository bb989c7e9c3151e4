"""Word-level explanations (serving/explain.py): word pieces merged into words on hand-built
offsets, and the Explainer on a tiny randomly initialised BERT, int8 as served and fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from serving.classifier import Classifier
from serving.explain import METHODS, Explainer, merge_word_pieces, word_spans


def words_of(merged: list) -> list[tuple[str, float]]:
    return [(w["word"], pytest.approx(w["attribution"], abs=1e-12)) for w in merged]


# --- merge_word_pieces ----------------------------------------------------------------------


def test_sub_word_pieces_are_summed_into_their_word() -> None:
    # "un", "##believ", "##able", "film"
    merged = merge_word_pieces(
        "unbelievable film", [(0, 2), (2, 9), (9, 12), (13, 17)], [0.1, 0.2, 0.3, -0.5]
    )
    assert words_of(merged) == [("unbelievable", 0.6), ("film", -0.5)]


def test_punctuation_touching_a_word_stays_with_it() -> None:
    # "great", "!", "don", "'", "t", "stop", "."
    merged = merge_word_pieces(
        "great! don't stop.",
        [(0, 5), (5, 6), (7, 10), (10, 11), (11, 12), (13, 17), (17, 18)],
        [1.0, 0.5, 0.25, 0.125, 0.0625, 2.0, -1.0],
    )
    assert words_of(merged) == [("great!", 1.5), ("don't", 0.4375), ("stop.", 1.0)]


def test_punctuation_between_spaces_is_a_word_of_its_own() -> None:
    # SST-2 style: "it", "'", "s", "fine", "."
    merged = merge_word_pieces(
        "it 's fine .", [(0, 2), (3, 4), (4, 5), (6, 10), (11, 12)], [1.0, 2.0, 3.0, 4.0, 5.0]
    )
    assert words_of(merged) == [("it", 1.0), ("'s", 5.0), ("fine", 4.0), (".", 5.0)]


def test_an_unknown_piece_gives_back_the_characters_it_stands_for() -> None:
    # "i", "[UNK]" (for the emoji), "it", "[UNK]" + "##s" (an unknown start, a known end)
    merged = merge_word_pieces(
        "I ❤ it ☃s", [(0, 1), (2, 3), (4, 6), (7, 8), (8, 9)], [0.1, 0.7, 0.2, 0.3, 0.4]
    )
    assert words_of(merged) == [("I", 0.1), ("❤", 0.7), ("it", 0.2), ("☃s", 0.7)]


def test_words_past_the_truncation_are_kept_with_attribution_zero() -> None:
    merged = merge_word_pieces("a bc d e", [(0, 1), (2, 3)], [0.5, 0.25])
    # "bc" was cut after its first piece: it keeps what the model saw of it.
    assert words_of(merged) == [("a", 0.5), ("bc", 0.25), ("d", 0.0), ("e", 0.0)]


def test_whitespace_and_unicode_words_are_taken_from_the_text() -> None:
    text = "  Café\u00a0naïve\t\n  résumé  "
    # The uncased tokenizer saw "cafe", "naive", "resume" ("res", "##ume"): offsets into the text.
    merged = merge_word_pieces(text, [(2, 6), (7, 12), (16, 19), (19, 22)], [1.0, 2.0, 3.0, 4.0])
    assert words_of(merged) == [("Café", 1.0), ("naïve", 2.0), ("résumé", 7.0)]
    assert word_spans(text) == [(2, 6), (7, 12), (16, 22)]


def test_a_zero_width_character_stays_inside_its_word() -> None:
    # The tokenizer drops U+200B; the piece "zero" starts one character into the word.
    merged = merge_word_pieces("x \u200bzero", [(0, 1), (3, 7)], [1.0, 2.0])
    assert words_of(merged) == [("x", 1.0), ("\u200bzero", 2.0)]


def test_empty_and_blank_texts_have_no_words() -> None:
    assert merge_word_pieces("", [], []) == []
    assert merge_word_pieces(" \t ", [], []) == []


def test_pieces_that_map_to_no_character_are_ignored() -> None:
    assert words_of(merge_word_pieces("ok", [(0, 0), (0, 2)], [9.0, 1.0])) == [("ok", 1.0)]


def test_one_attribution_per_piece_is_required() -> None:
    with pytest.raises(ValueError, match="one per token"):
        merge_word_pieces("a b", [(0, 1), (2, 3)], [1.0])


def test_a_real_tokenizers_offsets_merge_back_into_the_words(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer(tmp_path)
    text = "  The film's unbelievable,  not good ❤ !"
    enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    special = enc["special_tokens_mask"]
    pieces = [o for o, s in zip(enc["offset_mapping"], special, strict=True) if not s]
    assert "[UNK]" in tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert any(t.startswith("##") for t in tokenizer.convert_ids_to_tokens(enc["input_ids"]))
    merged = merge_word_pieces(text, pieces, [1.0] * len(pieces))
    assert [w["word"] for w in merged] == text.split()
    # Pieces per word: the, film ' s, un ##believ ##able ",", not, good, [UNK], !
    assert [w["attribution"] for w in merged] == [1.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0]


# --- Explainer on a tiny BERT -----------------------------------------------------------------

WORDS = [
    "the", "film", "movie", "was", "not", "good", "great", "bad", "dull", "plot", "acting",
    "un", "##believ", "##able", "'", "s", "!", ",", ".", "i", "love", "it",
]  # fmt: skip
TEXTS = [
    "the film was not good",
    "  great acting , unbelievable plot !",
    "i love it ❤",
    "dull",
]


def tiny_tokenizer(folder: Path) -> BertTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate([*specials, *WORDS])}
    tokenizer = BertTokenizerFast(vocab=vocab)
    tokenizer.save_pretrained(folder)
    return tokenizer


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_bert")
    tiny_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = BertForSequenceClassification(config).eval()
    # Larger classifier weights than the random init's, so the two labels differ clearly.
    with torch.no_grad():
        model.classifier.weight.mul_(20)
    model.save_pretrained(folder)
    return folder


def classifier(folder: Path, quantize: bool, max_length: int = 32) -> Classifier:
    return Classifier(
        folder,
        device="cpu",
        quantize=quantize,
        skip_padding=quantize,
        max_length=max_length,
        temperature=0.8,
    )


@pytest.mark.parametrize("quantize", [True, False], ids=["int8", "fp32"])
@pytest.mark.parametrize("method", METHODS)
def test_the_prediction_is_the_classifiers_and_every_word_is_listed(
    tiny_model_dir: Path, method: str, quantize: bool
) -> None:
    model = classifier(tiny_model_dir, quantize)
    explained = Explainer(model, method=method, n_steps=8).explain(TEXTS)  # type: ignore[arg-type]
    for text, explanation, prediction in zip(TEXTS, explained, model.predict(TEXTS), strict=True):
        assert explanation["sentiment"] == prediction.label
        assert explanation["confidence"] == prediction.confidence
        assert explanation["probabilities"] == prediction.probabilities
        assert [w["word"] for w in explanation["words"]] == text.split()
        assert all(np.isfinite(w["attribution"]) for w in explanation["words"])


def test_ablation_is_the_fall_when_the_word_is_deleted(tiny_model_dir: Path) -> None:
    model = classifier(tiny_model_dir, quantize=True)
    text = TEXTS[1]
    explanation = Explainer(model).explain([text])[0]
    label = explanation["sentiment"]
    words = text.split()
    deleted = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    after = [p.probabilities[label] for p in model.predict(deleted)]
    expected = [explanation["confidence"] - p for p in after]
    got = [w["attribution"] for w in explanation["words"]]
    assert got == pytest.approx(expected, abs=1e-4)


def test_shapley_sampling_attributions_add_up_to_deleting_every_word(tiny_model_dir: Path) -> None:
    model = classifier(tiny_model_dir, quantize=True)
    explanation = Explainer(model, method="shapley", n_steps=4).explain([TEXTS[0]])[0]
    label = explanation["sentiment"]
    # Efficiency: every sampled order ends with all words deleted ([CLS] [SEP] alone).
    nothing = model.predict([""])[0].probabilities[label]
    total = sum(w["attribution"] for w in explanation["words"])
    assert total == pytest.approx(explanation["confidence"] - nothing, abs=1e-4)
    # The sampled word orders are seeded: the same text, the same explanation.
    again = Explainer(model, method="shapley", n_steps=4).explain([TEXTS[0]])[0]
    assert again == explanation


def test_integrated_gradients_are_complete(tiny_model_dir: Path) -> None:
    """The attributions sum to p(text) - p(baseline: [PAD] at every piece), on the fp32 model."""
    model = classifier(tiny_model_dir, quantize=False)
    text = TEXTS[1]
    explainer = Explainer(model, method="integrated_gradients", n_steps=64)
    # An fp32 model's gradient copy is separate modules over the same tensors: no more memory.
    assert explainer._gradient_model is not model.model and explainer.extra_weight_bytes == 0
    explanation = explainer.explain([text])[0]
    target = model.labels.index(explanation["sentiment"])
    ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
    baseline = ids.clone()
    baseline[0, 1:-1] = model.tokenizer.pad_token_id
    with torch.no_grad():
        logits = model.model(input_ids=torch.cat([ids, baseline])).logits
    probs = torch.softmax(logits / model.temperature, dim=-1)[:, target]
    total = sum(w["attribution"] for w in explanation["words"])
    assert total == pytest.approx(float(probs[0] - probs[1]), abs=0.02)
    assert float(probs[0]) == pytest.approx(explanation["confidence"], abs=1e-5)


def test_integrated_gradients_on_the_int8_model_use_an_fp32_copy_of_its_weights(
    tiny_model_dir: Path,
) -> None:
    model = classifier(tiny_model_dir, quantize=True)
    explainer = Explainer(model, method="integrated_gradients", n_steps=8)
    copy = explainer._gradient_model
    assert copy is not None and copy is not model.model
    # Only the Linear layers are new: 2 layers x (4 x 16 x 16 + 2 x 16 x 32 + biases) + the
    # pooler (16 x 16 + 16) + the classifier (2 x 16 + 2), in fp32.
    linear = 2 * (4 * (16 * 16 + 16) + (16 * 32 + 32) + (32 * 16 + 16)) + (16 * 16 + 16) + 34
    assert explainer.extra_weight_bytes == 4 * linear
    assert (
        copy.bert.embeddings.word_embeddings.weight
        is model.model.bert.embeddings.word_embeddings.weight
    )
    ids = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = copy(**ids).logits
        served = model.model(**ids).logits
    # The same int8 weights; only the activations' int8 rounding differs.
    assert (got - served).abs().max() < 0.05 * served.abs().max()


def test_truncated_words_are_listed_with_attribution_zero(tiny_model_dir: Path) -> None:
    model = classifier(tiny_model_dir, quantize=True, max_length=5)  # [CLS] + 3 pieces + [SEP]
    explanation = Explainer(model).explain(["the film was not good"])[0]
    words = explanation["words"]
    assert [w["word"] for w in words] == ["the", "film", "was", "not", "good"]
    assert words[3]["attribution"] == 0.0 and words[4]["attribution"] == 0.0
    assert any(w["attribution"] != 0.0 for w in words[:3])


def test_texts_without_pieces_are_explained_with_no_words(tiny_model_dir: Path) -> None:
    model = classifier(tiny_model_dir, quantize=True)
    for method in METHODS:
        explained = Explainer(model, method=method).explain(["", "   "])
        assert [e["words"] for e in explained] == [[], []]
        assert explained[0]["sentiment"] == model.predict([""])[0].label


def test_the_limits_are_enforced(tiny_model_dir: Path) -> None:
    model = classifier(tiny_model_dir, quantize=True)
    explainer = Explainer(model, max_texts=2, internal_batch_size=1)
    with pytest.raises(ValueError, match="at most 2"):
        explainer.explain(["a", "b", "c"])
    # One perturbed text per forward pass gives the same attributions.
    one_by_one = explainer.explain([TEXTS[0]])[0]["words"]
    together = Explainer(model).explain([TEXTS[0]])[0]["words"]
    assert words_of(one_by_one) == [
        (w["word"], pytest.approx(w["attribution"], abs=1e-5)) for w in together
    ]
    assert explainer.explain([]) == []
    with pytest.raises(ValueError, match="unknown explanation method"):
        Explainer(model, method="saliency")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 1"):
        Explainer(model, n_steps=0)


# --- behaviour tests report the attributions of their failures (evaluation/behaviour.py) ------


def test_a_failed_behaviour_case_says_which_words_carried_the_prediction() -> None:
    from evaluation.behaviour import Case, Prediction, describe_explanation, run_case

    explanation = {
        "sentiment": "positive",
        "words": [
            {"word": "This", "attribution": 0.01},
            {"word": "movie", "attribution": 0.0},
            {"word": "was", "attribution": -0.02},
            {"word": "not", "attribution": -0.30},
            {"word": "good.", "attribution": 0.41},
        ],
    }
    assert describe_explanation("This movie was not good.", explanation) == (
        "'This movie was not good.' -> positive: good. +0.41, This +0.01; against: not -0.30"
    )
    explained: list[list[str]] = []

    def explain(texts: list[str]) -> list[dict]:
        explained.append(texts)
        return [explanation] * len(texts)

    def predict(texts: list[str]) -> list[Prediction]:
        return [Prediction("positive", 0.8)] * len(texts)

    failing = Case("x", "minimum", "This movie was not good.", expected="negative")
    result = run_case(predict, failing, explain)
    assert not result.passed and result.why is not None and "good. +0.41" in result.why
    passing = Case("y", "minimum", "This movie was not good.", expected="positive")
    assert run_case(predict, passing, explain).why is None
    paired = Case("z", "directional", "good.", variant="not good.", direction="down")
    assert run_case(predict, paired, explain).why.count(" | ") == 1  # type: ignore[union-attr]
    assert explained == [[failing.text], ["good.", "not good."]]
    # Without an explainer a failure is reported as before.
    assert run_case(predict, failing).why is None


def test_the_behaviour_suite_explains_failures_with_the_served_classifier(
    tiny_model_dir: Path,
) -> None:
    from evaluation.behaviour import Case, classifier_explain, classifier_predict, run_suite

    model = classifier(tiny_model_dir, quantize=True)
    label = model.predict(["the film was good"])[0].label
    wrong = "negative" if label == "positive" else "positive"
    cases = [Case("x", "minimum", "the film was good", expected=wrong)]
    suite = run_suite(classifier_predict(model), cases, classifier_explain(model))
    why = suite.results[0].why
    assert why is not None and why.startswith(f"'the film was good' -> {label}: ")


# --- the faithfulness benchmark's arithmetic (evaluation/explain_benchmark.py) ----------------


def test_the_benchmark_deletes_the_top_words_and_scores_against_random() -> None:
    from evaluation.explain_benchmark import (
        MethodSpec,
        comprehensiveness,
        delete_words,
        random_k,
        sample_sentences,
        top_k,
    )

    # Highest attribution first, ties in text order; negative ones come last.
    assert top_k([0.1, -0.5, 0.3, 0.3, 0.0], 3) == [2, 3, 0]
    assert delete_words(["a", "b", "c", "d"], [1, 3]) == "a c"
    draws = random_k(6, 2, 4, np.random.default_rng(0))
    assert len(draws) == 4 and all(len(set(d)) == 2 and max(d) < 6 for d in draws)
    assert draws == random_k(6, 2, 4, np.random.default_rng(0))

    texts = ["one two three four five", "too short", "a b c d e f", "x y z w v"]
    assert sample_sentences(texts, 5, 10, 0) == [texts[0], texts[2], texts[3]]
    sample = sample_sentences(texts, 5, 2, 0)
    assert len(sample) == 2 and sample == sample_sentences(texts, 5, 2, 0)

    scores = comprehensiveness({1: [0.5, 0.1]}, {1: [[0.1, 0.3], [0.2, 0.2]]})
    row = scores["per_k"]["1"]
    assert row["mean_drop_top"] == pytest.approx(0.3)
    assert row["mean_drop_random"] == pytest.approx(0.2)
    assert row["ratio"] == pytest.approx(1.5)
    assert row["share_top_beats_random"] == 0.5  # 0.5 > 0.2, 0.1 < 0.2
    assert row["share_top_beats_each_draw"] == 0.5  # 0.5 beats both draws, 0.1 neither
    assert scores["aopc_top"] == pytest.approx(0.3)

    assert MethodSpec.parse("shapley=10") == MethodSpec("shapley", 10)
    assert MethodSpec.parse("ablation").key == "ablation"
    with pytest.raises(ValueError, match="unknown method"):
        MethodSpec.parse("saliency")
