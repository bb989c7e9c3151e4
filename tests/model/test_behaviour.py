"""Behavioural tests of a registered model: one test per case, then the promotion bar.

Minimum functionality ("I love it." is positive), invariance (names, places and typos do not
flip the label) and direction (adding "not" lowers p(positive), an intensifier pushes it further).
A failed case's message ends with the words that carried each prediction (word attributions).
"""

from __future__ import annotations

import pytest

from evaluation.behaviour import CASES, Case, Explain, Predict, run_case, run_suite
from evaluation.promote import load_promotion_config

pytestmark = pytest.mark.model


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, model_predict: Predict, model_explain: Explain) -> None:
    result = run_case(model_predict, case, model_explain)
    assert result.passed, (
        f"{case.kind} '{case.text}'"
        + (f" / '{case.variant}'" if case.variant else "")
        + f": {result.detail}"
        + f"\nwords behind the predictions: {result.why}"
    )


def test_pass_rate_meets_the_promotion_gate(model_predict: Predict) -> None:
    suite = run_suite(model_predict)
    bar = load_promotion_config().gate.min_behaviour_pass_rate
    print(f"pass rate {suite.pass_rate:.3f} by kind {suite.by_kind()}")
    assert suite.pass_rate >= bar, (
        f"pass rate {suite.pass_rate:.3f} under the promotion bar {bar:.3f}; failed: "
        + ", ".join(r.case.id for r in suite.failures())
    )
