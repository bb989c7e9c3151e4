"""Classification metrics as small pure functions (binary, positive class = 1)."""

from __future__ import annotations

from collections.abc import Sequence


def confusion_counts(labels: Sequence[int], preds: Sequence[int]) -> dict[str, int]:
    """True/false positives/negatives; raises if the sequences differ in length."""
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    tp = sum(1 for y, p in zip(labels, preds, strict=True) if y == 1 and p == 1)
    tn = sum(1 for y, p in zip(labels, preds, strict=True) if y == 0 and p == 0)
    fp = sum(1 for y, p in zip(labels, preds, strict=True) if y == 0 and p == 1)
    fn = sum(1 for y, p in zip(labels, preds, strict=True) if y == 1 and p == 0)
    return {"tp": tp, "tn": tn, "fp": fp, "fn": fn}


def classification_metrics(labels: Sequence[int], preds: Sequence[int]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the positive class; 0.0 where undefined."""
    c = confusion_counts(labels, preds)
    total = len(labels)
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (c["tp"] + c["tn"]) / total if total else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
