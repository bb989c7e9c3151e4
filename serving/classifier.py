"""The model at serving time: load the imported weights and classify batches of texts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sentiment.calibration import softmax_with_temperature
from sentiment.config import ServingModelSection
from sentiment.labels import LABEL_NAMES
from serving.int8 import quantize_int8
from serving.onnx_engine import OnnxEngine
from serving.packed import packed_forward, supports_packing
from serving.store import (
    BENTO_ONNX_FILE,
    BENTO_TOKENIZER_SUBDIR,
    BENTO_WEIGHTS_SUBDIR,
    ModelNotFoundError,
)


@dataclass
class TextPrediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    n_tokens: int
    n_chars: int
    # Share of word pieces that are [UNK] or continuation pieces ("##..."): a vocabulary-fit signal.
    subword_ratio: float
    unk_ratio: float
    # float32, not a list: a list of 384 floats cost the server worker about 40 us a text to
    # unpickle and turn back into an array for the drift window, an array about 2 us.
    embedding: np.ndarray | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "n_tokens": self.n_tokens,
            "n_chars": self.n_chars,
            "subword_ratio": self.subword_ratio,
            "unk_ratio": self.unk_ratio,
            "embedding": self.embedding,
        }


def serving_options(model_cfg: ServingModelSection) -> dict[str, Any]:
    """The runtime keyword arguments that the serving config decides, for every place that
    must predict exactly as the service does (service, drift reference, benchmarks, evaluation).

    Not the thread count: it changes no prediction, and offline tools should use every core
    whatever each serving model process gets."""
    return {
        "device": model_cfg.device,
        "quantize": model_cfg.quantize,
        "sort_by_length": model_cfg.sort_by_length,
        "chunk_size": model_cfg.forward_chunk_size,
        "overhead_tokens": model_cfg.forward_overhead_tokens,
        "skip_padding": model_cfg.skip_padding,
        "engine": model_cfg.engine,
        "onnx_max_tokens": model_cfg.onnx_max_tokens,
        "onnx_overhead_tokens": model_cfg.onnx_overhead_tokens,
    }


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def padding_aware_chunks(
    lengths: Sequence[int], max_chunk: int, overhead_tokens: int
) -> list[list[int]]:
    """Split a batch into forward passes that waste the least compute, shortest texts first.

    A pass over n texts padded to the longest one's length L costs about
    overhead_tokens + n * L token-units (the fixed part is each pass's per-layer launch and
    bookkeeping, measured on CPU). The indices, sorted by length, are cut into contiguous
    passes of at most max_chunk texts so that the sum of those costs is the smallest possible:
    few passes when lengths are alike, more where one long text would pad many short ones.
    """
    if max_chunk < 1 or overhead_tokens < 0:
        raise ValueError("max_chunk must be >= 1 and overhead_tokens >= 0")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    size = len(order)
    # best[j]: the cheapest split of the j shortest texts; start[j]: where its last pass begins.
    best = [0] * (size + 1)
    start = [0] * (size + 1)
    for j in range(1, size + 1):
        longest = lengths[order[j - 1]]
        choices = range(max(0, j - max_chunk), j)
        start[j] = min(choices, key=lambda i: best[i] + (j - i) * longest)
        best[j] = best[start[j]] + overhead_tokens + (j - start[j]) * longest
    chunks: list[list[int]] = []
    j = size
    while j:
        chunks.append(order[start[j] : j])
        j = start[j]
    return chunks[::-1]


def pass_engine(engine: str, n_rows: int, width: int, onnx_max_tokens: int) -> str:
    """The engine ("onnx" or "torch") of one pass of `n_rows` texts padded to `width` tokens.

    With "auto", ONNX Runtime runs passes of at most `onnx_max_tokens` padded tokens: it pads
    every row to the longest, so its cost grows with rows x width, while the packed torch
    path's per-pass overhead is larger and its token-wise layers skip the padding (measured
    crossover: README, Performance)."""
    if engine == "auto":
        return "onnx" if n_rows * width <= onnx_max_tokens else "torch"
    return engine


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and their attention mask for one forward pass."""
    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


