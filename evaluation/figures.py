"""The evaluation's figures (reliability, confusion, confidence histogram, accuracy by length),
drawn with matplotlib's object API (no global pyplot state) and returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from evaluation.scoring import EvaluationResult
from sentiment.labels import LABEL_NAMES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CANDIDATE_COLOUR = "#1f77b4"
PRODUCTION_COLOUR = "#ff7f0e"


def _figure(width: float = 5.0, height: float = 3.6) -> Figure:
    # The Figure class directly, not pyplot: no global state, no GUI backend, thread-safe.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def reliability_figure(
    results: Sequence[tuple[str, EvaluationResult]], show_uncalibrated: bool = True
) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    colours = [CANDIDATE_COLOUR, PRODUCTION_COLOUR]
    for (name, result), colour in zip(results, colours, strict=False):
        curves = [("calibrated", "-", f"ece {result.metrics['ece_calibrated']:.3f}")]
        if show_uncalibrated:
            curves.append(
                ("uncalibrated", "--", f"T=1, ece {result.metrics['ece_uncalibrated']:.3f}")
            )
        for key, style, note in curves:
            bins = [b for b in result.reliability[key] if b["n"]]
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                marker="o",
                linestyle=style,
                color=colour,
                label=f"{name} ({note})",
            )
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0.45, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def reliability_png(result: EvaluationResult) -> bytes:
    return png_bytes(reliability_figure([(result.model["label"], result)]))


def confusion_figure(result: EvaluationResult, title: str) -> Figure:
    import numpy as np

    c = result.confusion
    grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig = _figure(3.4, 3.0)
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="Blues")
    for (i, j), value in np.ndenumerate(grid):
        colour = "white" if value > grid.max() / 2 else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=12)
    ax.set_xticks([0, 1], list(LABEL_NAMES))
    ax.set_yticks([0, 1], list(LABEL_NAMES))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return fig


def histogram_figure(result: EvaluationResult) -> Figure:
    hist = result.confidence_histogram
    edges = hist["edges"]
    width = edges[1] - edges[0]
    fig = _figure()
    ax = fig.add_subplot()
    ax.bar(edges[:-1], hist["correct"], width=width, align="edge", label="correct", alpha=0.8)
    ax.bar(
        edges[:-1],
        hist["wrong"],
        width=width,
        align="edge",
        bottom=hist["correct"],
        label="wrong",
        color="#d62728",
        alpha=0.8,
    )
    ax.set_xlabel("confidence (calibrated)")
    ax.set_ylabel("texts")
    ax.set_title("Confidence histogram")
    ax.legend(fontsize=8)
    return fig


def length_figure(results: Sequence[tuple[str, EvaluationResult]]) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    buckets = [b["bucket"] for b in results[0][1].buckets]
    width = 0.8 / len(results)
    colours = [CANDIDATE_COLOUR, PRODUCTION_COLOUR]
    for k, ((name, result), colour) in enumerate(zip(results, colours, strict=False)):
        acc = {b["bucket"]: b["accuracy"] for b in result.buckets}
        xs = [i + (k - (len(results) - 1) / 2) * width for i in range(len(buckets))]
        ax.bar(xs, [acc.get(b) or 0.0 for b in buckets], width=width, label=name, color=colour)
    counts = {b["bucket"]: b["n"] for b in results[0][1].buckets}
    ax.set_xticks(range(len(buckets)), [f"{b}\n(n={counts[b]})" for b in buckets])
    ax.set_xlabel("words per text")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Accuracy by text length")
    ax.legend(fontsize=8, loc="lower left")
    return fig
