"""The single tab's right / wrong control, driven with a fake backend: no server, no browser."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pytest

from sentiment.labels import LABEL_NAMES
from serving.http import RequestError
from ui.app import UIHandlers, build_ui, other_label
from ui.backend import ServiceBackend

from .test_app import FakeBackend, config, run

HIDDEN = {"__type__": "update", "visible": False}
SHOWN = {"__type__": "update", "visible": True}
ENABLED = {"__type__": "update", "interactive": True}


def predict(backend: FakeBackend, text: str) -> tuple[Any, ...]:
    """Card, probabilities, summary, shown prediction, buttons' row, note."""
    return tuple(run(UIHandlers(backend, config()).predict_one(text, True)))


def test_a_prediction_shows_the_buttons_with_its_id() -> None:
    backend = FakeBackend()
    card, _, _, shown, row, note = predict(backend, "a good film")
    assert "Positive" in card
    assert shown == {"id": "pred-0", "label": "positive"}
    assert backend.remembered == {"pred-0": ("a good film", "positive")}
    assert row == SHOWN and note == ""


def test_right_sends_the_predicted_label_under_the_shown_id() -> None:
    backend = FakeBackend()
    handlers = UIHandlers(backend, config())
    predict(backend, "bad one")  # another prediction first: the id must be the shown one's
    *_, shown, _, _ = run(handlers.predict_one("a good film", False))
    assert shown["id"] == "pred-1"
    state, row, right, wrong, note = run(handlers.feedback_right(shown))
    assert backend.feedback_sent == [("pred-1", "positive")]
    assert "Thanks — recorded as positive" in note and "ui-alert-success" in note
    # Answered: the buttons go (enabled again for the next prediction) and the state empties.
    assert state is None and row == HIDDEN and right == ENABLED and wrong == ENABLED


def test_wrong_sends_the_other_label() -> None:
    backend = FakeBackend()
    handlers = UIHandlers(backend, config())
    *_, shown, _, _ = run(handlers.predict_one("a good film", True))
    *_, note = run(handlers.feedback_wrong(shown))
    assert backend.feedback_sent == [("pred-0", "negative")]
    assert "recorded as negative" in note

    *_, shown, _, _ = run(handlers.predict_one("a dull film", True))
    assert shown["label"] == "negative"
    *_, note = run(handlers.feedback_wrong(shown))
    assert backend.feedback_sent[-1] == ("pred-1", "positive")
    assert "recorded as positive" in note


def test_the_other_label_comes_from_the_label_names() -> None:
    assert {other_label(name) for name in LABEL_NAMES} == set(LABEL_NAMES)
    assert other_label(LABEL_NAMES[0]) == LABEL_NAMES[1]
    assert other_label("neutral") is None


def test_with_the_feedback_store_off_the_buttons_stay_hidden() -> None:
    backend = FakeBackend(feedback=False)

    async def never(texts: list[str], raw: list[dict[str, Any]]) -> list[str]:
        raise AssertionError("remember called with the feedback store off")

    backend.remember = never  # type: ignore[method-assign]
    card, _, _, shown, row, note = predict(backend, "a good film")
    assert "Positive" in card
    assert shown is None and row == HIDDEN and note == ""


def test_no_prediction_no_buttons() -> None:
    backend = FakeBackend()
    for text in ("   ", "x" * 6000):
        *_, shown, row, _ = predict(backend, text)
        assert shown is None and row == HIDDEN
    *_, shown, row, _ = predict(FakeBackend(fail_after=0), "a good film")
    assert shown is None and row == HIDDEN
    assert backend.remembered == {}


def test_a_failing_remember_still_shows_the_prediction() -> None:
    backend = FakeBackend()

    async def broken(texts: list[str], raw: list[dict[str, Any]]) -> list[str]:
        raise RuntimeError("store down")

    backend.remember = broken  # type: ignore[method-assign]
    card, _, _, shown, row, _ = predict(backend, "a good film")
    assert "Positive" in card and shown is None and row == HIDDEN


@pytest.mark.parametrize("ids", [[], ["a", "b"], [""], [7], ["x" * 201]])
def test_an_unusable_id_means_no_buttons(ids: list[Any]) -> None:
    backend = FakeBackend()

    async def odd(texts: list[str], raw: list[dict[str, Any]]) -> list[str]:
        return ids

    backend.remember = odd  # type: ignore[method-assign]
    *_, shown, row, _ = predict(backend, "a good film")
    assert shown is None and row == HIDDEN


