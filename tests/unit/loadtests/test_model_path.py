"""Parsing `loadtests/model_path.py`'s variants: the serving model section with some settings
changed, validated like the config file."""

from __future__ import annotations

import pytest

from loadtests.model_path import parse_variant
from sentiment.config import ServingModelSection


def test_an_empty_variant_is_the_defaults() -> None:
    base = ServingModelSection()
    assert parse_variant("packed=", base) == ("packed", base)


def test_a_variant_changes_only_the_named_settings_and_converts_their_values() -> None:
    name, section = parse_variant(
        "small=skip_padding=false,forward_chunk_size=8", ServingModelSection()
    )
    assert name == "small"
    assert section.skip_padding is False
    assert section.forward_chunk_size == 8
    assert section.quantize is True


@pytest.mark.parametrize(
    "spec", ["=quantize=false", "x=nonsense=1", "x=quantize", "x=forward_chunk_size=0"]
)
def test_a_bad_variant_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_variant(spec, ServingModelSection())


def test_the_command_refuses_a_bad_variant_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from loadtests.model_path import main

    with pytest.raises(SystemExit) as stop:
        main(["--variant", "x=nonsense=1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "'nonsense=1' is not key=value of a model setting" in err
    assert "Traceback" not in err
