"""The benchmark's peers (loadtests/peers/): their config and answer shape, without a model."""

from __future__ import annotations

import pytest

from loadtests.peers.common import peer_config, prediction
from sentiment.config import load_serving_config


def test_a_peer_copy_runs_one_thread_in_its_own_process_with_the_platform_settings() -> None:
    cfg = load_serving_config()
    peer = peer_config("torch", cfg)
    assert (peer.model.num_threads, peer.model.processes) == (1, 0)
    assert peer.model.quantize == cfg.model.quantize
    assert peer.model.forward_chunk_size == cfg.model.forward_chunk_size
    assert peer.batching == cfg.batching
    assert peer.model.engine == "torch"
    assert peer_config("onnx", cfg).model.engine == "onnx"
    with pytest.raises(ValueError):
        peer_config("tensorrt", cfg)


def test_a_peer_answers_in_the_platform_shape() -> None:
    raw = {
        "label": "positive",
        "confidence": 0.91234567,
        "probabilities": {"positive": 0.91234567, "negative": 0.08765433},
    }
    assert prediction(raw) == {"sentiment": "positive", "confidence": 0.912346}
    assert prediction(raw, True)["probabilities"] == {"positive": 0.912346, "negative": 0.087654}


def test_a_batch_is_split_over_the_model_processes_in_order() -> None:
    from loadtests.peers.bento_batchable import split

    assert split(list("abcde"), 2) == [["a", "b", "c"], ["d", "e"]]
    assert split(["a"], 2) == [["a"]]
    assert split(list("abcd"), 1) == [list("abcd")]