class Classifier:
    """A fine-tuned sequence classifier with its tokenizer, ready for batched inference."""

    def __init__(
        self,
        weights_dir: str | Path,
        tokenizer_dir: str | Path | None = None,
        *,
        max_length: int = 128,
        device: str = "auto",
        quantize: bool = False,
        num_threads: int = 0,
        sort_by_length: bool = True,
        chunk_size: int = 64,
        overhead_tokens: int = 300,
        skip_padding: bool = False,
        temperature: float = 1.0,
        engine: str = "torch",
        onnx_max_tokens: int = 0,
        onnx_overhead_tokens: int = 30,
        onnx_path: str | Path | None = None,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if num_threads > 0:
            torch.set_num_threads(num_threads)
        self.device = resolve_device(device)
        # B615: both are local folders (the BentoML store, a downloaded MLflow artifact), never
        # a Hub id; local_files_only makes a wrong path fail instead of reaching the Hub.
        tokenizer_path = str(tokenizer_dir or weights_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)  # nosec B615
        model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615
            str(weights_dir), local_files_only=True
        )
        model.eval()
        self.quantized = False
        if self.device.type == "cuda":
            model = model.to(self.device)
            # fp16 only where it keeps the predictions: checked once on a probe batch below.
            self.half_precision = True
        else:
            self.half_precision = False
            if quantize:
                model = quantize_int8(model)
                self.quantized = True
        self.model = model
        # Measured on CPU only; on a GPU padding costs little next to the per-pass launch cost.
        self.packed = skip_padding and self.device.type == "cpu" and supports_packing(model)
        self.max_length = max_length
        self.sort_by_length = sort_by_length
        self.chunk_size = chunk_size
        self.overhead_tokens = overhead_tokens
        self.temperature = temperature
        id2label = getattr(model.config, "id2label", None) or {}
        self.labels = [str(id2label.get(i, LABEL_NAMES[i])).lower() for i in range(2)]
        self._unk_id = self.tokenizer.unk_token_id
        self._pad_id = self.tokenizer.pad_token_id or 0
        self._token_types = "token_type_ids" in self.tokenizer.model_input_names
        self._special_ids = set(self.tokenizer.all_special_ids)
        if self.half_precision:
            self._check_half_precision()
        self.onnx = self._onnx_engine(engine, onnx_path, num_threads)
        self.engine = engine if self.onnx is not None else "torch"
        self.onnx_max_tokens = onnx_max_tokens
        self.onnx_overhead_tokens = onnx_overhead_tokens

    def _onnx_engine(
        self, engine: str, onnx_path: str | Path | None, num_threads: int
    ) -> OnnxEngine | None:
        """ONNX Runtime on the exported int8 graph, where the settings ask for it and it can
        stand in for this model: on CPU, with int8 on, and the graph in the Bento model."""
        if engine not in ("auto", "onnx", "torch"):
            raise ValueError(f"engine must be auto, torch or onnx, not {engine!r}")
        if engine == "torch" or self.device.type != "cpu" or not self.quantized:
            return None
        if onnx_path is None or not Path(onnx_path).is_file():
            return None
        return OnnxEngine(onnx_path, num_threads=num_threads)

    @property
    def pass_overhead_tokens(self) -> int:
        """The fixed cost per pass that `padding_aware_chunks` weighs against padding: ONNX
        Runtime's where it runs the passes, the packed torch path's otherwise."""
        return self.overhead_tokens if self.onnx is None else self.onnx_overhead_tokens

    def engine_for(self, n_rows: int, width: int) -> str:
        """The engine of a forward pass over `n_rows` texts padded to `width` tokens."""
        if self.onnx is None:
            return "torch"
        return pass_engine(self.engine, n_rows, width, self.onnx_max_tokens)

    @classmethod
    def from_bento_model(cls, bento_model: Any, **kwargs: Any) -> Classifier:
        weights = Path(bento_model.path_of(BENTO_WEIGHTS_SUBDIR))
        tokenizer = Path(bento_model.path_of(BENTO_TOKENIZER_SUBDIR))
        if not (weights / "config.json").is_file():
            raise ModelNotFoundError(
                f"{bento_model.tag} holds no transformers weights at {BENTO_WEIGHTS_SUBDIR}"
            )
        metadata = dict(getattr(bento_model.info, "metadata", {}) or {})
        kwargs.setdefault("temperature", float(metadata.get("temperature", 1.0)))
        # Models imported before the ONNX export have no graph: they run on torch.
        kwargs.setdefault("onnx_path", Path(bento_model.path_of(BENTO_ONNX_FILE)))
        return cls(weights, tokenizer if tokenizer.is_dir() else weights, **kwargs)

    def _check_half_precision(self) -> None:
        probe = [
            "a gripping, beautifully acted film",
            "dull and lifeless from start to finish",
            "not bad at all",
            "the plot is thin but the performances carry it",
        ]
        full = self._logits(probe).argmax(axis=1)
        self.model = self.model.half()
        half = self._logits(probe).argmax(axis=1)
        if not np.array_equal(full, half):
            self.model = self.model.float()
            self.half_precision = False

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text as served (special tokens included, truncated at max_length)."""
        return [len(row) for row in self._encode(texts)]

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated, unpadded: padding is decided per forward pass."""
        return list(self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"])

    @torch.inference_mode()
    def _forward(
        self, rows: list[list[int]], with_embeddings: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        ids, mask = pad_rows(rows, self._pad_id)
        if self.onnx is not None and self.engine_for(*ids.shape) == "onnx":
            return self.onnx.run(ids.numpy(), mask.numpy(), with_embeddings)
        if self.packed:
            packed_logits, mean = packed_forward(self.model, ids, mask, with_embeddings)
            return packed_logits.float().numpy(), None if mean is None else mean.float().numpy()
        enc = {"input_ids": ids, "attention_mask": mask}
        if self._token_types:
            enc["token_type_ids"] = torch.zeros_like(ids)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        out = self.model(**enc, output_hidden_states=with_embeddings)
        logits = out.logits.float().cpu().numpy()
        pooled = None
        if with_embeddings:
            hidden = out.hidden_states[-1].float()
            weights = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = ((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).cpu().numpy()
        return logits, pooled

    def _logits(self, texts: list[str]) -> np.ndarray:
        return self._forward(self._encode(texts), with_embeddings=False)[0]

    def predict(
        self, texts: Sequence[str], *, with_embeddings: bool = False
    ) -> list[TextPrediction]:
        """Classify texts; overlong texts are truncated to max_length tokens."""
        texts = list(texts)
        if not texts:
            return []
        rows = self._encode(texts)
        if self.sort_by_length:
            chunks = padding_aware_chunks(
                [len(row) for row in rows], self.chunk_size, self.pass_overhead_tokens
            )
        else:
            chunks = [
                list(range(i, min(i + self.chunk_size, len(texts))))
                for i in range(0, len(texts), self.chunk_size)
            ]
        results: list[TextPrediction | None] = [None] * len(texts)
        for chunk in chunks:
            logits, pooled = self._forward([rows[i] for i in chunk], with_embeddings)
            probs = softmax_with_temperature(logits, self.temperature)
            for row, index in enumerate(chunk):
                results[index] = self._prediction(
                    texts[index],
                    probs[row],
                    rows[index],
                    None if pooled is None else pooled[row],
                )
        return [r for r in results if r is not None]

    def _prediction(
        self, text: str, probs: np.ndarray, ids: list[int], embedding: np.ndarray | None
    ) -> TextPrediction:
        pieces = [i for i in ids if i not in self._special_ids or i == self._unk_id]
        n_tokens = len(pieces)
        unk = sum(1 for i in pieces if i == self._unk_id)
        tokens = self.tokenizer.convert_ids_to_tokens(pieces)
        sub = sum(1 for t in tokens if t.startswith("##"))
        best = int(probs.argmax())
        return TextPrediction(
            label=self.labels[best],
            confidence=float(probs[best]),
            probabilities={self.labels[i]: float(probs[i]) for i in range(len(self.labels))},
            n_tokens=n_tokens,
            n_chars=len(text),
            subword_ratio=(sub + unk) / n_tokens if n_tokens else 0.0,
            unk_ratio=unk / n_tokens if n_tokens else 0.0,
            embedding=None if embedding is None else np.array(embedding, dtype=np.float32),
        )


def predict_in_chunks(
    classifier: Classifier, texts: Sequence[str], batch_size: int = 64, desc: str = "predicting"
) -> list[dict[str, Any]]:
    """Prediction dicts (embeddings included) for many texts, with a progress bar: what offline
    tools (the drift reference, the drift check and benchmark) feed to monitoring."""
    from tqdm import tqdm

    out: list[dict[str, Any]] = []
    with tqdm(total=len(texts), desc=desc, unit="text", leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            out.extend(p.to_dict() for p in classifier.predict(chunk, with_embeddings=True))
            bar.update(len(chunk))
    return out
