"""Shared by the peers and the benchmark: the serving config a peer's model copy runs with, and
a short description of the inference engine behind each server."""

from __future__ import annotations

from typing import Any

from sentiment.config import ServingConfig, ServingModelSection, load_serving_config

# The engines a peer can run: the project's packed int8 torch path, or ONNX Runtime int8.
ENGINES = ("torch", "onnx")


def peer_config(engine: str, cfg: ServingConfig | None = None) -> ServingConfig:
    """The serving config for one peer model copy: one torch thread, in the caller's process
    (`processes=0`), on `engine`; every other model setting is the platform's."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    cfg = cfg or load_serving_config()
    return cfg.with_model(num_threads=1, processes=0, engine=engine)


def describe_engine(model: ServingModelSection) -> str:
    """The engine a serving model section runs, in words: "torch int8 packed", "onnx int8", or
    "auto (onnx ≤ N tokens, torch int8 packed above)". The ONNX graph is int8: without
    `quantize` every pass runs on torch fp32 (serving/classifier.py)."""
    torch = "torch " + ("int8" if model.quantize else "fp32")
    if model.skip_padding:
        torch += " packed"
    if model.engine == "torch" or not model.quantize:
        return torch
    if model.engine == "onnx":
        return "onnx int8"
    return f"auto (onnx ≤ {model.onnx_max_tokens} tokens, {torch} above)"


def prediction(raw: dict[str, Any], return_probabilities: bool = False) -> dict[str, Any]:
    """One text's answer in the platform's `/predict` shape (`sentiment`, `confidence`, and
    `probabilities` when asked), from a replica's per-text dict."""
    item: dict[str, Any] = {"sentiment": raw["label"], "confidence": round(raw["confidence"], 6)}
    if return_probabilities:
        item["probabilities"] = {k: round(v, 6) for k, v in raw["probabilities"].items()}
    return item
