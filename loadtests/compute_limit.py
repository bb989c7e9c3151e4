"""The machine's compute limit for the served model, in texts/s: what `make benchmark`'s
ceiling is compared with.

How the limit is computed (each step a pure function below):
- FLOPs per text: a BERT encoder layer multiplies every token by its Q, K, V and output
  matrices (4 x hidden²) and its two feed-forward matrices (2 x hidden x intermediate), and
  attention multiplies each token with every other (2 x tokens x hidden, for scores and for
  values); 2 FLOPs per multiply-add. MiniLM-L6 (6 layers, 384, 1536) at SST-2 validation's
  mean of about 25 tokens: 0.53 GFLOP per text. Embedding look-ups, LayerNorm, GELU, softmax and
  the classifier head are left out (under 2 %).
- Peak FLOP/s: cores x clock x FLOPs per cycle per core, by the widest instructions the CPU's
  flags name (`flops_per_cycle`), two vector pipes per core. fp32: two fused multiply-adds
  per cycle, 8 lanes wide with AVX2 (32 FLOPs), 16 with AVX-512 (64). int8 dot products: AVX2
  needs two instructions (vpmaddubsw + vpmaddwd) for twice fp32's multiply-adds (64), AVX-512BW
  the same at double width (128), and VNNI (vpdpbusd) does them in one instruction (256 with
  AVX512_VNNI, 128 with the 256-bit AVX_VNNI). AMD's Zen 4 (family 25) runs a 512-bit
  instruction as two 256-bit halves, so its AVX-512 rates are halved. The clock is the one
  /proc/cpuinfo reports.

Why the flags: the first version assumed AVX2 (300 fp32 / 600 int8 texts/s on these 2
cores), but these machines are Zen 4 with AVX512_VNNI, which ONNX Runtime's int8 kernels use:
its measured ceiling (up to 642 texts/s in a short pass) went past that "limit".

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

# AMD's family 25 (Zen 3 and Zen 4): 512-bit instructions, where present, run as two halves.
HALF_WIDTH_AVX512 = ("AuthenticAMD", 25)


def flops_per_cycle(flags: set[str], vendor: str = "", family: int | None = None) -> dict[str, int]:
    """Peak fp32 and int8 operations per cycle per core (2 per multiply-add) for a CPU with
    these /proc/cpuinfo `flags` (module docstring)."""
    fp32 = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16
    if "avx512_vnni" in flags:
        int8 = 256
    elif "avx_vnni" in flags or "avx512bw" in flags:
        int8 = 128
    else:
        int8 = 64 if "avx2" in flags else 32
    if (vendor, family) == HALF_WIDTH_AVX512 and "avx512f" in flags:
        fp32, int8 = fp32 // 2, int8 // 2
    return {"fp32": fp32, "int8": int8}


def cpu_features(cpuinfo: str) -> tuple[set[str], str, int | None]:
    """The first processor's flags, vendor and family in /proc/cpuinfo's text."""

    def field(name: str) -> str:
        found = re.search(rf"^{name}\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
        return found.group(1).strip() if found else ""

    family = field("cpu family")
    return (
        set(field("flags").split()),
        field("vendor_id"),
        int(family) if family.isdigit() else None,
    )


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
    path = Path("/proc/cpuinfo")
    cpuinfo = path.read_text() if path.exists() else ""
    ghz = cpu_ghz(cpuinfo)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if ghz is None or not cores:
        return {}
    layers = int(model_config["num_hidden_layers"])
    hidden = int(model_config["hidden_size"])
    intermediate = int(model_config["intermediate_size"])
    per_text = flops_per_text(layers, hidden, intermediate, lengths)
    per_cycle = flops_per_cycle(*cpu_features(cpuinfo))
    return {
        "gflop_per_text": round(per_text / 1e9, 3),
        "mean_tokens": round(statistics.mean(lengths), 1),
        "cores": cores,
        "ghz": ghz,
        "flops_per_cycle": per_cycle,
        "texts_per_s": {
            kind: round(limit_texts_per_s(per_text, cores, ghz, rate), 1)
            for kind, rate in per_cycle.items()
        },
    }
