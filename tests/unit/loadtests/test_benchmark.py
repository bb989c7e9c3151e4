"""The serving benchmark's ceiling window (loadtests/benchmark.py), on a fake batch function."""

from __future__ import annotations

import threading
import time

from loadtests.benchmark import sustained_rate


def test_sustained_rate_counts_every_text_and_walks_the_sentences_in_turn() -> None:
    calls: list[list[str]] = []
    lock = threading.Lock()

    def classify(texts: list[str]) -> list[str]:
        time.sleep(0.01)
        with lock:
            calls.append(texts)
        return texts

    texts = [f"t{i}" for i in range(10)]
    rate = sustained_rate(classify, 2, 3, texts, 0.2)
    # Two threads, 3 texts per call, about 10 ms per call: about 600 texts/s, never more.
    assert 200 < rate <= 3 * 2 / 0.01
    assert all(len(c) == 3 for c in calls)
    starts = sorted(c[0] for c in calls[:2])
    assert starts == ["t0", "t3"]  # the second thread starts one batch further on
    assert ["t6", "t7", "t8"] in calls or ["t9", "t0", "t1"] in calls  # and they wrap around


def test_a_load_is_compared_with_the_mean_of_its_two_ceiling_windows() -> None:
    from loadtests.benchmark import vs_ceiling

    assert vs_ceiling({"texts_per_s": 140.0, "ceiling_bracket": [190.0, 210.0]}) == 0.7


def test_a_baseline_is_compared_with_the_mean_of_its_two_platform_windows() -> None:
    from loadtests.benchmark import platform_vs

    assert platform_vs({"texts_per_s": 20.0, "platform_bracket": [150.0, 170.0]}) == 8.0


def _row(clients: int, per_request: int, texts_per_s: float, bracket: list[float]) -> dict:
    return {
        "clients": clients,
        "texts_per_request": per_request,
        "texts_per_s": texts_per_s,
        "platform_bracket": bracket,
    }


def test_vs_ray_serve_takes_the_variant_that_did_best_against_its_own_windows() -> None:
    from loadtests.benchmark import fastest_peer, peer_ratios

    report = {
        # 200 / 100 = 2.0
        "ray_serve_torch": [_row(1, 1, 40.0, []), _row(32, 1, 100.0, [190.0, 210.0])],
        # 150 / 100 = 1.5: the same texts/s in a slower phase of the machine, so it did better
        # against its own platform windows; the ratio takes this one.
        "ray_serve_onnx": [_row(32, 1, 100.0, [140.0, 160.0]), _row(32, 16, 120.0, [])],
        # 180 / 120 = 1.5
        "bentoml_batchable": [_row(32, 1, 120.0, [170.0, 190.0])],
    }
    assert fastest_peer(report, ["ray_serve_torch", "ray_serve_onnx"]) == ("ray_serve_onnx", 1.5)
    assert peer_ratios(report) == {"vs_ray_serve": 1.5, "vs_bentoml_batchable": 1.5}


def test_peer_ratios_use_the_one_ray_serve_variant_that_ran_and_none_for_a_missing_peer() -> None:
    from loadtests.benchmark import peer_ratios

    report = {"ray_serve_torch": [_row(32, 1, 80.0, [100.0, 140.0])], "ray_serve_onnx": []}
    assert peer_ratios(report) == {"vs_ray_serve": 1.5, "vs_bentoml_batchable": None}
    assert peer_ratios({}) == {"vs_ray_serve": None, "vs_bentoml_batchable": None}


def test_run_loads_runs_the_loads_it_is_given_and_brackets_only_32_single_text_clients(
    monkeypatch,
) -> None:
    from pathlib import Path

    import loadtests.benchmark as benchmark
    from loadtests.http_load import LoadResult

    ran: list[tuple[int, int]] = []

    def fake_load(url, texts, clients, per_request, duration_s, warmup_s):
        ran.append((clients, per_request))
        return LoadResult(clients, per_request, 1.0, 10, 10 * per_request, {"200": 10}, [5.0])

    windows = iter([150.0, 170.0])
    monkeypatch.setattr(benchmark, "run_load", fake_load)
    settings = benchmark.Settings(1.0, 0.0, 4, Path("unused.json"))
    rows = benchmark.run_loads(
        "http://x/predict",
        ["a"],
        settings,
        "peer",
        platform_window=lambda clients, per_request: next(windows),
        loads=benchmark.PEER_LOADS,
        engine="onnx int8",
    )
    assert ran == [(1, 1), (32, 1), (32, 16)]
    assert [r["engine"] for r in rows] == ["onnx int8"] * 3
    assert [r.get("platform_bracket") for r in rows] == [None, [150.0, 170.0], None]
    assert benchmark.platform_vs(rows[1]) == 16.0


def test_engine_descriptions() -> None:
    from loadtests.peers.common import describe_engine
    from sentiment.config import ServingModelSection

    def model(**kw):
        return ServingModelSection(**{"quantize": True, "skip_padding": True, **kw})

    assert describe_engine(model(engine="torch")) == "torch int8 packed"
    assert describe_engine(model(engine="onnx", quantize=False)) == "torch fp32 packed"
    assert describe_engine(model(engine="torch", quantize=False, skip_padding=False)) == (
        "torch fp32"
    )
    assert describe_engine(model(engine="onnx")) == "onnx int8"
    assert describe_engine(model(engine="auto", onnx_max_tokens=24)) == (
        "auto (onnx ≤ 24 tokens, torch int8 packed above)"
    )
