"""The compute limit's arithmetic, on hand-built model sizes and clocks."""

from __future__ import annotations

import pytest

from loadtests.compute_limit import cpu_ghz, flops_per_text, flops_per_token, limit_texts_per_s


def test_flops_per_token_counts_the_weight_and_attention_products() -> None:
    # 1 layer, hidden 2, intermediate 4, 3 tokens: 2 * (4*2*2 + 2*2*4 + 2*3*2) = 2 * 44
    assert flops_per_token(1, 2, 4, 3) == 88
    # MiniLM-L6 at 25 tokens: about 21 MFLOP per token.
    assert flops_per_token(6, 384, 1536, 25) == 21_464_064


def test_flops_per_text_is_the_mean_over_texts_of_their_own_length() -> None:
    # lengths 1 and 3 at hidden 2, intermediate 4, 1 layer: 1 * 72 and 3 * 88
    assert flops_per_text(1, 2, 4, [1, 3]) == (72 + 264) / 2
    with pytest.raises(ValueError):
        flops_per_text(1, 2, 4, [])


def test_the_limit_is_peak_flops_over_flops_per_text() -> None:
    # 2 cores x 2.5 GHz x 32 FLOP/cycle = 160 GFLOP/s; 0.5 GFLOP per text -> 320 texts/s
    assert limit_texts_per_s(0.5e9, 2, 2.5, 32) == pytest.approx(320.0)


def test_the_clock_is_the_mean_of_the_cpu_mhz_lines() -> None:
    info = "processor\t: 0\ncpu MHz\t\t: 2400.000\nprocessor\t: 1\ncpu MHz\t\t: 2600.000\n"
    assert cpu_ghz(info) == 2.5
    assert cpu_ghz("processor : 0\n") is None
