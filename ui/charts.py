"""The data behind the UI's charts, as small frames a Gradio native plot draws directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sentiment.labels import LABEL_NAMES

COLORS = {"negative": "#e5484d", "positive": "#30a46c"}


def probability_frame(prediction: dict[str, Any]) -> pd.DataFrame:
    """One bar per class: the probability the model gives it."""
    probs = prediction["probabilities"]
    return pd.DataFrame(
        {
            "sentiment": list(LABEL_NAMES),
            "probability": [float(probs[label]) for label in LABEL_NAMES],
        }
    )


def distribution_frame(labels: Sequence[str]) -> pd.DataFrame:
    """Rows per predicted sentiment, every class present even at zero."""
    counts = [sum(1 for label in labels if label == name) for name in LABEL_NAMES]
    return pd.DataFrame({"sentiment": list(LABEL_NAMES), "rows": counts})


def bin_edges(low: float = 0.5, high: float = 1.0, width: float = 0.05) -> list[float]:
    n = round((high - low) / width)
    return [round(low + i * width, 10) for i in range(n + 1)]


def bin_label(lo: float, hi: float) -> str:
    return f"{lo:.2f}–{hi:.2f}"


def confidence_histogram(
    confidences: Sequence[float], labels: Sequence[str], width: float = 0.05
) -> pd.DataFrame:
    """Rows per confidence bin and sentiment, bins of `width` from 0.5 to 1.0.

    A two-class model's confidence is never under 0.5; anything lower still lands in the first
    bin, and 1.0 in the last, so every row is counted once.
    """
    if len(confidences) != len(labels):
        raise ValueError("one label per confidence")
    edges = bin_edges(width=width)
    n_bins = len(edges) - 1
    counts = {(b, name): 0 for b in range(n_bins) for name in LABEL_NAMES}
    for conf, label in zip(confidences, labels, strict=True):
        index = min(max(int((float(conf) - edges[0]) // width), 0), n_bins - 1)
        # Floating point puts e.g. 0.55 just under its edge; count edges with the bin they open.
        if index + 1 < n_bins and float(conf) >= edges[index + 1]:
            index += 1
        if label in LABEL_NAMES:
            counts[(index, label)] += 1
    rows = [
        {
            "confidence": bin_label(edges[b], edges[b + 1]),
            "sentiment": name,
            "rows": counts[(b, name)],
        }
        for b in range(n_bins)
        for name in LABEL_NAMES
    ]
    return pd.DataFrame(rows, columns=["confidence", "sentiment", "rows"])


def histogram_order(width: float = 0.05) -> list[str]:
    edges = bin_edges(width=width)
    return [bin_label(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
