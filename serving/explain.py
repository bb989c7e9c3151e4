"""Word-level explanations of the served classifier: which words made it say that.

`Explainer` wraps the `Classifier` of a model process (no second copy of the model unless the
gradient method is chosen) and answers, per text, the prediction exactly as `/predict` gives it
plus every word of the text with a signed attribution towards the predicted label, computed
with captum:

- `ablation` (the default; captum `FeatureAblation`, leave-one-word-out, Li et al. 2016,
  "Understanding neural networks through representation erasure"): a word's attribution is how
  much the predicted label's probability falls when that word's pieces are deleted from the
  input. n_words + 1 inputs through the served (int8, packed) forward pass itself, so the
  explanation describes exactly the model that answered.
- `shapley` (captum `ShapleyValueSampling`, Štrumbelj & Kononenko 2010): the average of that
  fall over `n_steps` random word orders, which shares credit between words that only matter
  together ("not ... good"). n_steps x n_words rows, also on the served model.
- `integrated_gradients` (captum `LayerIntegratedGradients` on the word embeddings, Sundararajan
  et al. 2017): the int8 layers of the CPU model have no gradient (`Int8Linear` runs fbgemm
  kernels), so it runs on an fp32 copy of the *served* weights (the int8 weights dequantised,
  the embeddings and LayerNorms shared: 43 MB more per model process for MiniLM-L6; nothing more
  for an fp32 or GPU model, whose tensors are all shared), with [PAD] embeddings as the
  baseline and `n_steps` steps.

Every method attributes the same quantity, the predicted label's probability (temperature
scaling included, as served), so the numbers read the same: +0.20 means "this word adds about
0.20 to the confidence in the predicted label", a negative number a word that pulls towards the
other label. `evaluation/explain_benchmark.py` measures how faithful each method is.

A word is a whitespace-separated run of the text (see `merge_word_pieces`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np
import torch

from sentiment.calibration import softmax_with_temperature

if TYPE_CHECKING:
    from serving.classifier import Classifier

Method = Literal["ablation", "shapley", "integrated_gradients"]
METHODS: tuple[Method, ...] = ("ablation", "shapley", "integrated_gradients")

_WORD = re.compile(r"\S+")
# The ids that mark a deleted piece in captum's perturbed inputs (never a vocabulary id).
_DELETED = -1


class WordAttribution(TypedDict):
    word: str
    attribution: float


class Explanation(TypedDict):
    sentiment: str
    confidence: float
    probabilities: dict[str, float]
    words: list[WordAttribution]


def word_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each whitespace-separated word of `text`, in order."""
    return [m.span() for m in _WORD.finditer(text)]


def token_word_index(
    spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]
) -> list[int]:
    """For each token (its character offsets), the index of the word holding its first
    character, or -1 when none does (a token that maps to no character of the text)."""
    starts = [start for start, _ in spans]
    out = []
    for start, end in offsets:
        w = bisect.bisect_right(starts, start) - 1
        out.append(w if w >= 0 and start < spans[w][1] and end > start else -1)
    return out


def merge_word_pieces(
    text: str, offsets: Sequence[tuple[int, int]], attributions: Sequence[float]
) -> list[WordAttribution]:
    """Token attributions merged into the words of `text`, in text order.

    `offsets` are the character [start, end) spans of the model's word pieces (a fast
    tokenizer's `return_offsets_mapping`), special tokens ([CLS], [SEP], padding) left out;
    `attributions` holds one number per piece. Each word's attribution is the sum of its pieces.

    - Words are the whitespace-separated runs of `text` (any Unicode whitespace), each exactly
      as written there (original case and accents, e.g. "Café" where the uncased model saw
      "cafe"), so the words rejoined with the text's whitespace give the text back.
    - Sub-word pieces ("un", "##believ", "##able") fall into their word through their offsets,
      and so does [UNK], which stands for the characters of the text it covers.
    - Punctuation stays with the word it touches ("great!" is one word, `"don't"` too); standing
      alone between spaces it is a word of its own (SST-2's "it 's fine ." has five words).
      Deleting "great!" deletes the "!" with it, which is what a reader would strike out.
    - Words past the truncation at max_length tokens, and words the tokenizer drops entirely
      (only control or zero-width characters), have no piece: they are kept, with attribution
      0.0, since the model never saw them and deleting them changes nothing. The word list
      therefore always covers the whole text.
    """
    if len(offsets) != len(attributions):
        raise ValueError(
            f"{len(offsets)} token offsets but {len(attributions)} attributions: one per token"
        )
    spans = word_spans(text)
    totals = [0.0] * len(spans)
    for w, value in zip(token_word_index(spans, offsets), attributions, strict=True):
        if w >= 0:
            totals[w] += float(value)
    return [
        {"word": text[start:end], "attribution": total}
        for (start, end), total in zip(spans, totals, strict=True)
    ]


