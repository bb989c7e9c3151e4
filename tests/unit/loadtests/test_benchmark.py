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
