"""The forward pass's engine per batch shape, and the settings that choose it."""

from __future__ import annotations

import pytest

from sentiment.config import ConfigError, load_serving_config
from serving.classifier import pass_engine, serving_options


def test_auto_runs_onnx_up_to_the_token_limit_and_torch_above() -> None:
    assert pass_engine("auto", 1, 64, 64) == "onnx"
    assert pass_engine("auto", 2, 32, 64) == "onnx"
    assert pass_engine("auto", 2, 33, 64) == "torch"
    assert pass_engine("auto", 16, 20, 64) == "torch"
    assert pass_engine("auto", 1, 1, 0) == "torch"


def test_a_named_engine_runs_every_pass() -> None:
    assert pass_engine("onnx", 64, 128, 0) == "onnx"
    assert pass_engine("torch", 1, 5, 10_000) == "torch"


def test_the_engine_settings_reach_every_classifier_and_are_validated(monkeypatch) -> None:
    monkeypatch.setenv("SENTIMENT_ENGINE", "onnx")
    monkeypatch.setenv("SENTIMENT_ONNX_MAX_TOKENS", "96")
    model = load_serving_config().model
    assert (model.engine, model.onnx_max_tokens) == ("onnx", 96)
    assert serving_options(model)["engine"] == "onnx"
    assert serving_options(model)["onnx_max_tokens"] == 96
    monkeypatch.setenv("SENTIMENT_ENGINE", "tensorrt")
    with pytest.raises(ConfigError, match="engine"):
        load_serving_config()


def test_the_default_is_auto() -> None:
    model = load_serving_config().model
    assert model.engine == "auto"
    assert model.onnx_max_tokens > 0


def test_onnx_passes_are_cut_with_their_own_fixed_cost(monkeypatch) -> None:
    monkeypatch.setenv("SENTIMENT_ONNX_OVERHEAD_TOKENS", "12")
    options = serving_options(load_serving_config().model)
    assert options["onnx_overhead_tokens"] == 12
    assert options["overhead_tokens"] == load_serving_config().model.forward_overhead_tokens
