"""The model tab's accuracy card: estimated accuracy against the floor, realized accuracy from
feedback, and the summaries that lack one or the other."""

from __future__ import annotations

import re
from typing import Any

from ui.app import UIHandlers
from ui.views import ESTIMATED_HINT, REALIZED_HINT, monitoring_html

from .test_app import FakeBackend, config, run


def performance(**changes: Any) -> dict[str, Any]:
    block = {
        "estimated_accuracy": 0.9012,
        "estimated_accuracy_unadjusted": 0.8876,
        "estimated_positive_share": 0.61,
        "outside_label_shift": False,
        "realized_accuracy": 0.75,
        "labelled_count": 12,
        "window": 500,
        "accuracy_floor": 0.85,
        "estimator": "temperature-scaled confidence, label-shift adjusted",
    }
    return {**block, **changes}


def panel(block: Any = None, **summary: Any) -> str:
    base: dict[str, Any] = {"total_predictions": 40, "drift_status": {"status": "no drift"}}
    if block is not None:
        base["performance"] = block
    return monitoring_html({**base, **summary})


def value(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">([^<]*)<', html)
    assert found, f"no {testid} in {html}"
    return found.group(1)


def test_both_accuracies_with_their_details_and_hints() -> None:
    html = panel(performance())
    assert '<div class="ui-card" data-testid="performance"><h3>Accuracy</h3>' in html
    assert value(html, "estimated-accuracy") == "90.1%"
    assert value(html, "accuracy-floor") == "above the 85.0% floor"
    assert 'class="ui-badge ui-badge-good" data-testid="accuracy-floor"' in html
    assert value(html, "realized-accuracy") == "75.0% · 12 labelled of window 500"
    assert "Estimate before label-shift adjustment</th><td>88.8%" in html
    assert "Estimated positive share</th><td>61.0%" in html
    assert "Estimator</th><td>temperature-scaled confidence, label-shift adjusted" in html
    assert ESTIMATED_HINT in html and REALIZED_HINT in html
    assert "calibrated confidences" in ESTIMATED_HINT and "right / wrong" in REALIZED_HINT
    assert "ui-alert-warning" not in html
    # The card sits between traffic and drift.
    assert html.index("Traffic") < html.index("Accuracy") < html.index("Drift")


def test_an_estimate_below_the_floor_is_highlighted() -> None:
    html = panel(performance(estimated_accuracy=0.8))
    assert value(html, "estimated-accuracy") == "80.0%"
    assert value(html, "accuracy-floor") == "below the 85.0% floor"
    assert 'class="ui-badge ui-badge-bad" data-testid="accuracy-floor"' in html


def test_no_labels_yet() -> None:
    html = panel(performance(realized_accuracy=None, labelled_count=0))
    assert value(html, "realized-accuracy") == "no labels yet"


def test_one_wrong_label() -> None:
    html = panel(performance(realized_accuracy=0.0, labelled_count=1, window=200))
    assert value(html, "realized-accuracy") == "0.0% · 1 labelled of window 200"


def test_no_fitted_estimator_says_to_reimport() -> None:
    html = panel(
        performance(
            estimator=None,
            estimated_accuracy=None,
            estimated_accuracy_unadjusted=None,
            estimated_positive_share=None,
            outside_label_shift=None,
        )
    )
    assert value(html, "estimated-accuracy") == "—"
    assert "re-import the model to estimate accuracy" in html
    assert "accuracy-floor" not in html and "Accuracy floor</th><td>85.0%" in html
    assert "Estimator</th>" not in html
    assert value(html, "realized-accuracy") == "75.0% · 12 labelled of window 500"


def test_an_estimator_without_an_estimate_yet() -> None:
    html = panel(performance(estimated_accuracy=None, estimated_accuracy_unadjusted=None))
    assert value(html, "estimated-accuracy") == "—"
    assert "not enough predictions yet" in html and "re-import" not in html


def test_traffic_outside_the_estimators_label_shift_is_flagged() -> None:
    html = panel(performance(outside_label_shift=True))
    assert "ui-alert-warning" in html and "outside what label shift can explain" in html


def test_a_summary_without_the_block_still_renders() -> None:
    for html in (panel(), panel("not a mapping")):
        assert 'data-testid="performance"' not in html
        assert "Traffic" in html and "Drift" in html


def test_odd_values_do_not_break_the_card() -> None:
    html = panel(
        performance(
            estimated_accuracy=float("nan"),
            accuracy_floor="high",
            labelled_count=True,
            window=None,
            estimator="<b>x</b>",
        )
    )
    assert value(html, "estimated-accuracy") == "—"
    assert value(html, "realized-accuracy") == "no labels yet"
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_the_model_tab_shows_the_card() -> None:
    class WithPerformance(FakeBackend):
        async def monitoring_summary(self) -> dict[str, Any] | None:
            summary = await super().monitoring_summary()
            assert summary is not None
            return {**summary, "performance": performance(estimated_accuracy=0.5)}

    _, monitoring = run(UIHandlers(WithPerformance(), config()).model_panel())
    assert value(monitoring, "accuracy-floor") == "below the 85.0% floor"