class _Encoded:
    """One text as the model sees it: its word pieces (truncated) and which word each is in."""

    def __init__(self, classifier: Classifier, text: str) -> None:
        enc = classifier.tokenizer(
            text,
            truncation=True,
            max_length=classifier.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        ids: list[int] = list(enc["input_ids"])
        special: list[int] = list(enc["special_tokens_mask"])
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        pieces = [i for i, s in enumerate(special) if not s]
        first = pieces[0] if pieces else len(ids)
        last = pieces[-1] + 1 if pieces else len(ids)
        self.ids = ids
        self.prefix = ids[:first]  # [CLS]
        self.suffix = ids[last:]  # [SEP]
        self.piece_ids = ids[first:last]
        self.offsets: list[tuple[int, int]] = [(int(a), int(b)) for a, b in offsets[first:last]]
        words = token_word_index(word_spans(text), self.offsets)
        # Dense feature ids over the words that have pieces; a piece in no word is its own one.
        dense: dict[int, int] = {}
        self.feature: list[int] = []
        for position, w in enumerate(words):
            key = w if w >= 0 else -(position + 2)
            self.feature.append(dense.setdefault(key, len(dense)))
        self.n_features = len(dense)


def _gradient_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The served model as separate modules for the gradients: `Int8Linear` layers become fp32
    Linear layers holding their dequantised int8 weights (new memory), every other parameter
    and buffer is the served model's own tensor (shared, no memory). Separate modules, so the
    hook captum puts on the copy's embeddings never touches a /predict running meanwhile."""
    from transformers import AutoModelForSequenceClassification

    from serving.int8 import Int8Linear

    config = model.config
    with torch.device("meta"):
        copy = AutoModelForSequenceClassification.from_config(config)
    for name, module in model.named_modules():
        target = copy.get_submodule(name) if name else copy
        if isinstance(module, Int8Linear):
            weight, _ = torch.ops.quantized.linear_unpack(module._packed)
            target.weight = torch.nn.Parameter(weight.dequantize(), requires_grad=False)
            bias = module.bias if module.bias is not None else torch.zeros(module.out_features)
            target.bias = torch.nn.Parameter(bias, requires_grad=False)
            continue
        for leaf, param in module.named_parameters(recurse=False):
            setattr(target, leaf, param)
        for leaf, buffer in module.named_buffers(recurse=False):
            target.register_buffer(leaf, buffer)
    leftover = [n for n, p in copy.named_parameters() if p.is_meta]
    leftover += [n for n, b in copy.named_buffers() if b.is_meta]
    if leftover:
        raise ValueError(f"cannot copy the served model into fp32: no weights for {leftover}")
    copy.eval()
    return copy


class Explainer:
    """Word attributions of a `Classifier`'s predictions, in the classifier's process.

    - `method`: "ablation" (default), "shapley" or "integrated_gradients" (module docstring).
    - `n_steps`: the integration steps of integrated gradients, or the random word orders of
      Shapley sampling; ablation has none (one pass over n_words + 1 inputs).
    - `max_texts`: more texts in one call raise ValueError (the API answers 413 first).
    - `internal_batch_size`: at most this many inputs per forward pass (perturbed texts, or
      integration steps), so memory is bounded by it, the model and max_length tokens; the
      serving config's forward_chunk_size keeps the peak at a /predict batch's.

    Cost per text of n words and t pieces (t <= max_length): ablation n + 1 inputs of about t
    pieces (so it grows with the square of the length), shapley n_steps x n, integrated
    gradients n_steps inputs of t pieces, forward and backward in fp32.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        method: Method = "ablation",
        n_steps: int = 25,
        max_texts: int = 8,
        internal_batch_size: int = 16,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown explanation method {method!r}; one of {METHODS}")
        if n_steps < 1 or max_texts < 1 or internal_batch_size < 1:
            raise ValueError("n_steps, max_texts and internal_batch_size must be >= 1")
        self.classifier = classifier
        self.method: Method = method
        self.n_steps = n_steps
        self.max_texts = max_texts
        self.internal_batch_size = internal_batch_size
        self._gradient_model: torch.nn.Module | None = None
        # Bytes of weights held for the explanations alone, beside the served model's.
        self.extra_weight_bytes = 0
        if method == "integrated_gradients":
            model = classifier.model
            self._gradient_model = _gradient_copy(model)
            served = {t.data_ptr() for t in (*model.parameters(), *model.buffers())}
            self.extra_weight_bytes = sum(
                p.nbytes for p in self._gradient_model.parameters() if p.data_ptr() not in served
            )

    def explain(self, texts: Sequence[str]) -> list[Explanation]:
        """Per text: sentiment, confidence and probabilities as `Classifier.predict` gives them
        (so as `/predict` does), and its words in text order with their attributions."""
        texts = list(texts)
        if len(texts) > self.max_texts:
            raise ValueError(f"{len(texts)} texts to explain; at most {self.max_texts} per call")
        predictions = self.classifier.predict(texts)
        labels = self.classifier.labels
        out: list[Explanation] = []
        for text, prediction in zip(texts, predictions, strict=True):
            target = labels.index(prediction.label)
            encoded = _Encoded(self.classifier, text)
            if encoded.n_features == 0:
                pieces: list[float] = []
            elif self.method == "integrated_gradients":
                pieces = self._integrated_gradients(encoded, target)
            else:
                pieces = self._word_perturbation(encoded, target)
            out.append(
                {
                    "sentiment": prediction.label,
                    "confidence": prediction.confidence,
                    "probabilities": dict(prediction.probabilities),
                    "words": merge_word_pieces(text, encoded.offsets, pieces),
                }
            )
        return out

    def _probabilities(self, rows: list[list[int]]) -> np.ndarray:
        """The served model's probabilities for token-id rows, in chunks of the batch size."""
        parts = []
        for start in range(0, len(rows), self.internal_batch_size):
            # The classifier's own forward pass: packed, int8, as /predict runs it.
            logits, _ = self.classifier._forward(
                rows[start : start + self.internal_batch_size], with_embeddings=False
            )
            parts.append(softmax_with_temperature(logits, self.classifier.temperature))
        return np.concatenate(parts)

    def _word_perturbation(self, encoded: _Encoded, target: int) -> list[float]:
        """Word-deletion attributions (ablation or Shapley sampling), one number per piece:
        the word's attribution shared evenly between its pieces, so they sum back to it."""
        from captum.attr import FeatureAblation, ShapleyValueSampling

        def forward(ids: torch.Tensor) -> torch.Tensor:
            rows = [
                encoded.prefix + [int(i) for i in row if i != _DELETED] + encoded.suffix
                for row in ids.tolist()
            ]
            return torch.from_numpy(self._probabilities(rows))

        inputs = torch.tensor([encoded.piece_ids], dtype=torch.long)
        mask = torch.tensor([encoded.feature], dtype=torch.long)
        # One text's perturbations per captum call, as many per forward as the batch size allows.
        per_eval = max(1, min(self.internal_batch_size, encoded.n_features))
        attribution: torch.Tensor
        if self.method == "shapley":
            # Seeded word orders: the same text always gets the same explanation.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                attribution = ShapleyValueSampling(forward).attribute(
                    inputs,
                    baselines=_DELETED,
                    target=target,
                    feature_mask=mask,
                    n_samples=self.n_steps,
                    perturbations_per_eval=per_eval,
                )
        else:
            attribution = FeatureAblation(forward).attribute(
                inputs,
                baselines=_DELETED,
                target=target,
                feature_mask=mask,
                perturbations_per_eval=per_eval,
            )
        per_word = attribution[0].double().tolist()
        sizes = np.bincount(np.asarray(encoded.feature), minlength=encoded.n_features)
        return [value / sizes[f] for value, f in zip(per_word, encoded.feature, strict=True)]

    def _integrated_gradients(self, encoded: _Encoded, target: int) -> list[float]:
        """Per-piece integrated gradients of the predicted label's probability, from [PAD]
        embeddings at every word piece ([CLS] and [SEP] kept) to the text's embeddings."""
        from captum.attr import LayerIntegratedGradients

        model = self._gradient_model
        assert model is not None
        classifier = self.classifier
        device = next(model.parameters()).device
        ids = torch.tensor([encoded.ids], dtype=torch.long, device=device)
        pad = classifier.tokenizer.pad_token_id or 0
        baseline = torch.tensor(
            [encoded.prefix + [pad] * len(encoded.piece_ids) + encoded.suffix],
            dtype=torch.long,
            device=device,
        )
        temperature = classifier.temperature

        def forward(input_ids: torch.Tensor) -> torch.Tensor:
            mask = torch.ones_like(input_ids)
            logits = model(
                input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(mask)
            ).logits
            return torch.softmax(logits.float() / temperature, dim=-1)

        embeddings = model.bert.embeddings.word_embeddings  # type: ignore[union-attr]
        attribution = LayerIntegratedGradients(forward, embeddings).attribute(
            ids,
            baselines=baseline,
            target=target,
            n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size,
        )
        per_token = attribution.sum(dim=-1)[0].double().tolist()
        first = len(encoded.prefix)
        return per_token[first : first + len(encoded.piece_ids)]
