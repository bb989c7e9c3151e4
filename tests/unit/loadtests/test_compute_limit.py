"""The compute limit's arithmetic, on hand-built model sizes and clocks."""

from __future__ import annotations

import pytest

from loadtests.compute_limit import (
    compute_limit,
    cpu_features,
    cpu_ghz,
    flops_per_cycle,
    flops_per_text,
    flops_per_token,
    limit_texts_per_s,
)


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


AVX2 = {"avx", "avx2", "fma"}
AVX512_VNNI = AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}


@pytest.mark.parametrize(
    ("flags", "vendor", "family", "expected"),
    [
        (AVX2, "GenuineIntel", 6, {"fp32": 32, "int8": 64}),
        # Zen 3: family 25 without AVX-512, nothing to halve.
        (AVX2, "AuthenticAMD", 25, {"fp32": 32, "int8": 64}),
        (AVX2 | {"avx_vnni"}, "GenuineIntel", 6, {"fp32": 32, "int8": 128}),
        (AVX2 | {"avx512f", "avx512bw"}, "GenuineIntel", 6, {"fp32": 64, "int8": 128}),
        (AVX512_VNNI, "GenuineIntel", 6, {"fp32": 64, "int8": 256}),
        # Zen 4 (these machines): 512-bit instructions in two halves.
        (AVX512_VNNI, "AuthenticAMD", 25, {"fp32": 32, "int8": 128}),
        (AVX512_VNNI, "AuthenticAMD", 26, {"fp32": 64, "int8": 256}),
        ({"sse4_2"}, "", None, {"fp32": 16, "int8": 32}),
    ],
)
def test_the_peak_per_cycle_follows_the_widest_instructions(
    flags, vendor, family, expected
) -> None:
    assert flops_per_cycle(flags, vendor, family) == expected


def test_flags_vendor_and_family_come_from_the_first_processor() -> None:
    info = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
        "flags\t\t: fpu avx2 avx512_vnni\nprocessor\t: 1\nflags\t\t: other\n"
    )
    assert cpu_features(info) == ({"fpu", "avx2", "avx512_vnni"}, "AuthenticAMD", 25)
    assert cpu_features("") == (set(), "", None)


def test_this_machines_limit_uses_its_own_rate_per_kind() -> None:
    config = {"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536}
    limit = compute_limit(config, [20, 30])
    assert limit, "no clock in /proc/cpuinfo"
    for kind, rate in limit["flops_per_cycle"].items():
        expected = limit_texts_per_s(
            flops_per_text(6, 384, 1536, [20, 30]), limit["cores"], limit["ghz"], rate
        )
        assert limit["texts_per_s"][kind] == pytest.approx(expected, abs=0.1)
    assert limit["texts_per_s"]["int8"] >= limit["texts_per_s"]["fp32"]
