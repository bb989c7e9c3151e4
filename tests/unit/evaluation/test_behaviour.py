"""evaluation/behaviour.py: judging cases from predictions, and the suite's pass rate."""

from __future__ import annotations

import pytest

from evaluation.behaviour import CASES, Case, Prediction, judge, run_suite


def test_minimum_functionality_compares_the_label() -> None:
    case = Case("x", "minimum", "I love it.", expected="positive")
    assert judge(case, Prediction("positive", 0.9)).passed
    result = judge(case, Prediction("negative", 0.3))
    assert not result.passed
    assert result.detail == "expected positive, got negative (p+=0.300)"


def test_invariance_fails_only_when_the_label_flips() -> None:
    case = Case("x", "invariance", "Tom liked it.", variant="Ana liked it.")
    assert judge(case, Prediction("positive", 0.9), Prediction("positive", 0.6)).passed
    flipped = judge(case, Prediction("positive", 0.6), Prediction("negative", 0.4))
    assert not flipped.passed and flipped.detail == "positive -> negative"


@pytest.mark.parametrize(
    ("direction", "before", "after", "passed"),
    [
        ("down", 0.8, 0.3, True),
        ("down", 0.3, 0.8, False),
        ("down", 0.5, 0.5, False),
        ("up", 0.6, 0.9, True),
        ("up", 0.9, 0.6, False),
    ],
)
def test_directional_needs_a_strict_move(
    direction: str, before: float, after: float, passed: bool
) -> None:
    case = Case("x", "directional", "good", variant="not good", direction=direction)  # type: ignore[arg-type]
    label = "positive"
    assert judge(case, Prediction(label, before), Prediction(label, after)).passed is passed


def test_a_paired_case_without_its_variant_is_an_error() -> None:
    with pytest.raises(ValueError, match="variant"):
        judge(Case("x", "invariance", "a", variant="b"), Prediction("positive", 0.9))


def test_run_suite_predicts_each_case_in_one_call_and_counts() -> None:
    cases = [
        Case("m1", "minimum", "great", expected="positive"),
        Case("m2", "minimum", "awful", expected="negative"),
        Case("i1", "invariance", "great", variant="grate"),
        Case("d1", "directional", "great", variant="not great", direction="down"),
    ]
    scores = {"great": 0.9, "awful": 0.6, "grate": 0.4, "not great": 0.2}
    batches: list[list[str]] = []

    def predict(texts: list[str]) -> list[Prediction]:
        batches.append(texts)
        return [Prediction("positive" if scores[t] > 0.5 else "negative", scores[t]) for t in texts]

    suite = run_suite(predict, cases)
    assert batches == [["great"], ["awful"], ["great", "grate"], ["great", "not great"]]
    assert [r.passed for r in suite.results] == [True, False, False, True]
    assert suite.pass_rate == 0.5
    assert suite.by_kind() == {"minimum": 0.5, "invariance": 0.0, "directional": 1.0}
    assert [r.case.id for r in suite.failures()] == ["m2", "i1"]


def test_the_shipped_suite_is_well_formed() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    kinds = {c.kind for c in CASES}
    assert kinds == {"minimum", "invariance", "directional"}
    for case in CASES:
        if case.kind == "minimum":
            assert case.expected in ("positive", "negative") and case.variant is None
        else:
            assert case.variant and case.variant != case.text
        if case.kind == "directional":
            assert case.direction in ("up", "down")
    # Negation is covered both as a label (minimum) and as a direction.
    assert any("not" in c.text.split() for c in CASES if c.kind == "minimum")
    assert any(c.variant and " not " in c.variant for c in CASES if c.kind == "directional")
