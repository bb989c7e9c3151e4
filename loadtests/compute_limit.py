"""The machine's compute limit for the served model, in texts/s: what `make benchmark`'s
ceiling is compared with.

How the limit is computed (each step a pure function below):
- FLOPs per text: a BERT encoder layer multiplies every token by its Q, K, V and output
  matrices (4 x hidden²) and its two feed-forward matrices (2 x hidden x intermediate), and
  attention multiplies each token with every other (2 x tokens x hidden, for scores and for
  values); 2 FLOPs per multiply-add. MiniLM-L6 (6 layers, 384, 1536) at SST-2 validation's
  mean of about 25 tokens: 0.53 GFLOP per text. Embedding look-ups, LayerNorm, GELU, softmax and
  the classifier head are left out (under 2 %).
- Peak FLOP/s: cores x clock x FLOPs per cycle per core. AVX2 with FMA does two 8-wide fp32
  fused multiply-adds per cycle (32 FLOPs); its int8 dot products (vpmaddubsw + vpmaddwd) do
  twice the multiply-adds per instruction (64). The clock is the one /proc/cpuinfo reports.

So the limit is an upper bound no real pass reaches (memory traffic, the non-matmul layers,
the tokenizer and Python sit on top); the report states it with its inputs.
"""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# FLOPs per cycle per core, by the widest instructions these machines have (AVX2 + FMA).
FLOPS_PER_CYCLE = {"fp32": 32, "int8": 64}


def flops_per_token(layers: int, hidden: int, intermediate: int, tokens: int) -> int:
    """Matmul FLOPs per token of a BERT encoder over a sequence of `tokens` tokens."""
    weights = 4 * hidden * hidden + 2 * hidden * intermediate
    attention = 2 * tokens * hidden
    return 2 * layers * (weights + attention)


def flops_per_text(layers: int, hidden: int, intermediate: int, lengths: Sequence[int]) -> float:
    """Mean matmul FLOPs per text over texts of these token counts (each its own sequence)."""
    if not lengths:
        raise ValueError("no texts")
    return statistics.mean(n * flops_per_token(layers, hidden, intermediate, n) for n in lengths)


def limit_texts_per_s(flops_text: float, cores: int, ghz: float, flops_per_cycle: int) -> float:
    """Texts/s at the cores' peak arithmetic rate."""
    return cores * ghz * 1e9 * flops_per_cycle / flops_text


def cpu_ghz(cpuinfo: str) -> float | None:
    """The mean clock /proc/cpuinfo reports ("cpu MHz" lines), in GHz; None without any."""
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, re.MULTILINE)]
    return round(statistics.mean(mhz) / 1000, 3) if mhz else None


def compute_limit(model_config: dict[str, Any], lengths: Sequence[int]) -> dict[str, Any]:
    """The limit for the model (its transformers config) on this machine's cores, fp32 and
    int8, with every input it was computed from; {} where the clock is unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    ghz = cpu_ghz(cpuinfo.read_text()) if cpuinfo.exists() else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if ghz is None or not cores:
        return {}
    layers = int(model_config["num_hidden_layers"])
    hidden = int(model_config["hidden_size"])
    intermediate = int(model_config["intermediate_size"])
    per_text = flops_per_text(layers, hidden, intermediate, lengths)
    return {
        "gflop_per_text": round(per_text / 1e9, 3),
        "mean_tokens": round(statistics.mean(lengths), 1),
        "cores": cores,
        "ghz": ghz,
        "flops_per_cycle": FLOPS_PER_CYCLE,
        "texts_per_s": {
            kind: round(limit_texts_per_s(per_text, cores, ghz, per_cycle), 1)
            for kind, per_cycle in FLOPS_PER_CYCLE.items()
        },
    }
