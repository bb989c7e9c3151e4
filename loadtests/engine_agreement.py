"""`make engine-agreement`: do predictions depend on which engine ran?

The served Bento model run three ways over SST-2 validation, in batches of 32 as the batcher
forms them: torch fp32 (the reference), the packed torch int8 path, and ONNX Runtime on the
int8 graph `import_model` exported. Prints each one's accuracy and every sentence on which
the two int8 engines disagree, with both confidences, and writes results/engine_agreement.json.

It also runs each int8 engine one text at a time and reports how far any text's positive
probability moved against its batch of 32 (`batch_shift`): the served answer to a text must not
depend on the texts that shared its pass (CI caught ONNX Runtime's per-tensor activation scale
moving one review from 0.5891 to 0.5968).

Why a list and not only a count: two int8 engines round differently, so a sentence whose
positive probability sits near 0.5 may flip; a flip far from the boundary would be a bug in
the export, and the list shows which kind each one is.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitoring.performance import positive_probabilities
from sentiment.config import load_serving_config
from sentiment.data import read_tsv, resolve_sst2_dir
from sentiment.labels import LABEL_NAMES
from sentiment.metrics import classification_metrics

# Engines measured: report key -> model settings over the serving config.
VARIANTS: dict[str, dict[str, Any]] = {
    "torch_fp32": {"engine": "torch", "quantize": False},
    "torch_int8": {"engine": "torch"},
    "onnx_int8": {"engine": "onnx"},
}
BATCH = 32
# A text "moved" with its batch-mates when its probability changed by more than this: the API
# answers six decimals.
MOVED = 1e-6


@dataclass(frozen=True)
class Disagreement:
    index: int
    label_a: str
    confidence_a: float
    label_b: str
    confidence_b: float


def disagreements(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> list[Disagreement]:
    """Where two runs over the same texts (label, confidence per text) gave other labels."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions against {len(b)}")
    return [
        Disagreement(i, la, round(ca, 4), lb, round(cb, 4))
        for i, ((la, ca), (lb, cb)) in enumerate(zip(a, b, strict=True))
        if la != lb
    ]


def _positive(run: list[tuple[str, float]]) -> np.ndarray:
    """P(positive) per text of a run's (label, confidence) pairs."""
    return positive_probabilities(
        [confidence for _, confidence in run], [LABEL_NAMES.index(label) for label, _ in run]
    )


def batch_shift(alone: list[tuple[str, float]], batched: list[tuple[str, float]]) -> dict[str, Any]:
    """How far the texts' positive probabilities moved between two runs over the same texts
    (one text per pass, and in batches): the largest move and how many moved over MOVED."""
    if len(alone) != len(batched):
        raise ValueError(f"{len(alone)} predictions against {len(batched)}")
    moves = np.abs(_positive(alone) - _positive(batched))
    return {
        "max_shift": round(float(moves.max(initial=0.0)), 6),
        "texts_moved": int((moves > MOVED).sum()),
    }


def accuracy(predicted: list[tuple[str, float]], labels: list[int]) -> float:
    """Accuracy of the labels in `predicted` against 0/1 gold labels (1 = positive)."""
    guesses = [1 if label == "positive" else 0 for label, _ in predicted]
    return round(classification_metrics(labels, guesses)["accuracy"], 4)


def run_variant(
    settings: dict[str, Any], texts: list[str], batches: tuple[int, ...] = (BATCH,)
) -> tuple[list[list[tuple[str, float]]], str]:
    """(label, confidence) per text from the served model on `settings`, one list per batch
    size of `batches`; and the engine that ran the passes (a model without an ONNX graph runs
    on torch)."""
    from serving.replica import Replica

    cfg = load_serving_config()
    replica = Replica.load(cfg.with_model(processes=0, **settings))
    runs: list[list[tuple[str, float]]] = []
    for batch in batches:
        out: list[tuple[str, float]] = []
        for start in range(0, len(texts), batch):
            for p in replica.classifier.predict(texts[start : start + batch]):
                out.append((p.label, p.confidence))
        runs.append(out)
    return runs, replica.classifier.engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/engine_agreement.json")
    args = parser.parse_args(argv)
    folder = resolve_sst2_dir(None)
    if folder is None:
        print("SST-2 validation not found: set SENTIMENT_DATA_DIR", file=sys.stderr)
        return 2
    data = read_tsv(folder / "validation.tsv")
    texts = list(data.texts)
    runs: dict[str, list[tuple[str, float]]] = {}
    report: dict[str, Any] = {
        "sentences": len(texts),
        "batch": BATCH,
        "accuracy": {},
        "batch_independence": {},
    }
    for key, settings in VARIANTS.items():
        # The int8 engines also one text per pass: fp32 is the reference, not served.
        batches = (BATCH,) if key == "torch_fp32" else (BATCH, 1)
        results, engine = run_variant(settings, texts, batches)
        runs[key] = results[0]
        report["accuracy"][key] = accuracy(runs[key], list(data.labels))
        line = f"{key:<12} engine {engine:<6} accuracy {report['accuracy'][key]}"
        if len(results) > 1:
            shift = report["batch_independence"][key] = batch_shift(results[1], runs[key])
            line += f"  alone vs in batches of {BATCH}: {shift}"
        print(line, flush=True)
        if key == "onnx_int8" and engine != "onnx":
            print("the Bento model has no ONNX graph: run `make import-model`", file=sys.stderr)
            return 2
    flips = disagreements(runs["torch_int8"], runs["onnx_int8"])
    report["int8_engines_disagree"] = [{**asdict(d), "text": texts[d.index]} for d in flips]
    report["vs_fp32"] = {key: len(disagreements(runs["torch_fp32"], runs[key])) for key in VARIANTS}
    print(f"torch int8 and onnx int8 disagree on {len(flips)} of {len(texts)} sentences:")
    for d in flips:
        print(f"  #{d.index}: {d.label_a} {d.confidence_a} / {d.label_b} {d.confidence_b}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