def test_a_refused_item_is_a_one_line_message() -> None:
    backend = FakeBackend()

    async def refuse(prediction_id: str, label: str) -> dict[str, int]:
        raise RequestError("item 0: id is not a prediction id.\nTraceback (most recent call last)")

    backend.send_feedback = refuse  # type: ignore[method-assign]
    handlers = UIHandlers(backend, config())
    state, row, _, _, note = run(handlers.feedback_right({"id": "pred-0", "label": "positive"}))
    assert "ui-alert-error" in note
    assert "The answer was not recorded: item 0: id is not a prediction id." in note
    assert "Traceback" not in note and "\n" not in note
    assert state is None and row == HIDDEN


def test_an_unavailable_store_keeps_the_buttons_for_another_try() -> None:
    backend = FakeBackend()

    async def away(prediction_id: str, label: str) -> dict[str, int]:
        raise RequestError("the feedback store is unavailable; nothing was stored", 503)

    backend.send_feedback = away  # type: ignore[method-assign]
    shown = {"id": "pred-0", "label": "positive"}
    state, row, right, _, note = run(UIHandlers(backend, config()).feedback_wrong(shown))
    assert "not recorded: the feedback store is unavailable; nothing was stored." in note
    assert state == shown and row == SHOWN and right == ENABLED


def test_an_unknown_id_says_the_answer_was_not_recorded() -> None:
    backend = FakeBackend()
    handlers = UIHandlers(backend, config())
    state, row, _, _, note = run(handlers.feedback_wrong({"id": "gone", "label": "positive"}))
    assert backend.feedback_sent == [("gone", "negative")]
    assert "no longer holds this prediction" in note and "ui-alert-warning" in note
    assert state is None and row == HIDDEN


def test_a_failed_call_keeps_the_buttons_for_another_try() -> None:
    backend = FakeBackend()

    async def down(prediction_id: str, label: str) -> dict[str, int]:
        raise ConnectionError("refused")

    backend.send_feedback = down  # type: ignore[method-assign]
    shown = {"id": "pred-0", "label": "negative"}
    state, row, right, wrong, note = run(UIHandlers(backend, config()).feedback_right(shown))
    assert "could not be sent (ConnectionError: refused)" in note
    assert state == shown and row == SHOWN and right == ENABLED and wrong == ENABLED


@pytest.mark.parametrize(
    "shown",
    [
        None,
        "pred-0",
        {"id": 5, "label": "positive"},
        {"id": "", "label": "positive"},
        {"id": "x" * 201, "label": "positive"},
        {"id": "pred-0", "label": "neutral"},
        {"label": "positive"},
    ],
)
def test_without_a_shown_prediction_nothing_is_sent(shown: Any) -> None:
    backend = FakeBackend()
    state, row, _, _, note = run(UIHandlers(backend, config()).feedback_right(shown))
    assert backend.feedback_sent == []
    assert "Analyze a text first" in note
    assert state is None and row == HIDDEN


def test_the_page_has_the_control_hidden_until_a_prediction() -> None:
    blocks = build_ui(FakeBackend(), config())
    by_id = {b.elem_id: b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}
    row = by_id["single-feedback"]
    assert isinstance(row, gr.Row) and row.visible is False
    right, wrong = by_id["feedback-right"], by_id["feedback-wrong"]
    assert isinstance(right, gr.Button) and isinstance(wrong, gr.Button)
    assert (right.value, wrong.value) == ("Right", "Wrong")
    assert "single-feedback-note" in by_id


# --- the service backend -------------------------------------------------------------------


class FeedbackService:
    feedback_enabled = True

    def __init__(self) -> None:
        self.items: list[list[dict[str, str]]] = []

    def remember(self, texts: list[str], raw: list[dict[str, Any]]) -> list[str]:
        return [f"id-{i}" for i, _ in enumerate(texts)]

    async def accept_feedback(self, items: list[dict[str, str]]) -> dict[str, int]:
        self.items.append(items)
        return {"accepted": len(items), "unknown": 0}


def test_service_backend_passes_feedback_to_the_service() -> None:
    service = FeedbackService()
    backend = ServiceBackend(service=lambda: service)
    assert run(backend.remember(["a", "b"], [{}, {}])) == ["id-0", "id-1"]
    assert backend.feedback_enabled() is True
    assert run(backend.send_feedback("id-1", "negative")) == {"accepted": 1, "unknown": 0}
    assert service.items == [[{"id": "id-1", "label": "negative"}]]


def test_service_backend_without_a_feedback_store() -> None:
    class Old:
        pass

    class Off(FeedbackService):
        feedback_enabled = False

    assert ServiceBackend(service=Old).feedback_enabled() is False
    assert ServiceBackend(service=Off).feedback_enabled() is False


def test_service_backend_passes_a_refusal_on() -> None:
    class Refusing(FeedbackService):
        async def accept_feedback(self, items: list[dict[str, str]]) -> dict[str, int]:
            raise RequestError("item 0: label must be one of negative, positive")

    with pytest.raises(ValueError, match="label must be one of"):
        run(ServiceBackend(service=Refusing).send_feedback("id-0", "meh"))
