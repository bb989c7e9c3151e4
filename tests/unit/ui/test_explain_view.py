"""Word-level explanations in the UI: the highlight's HTML, the single tab's Explain button and
the batch tab's "Explain row", driven with a fake backend: no server, no browser."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from serving.http import RequestError
from ui.app import EXPLAIN_BUSY, EXPLAIN_FIRST_ROW, EXPLAIN_OFF, UIHandlers, build_ui
from ui.backend import ServiceBackend
from ui.charts import COLORS
from ui.views import MAX_WORD_ALPHA, explanation_html

from .test_app import FakeBackend, config, run, write

HIDDEN = {"__type__": "update", "visible": False}
SHOWN = {"__type__": "update", "visible": True}
UNCHANGED = {"__type__": "update"}
GREEN, RED = COLORS["positive"], COLORS["negative"]
MARK = re.compile(r"<mark ([^>]*)>(.*?)</mark>")


def explanation(words: list[tuple[str, float]], sentiment: str = "positive") -> dict[str, Any]:
    return {
        "sentiment": sentiment,
        "confidence": 0.931,
        "probabilities": {"negative": 0.069, "positive": 0.931},
        "words": [{"word": w, "attribution": a} for w, a in words],
    }


def marks(shown: str) -> list[tuple[dict[str, str], str]]:
    """(attributes, text) of each highlighted word, in the page's order, unescaped."""
    found = []
    for attributes, text in MARK.findall(shown):
        pairs = re.findall(r'([\w-]+)="([^"]*)"', attributes)
        found.append(({k: html.unescape(v) for k, v in pairs}, html.unescape(text)))
    return found


def rgba(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha:.2f})"


# --- the highlight ---------------------------------------------------------------------------


def test_the_words_are_shown_in_text_order_and_rebuild_the_text() -> None:
    text = "A wonderful, moving film -- not dull at all."
    words = [(w, 0.01 * i) for i, w in enumerate(text.split())]
    shown = explanation_html(explanation(words))
    assert [word for _, word in marks(shown)] == text.split()
    assert " ".join(word for _, word in marks(shown)) == text


def test_every_word_is_escaped_in_text_and_attributes() -> None:
    hostile = [
        ("<script>alert(1)</script>", 0.3),
        ('"onmouseover="alert(2)', -0.2),
        ("<img src=x onerror=alert(3)>", 0.0),
    ]
    shown = explanation_html(explanation(hostile))
    assert "<script" not in shown and "<img" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    # The quote cannot close an attribute: no mark gets an attribute of the word's.
    assert "&quot;onmouseover=&quot;alert(2): -0.200" in shown
    found = marks(shown)
    attributes = {"class", "data-attribution", "data-strength", "title", "aria-label", "style"}
    assert all(set(attrs) <= attributes for attrs, _ in found)
    assert [word for _, word in found] == [w for w, _ in hostile]
    assert found[1][0]["title"].startswith('"onmouseover="alert(2): -0.200')
    # The strongest-words line repeats the words: escaped there too.
    assert "“&lt;script&gt;alert(1)&lt;/script&gt;” +0.300" in shown


def test_the_sign_picks_the_class_and_the_colour_of_the_label_it_pushes_towards() -> None:
    found = marks(explanation_html(explanation([("great", 0.4), ("but", 0.0), ("slow", -0.2)])))
    (great, _), (but, _), (slow, _) = found
    assert great["class"] == "ui-word ui-word-for"
    assert rgba(GREEN, MAX_WORD_ALPHA) in great["style"]
    assert slow["class"] == "ui-word ui-word-against"
    assert rgba(RED, MAX_WORD_ALPHA / 2) in slow["style"]
    assert but["class"] == "ui-word ui-word-none" and "style" not in but

    # A negative prediction: + pushes towards negative (red), - towards positive (green).
    negative = explanation([("dull", 0.5), ("fine", -0.5)], sentiment="negative")
    (dull, _), (fine, _) = marks(explanation_html(negative))
    assert dull["class"] == "ui-word ui-word-for" and rgba(RED, MAX_WORD_ALPHA) in dull["style"]
    assert fine["class"] == "ui-word ui-word-against"
    assert rgba(GREEN, MAX_WORD_ALPHA) in fine["style"]
    assert dull["aria-label"] == "dull: +0.500, towards negative"
    assert fine["aria-label"] == "fine: -0.500, towards positive"


def test_strength_is_the_share_of_the_largest_effect() -> None:
    words = [("a", 0.1), ("b", -0.4), ("c", 0.2), ("d", 0.0)]
    found = marks(explanation_html(explanation(words)))
    assert [attrs["data-strength"] for attrs, _ in found] == ["0.25", "1.00", "0.50", "0.00"]
    assert max(float(attrs["data-strength"]) for attrs, _ in found) == 1.0
    assert rgba(GREEN, MAX_WORD_ALPHA * 0.25) in found[0][0]["style"]
    assert rgba(RED, MAX_WORD_ALPHA) in found[1][0]["style"]


def test_all_zero_attributions_do_not_divide_by_zero() -> None:
    shown = explanation_html(explanation([("just", 0.0), ("words", -0.0)]))
    found = marks(shown)
    assert [attrs["data-strength"] for attrs, _ in found] == ["0.00", "0.00"]
    assert all(attrs["class"] == "ui-word ui-word-none" for attrs, _ in found)
    assert [attrs["data-attribution"] for attrs, _ in found] == ["0.000", "0.000"]  # no -0.000
    assert "every attribution is zero" in shown
    assert 'data-testid="explanation-legend"' in shown


def test_not_a_number_counts_as_no_effect() -> None:
    found = marks(explanation_html(explanation([("odd", float("nan")), ("ok", 0.2)])))
    assert found[0][0]["data-attribution"] == "0.000" and found[1][0]["data-strength"] == "1.00"


def test_every_word_has_its_value_as_tooltip_and_accessible_name() -> None:
    found = marks(explanation_html(explanation([("loved", 0.4123), ("it", 0.0), ("not", -0.05)])))
    assert [(attrs["title"], attrs["aria-label"]) for attrs, _ in found] == [
        ("loved: +0.412, towards positive",) * 2,
        ("it: 0.000, towards positive",) * 2,
        ("not: -0.050, towards negative",) * 2,
    ]


def test_the_legend_says_in_words_what_the_colours_mean() -> None:
    shown = explanation_html(explanation([("good", 0.3)]))
    legend = re.search(r'data-testid="explanation-legend">(.*?)</div>', shown)
    assert legend is not None
    text = re.sub(r"<[^>]+>", "", legend.group(1))
    assert text == (
        "green: towards positive · red, underlined: towards negative · "
        "stronger colour = larger effect"
    )
    negative = explanation_html(explanation([("bad", 0.3)], sentiment="negative"))
    assert "red: towards negative · green, underlined: towards positive" in re.sub(
        r"<[^>]+>", "", negative
    )


def test_the_three_strongest_words_are_listed_in_text() -> None:
    words = [("a", 0.05), ("superb", 0.6), ("if", -0.01), ("slow", -0.3), ("film", 0.1)]
    shown = explanation_html(explanation(words))
    top = re.search(r'data-testid="explanation-top">(.*?)</p>', shown)
    assert top is not None
    assert top.group(1) == (
        "Strongest words: “superb” +0.600 (towards positive), “slow” -0.300 "
        "(towards negative), “film” +0.100 (towards positive)"
    )


def test_the_prediction_explained_is_shown() -> None:
    shown = explanation_html(explanation([("good", 0.3)]), title="Row 3")
    assert "Row 3: " in shown
    label = re.search(r'data-testid="explained-label">(.*?)</b>', shown)
    assert label is not None and label.group(1).endswith("Positive")
    assert "93.1% confidence" in shown


def test_a_text_without_words() -> None:
    shown = explanation_html(explanation([]))
    assert marks(shown) == [] and "no words to explain" in shown


# --- the single tab's Explain button ---------------------------------------------------------


def explain_one(backend: FakeBackend, text: str | None) -> tuple[str, Any]:
    shown, button = run(UIHandlers(backend, config()).explain_one(text))
    return shown, button


def test_explain_shows_the_highlighted_text_and_its_prediction() -> None:
    backend = FakeBackend()
    shown, button = explain_one(backend, "  a good film  ")
    assert backend.explained == [["a good film"]]
    assert [word for _, word in marks(shown)] == ["a", "good", "film"]
    assert marks(shown)[1][0]["class"] == "ui-word ui-word-for"
    assert "Explained prediction: " in shown and "Positive" in shown
    assert 'data-testid="explanation-legend"' in shown
    assert button == SHOWN


@pytest.mark.parametrize(
    ("text", "note"),
    [("   ", "Type or paste a sentence first"), ("x" * 5001, "the limit is 5,000")],
)
def test_explain_checks_the_text_first(text: str, note: str) -> None:
    backend = FakeBackend()
    shown, button = explain_one(backend, text)
    assert note in shown and "ui-alert-warning" in shown
    assert backend.explained == [] and button == UNCHANGED


def one_line(shown: str) -> str:
    """The message's text: one line, no traceback."""
    text = html.unescape(re.sub(r"<[^>]+>", "", shown))
    assert "\n" not in text and "Traceback" not in text
    return text


class StatusError(ValueError):
    """A refusal as the UI sees it: a ValueError with a status, not the service's class."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@pytest.mark.parametrize("error", [RequestError, StatusError])
def test_a_busy_explainer_says_try_again(error: type[Exception]) -> None:
    backend = FakeBackend()
    backend.explain_error = error("too many explanations in progress; try again shortly", 429)
    shown, button = explain_one(backend, "a good film")
    assert one_line(shown).endswith(EXPLAIN_BUSY) and "ui-alert-warning" in shown
    assert button == SHOWN  # worth another try


def test_too_many_texts_is_a_one_line_refusal() -> None:
    backend = FakeBackend()
    backend.explain_error = StatusError("2 texts is more than the limit of 1\nsecond line", 413)
    shown, button = explain_one(backend, "a good film")
    assert one_line(shown).endswith(
        "The explanation was refused: 2 texts is more than the limit of 1."
    )
    assert "ui-alert-error" in shown and button == SHOWN


def test_explanations_off_hide_the_button() -> None:
    backend = FakeBackend()
    backend.explain_error = RequestError("explanations are off on this server", 404)
    shown, button = explain_one(backend, "a good film")
    assert one_line(shown).endswith(EXPLAIN_OFF) and button == HIDDEN


def test_a_failed_explanation_is_one_line_not_a_traceback() -> None:
    backend = FakeBackend()
    backend.explain_error = RuntimeError(
        "the explaining process died\nTraceback (most recent call last):\n  File x"
    )
    shown, button = explain_one(backend, "a good film")
    assert one_line(shown).endswith(
        "The explanation failed (RuntimeError: the explaining process died). Try again in a moment."
    )
    assert "ui-alert-error" in shown and button == SHOWN


def test_a_malformed_answer_is_a_message() -> None:
    class NoAnswer(FakeBackend):
        async def explain(self, texts: list[str]) -> list[dict[str, Any]]:
            return []

    class NoWords(FakeBackend):
        async def explain(self, texts: list[str]) -> list[dict[str, Any]]:
            return [{"sentiment": "positive", "words": [{"text": "x"}]}]

    for backend in (NoAnswer(), NoWords()):
        shown, _ = explain_one(backend, "a good film")
        assert one_line(shown).startswith("×The explanation could not be shown (")


def test_the_explain_controls_follow_the_service() -> None:
    assert UIHandlers(FakeBackend(), config()).explain_controls() == (SHOWN, SHOWN)
    assert UIHandlers(FakeBackend(explain=False), config()).explain_controls() == (HIDDEN, HIDDEN)

    class Away(FakeBackend):
        def explain_enabled(self) -> bool:
            raise RuntimeError("no service yet")

    assert UIHandlers(Away(), config()).explain_controls() == (HIDDEN, HIDDEN)
    header, summary, panel, button, row = run(UIHandlers(FakeBackend(), config()).live_page())
    assert "predictions logged" in summary
    assert "sentiment:v3-abc" in header and "Latency p95" in panel
    assert button == SHOWN and row == SHOWN


# --- the batch tab's "Explain row" -----------------------------------------------------------


def analyzed_rows(tmp_path: Path, backend: FakeBackend) -> list[str | None]:
    """The rows `build_ui` keeps after a file is analyzed: the results table's texts."""
    path = write(tmp_path, "r.csv", b"id,text\n1,a bad one\n2,\n3,a good <b>one</b>\n4,meh\n")
    handlers = UIHandlers(backend, config())
    done = run(handlers.analyze_file(path, "text", False))
    return handlers.kept_texts(done[3])


def test_a_row_of_the_results_table_is_explained(tmp_path: Path) -> None:
    backend = FakeBackend()
    rows = analyzed_rows(tmp_path, backend)
    assert rows == ["a bad one", "", "a good <b>one</b>", "meh"]
    handlers = UIHandlers(backend, config())
    shown, controls = run(handlers.explain_row(rows, 3))
    assert backend.explained == [["a good <b>one</b>"]]
    assert "Row 3: " in shown and "<b>one</b>" not in shown
    assert [word for _, word in marks(shown)] == ["a", "good", "<b>one</b>"]
    assert controls == SHOWN

    shown, _ = run(handlers.explain_row(rows, 1.0))  # a Number may give a float
    assert "Row 1: " in shown and "Negative" in shown
    # "bad" pushes towards the predicted negative: + and red.
    bad = marks(shown)[1][0]
    assert bad["data-attribution"] == "+0.200" and rgba(RED, MAX_WORD_ALPHA) in bad["style"]


@pytest.mark.parametrize(
    ("number", "note"),
    [
        (0, "Row 0 is not in the results table: choose a row from 1 to 4"),
        (5, "Row 5 is not in the results table: choose a row from 1 to 4"),
        (-2, "Row -2 is not in the results table"),
        (None, "Enter a row number: choose a row from 1 to 4"),
        (2.5, "Enter a row number"),
        (float("nan"), "Enter a row number"),
        (True, "Enter a row number"),
        (2, "Row 2 has no text to explain."),
    ],
)
def test_a_row_that_cannot_be_explained_is_a_one_line_warning(
    tmp_path: Path, number: Any, note: str
) -> None:
    backend = FakeBackend()
    rows = analyzed_rows(tmp_path, backend)
    shown, controls = run(UIHandlers(backend, config()).explain_row(rows, number))
    assert note in one_line(shown) and "ui-alert-warning" in shown
    assert backend.explained == [] and controls == UNCHANGED


def test_explain_row_before_any_results() -> None:
    backend = FakeBackend()
    for rows in ([], None, "not a list"):
        shown, _ = run(UIHandlers(backend, config()).explain_row(rows, 1))
        assert one_line(shown).endswith(EXPLAIN_FIRST_ROW)
    assert backend.explained == []


def test_a_row_over_the_text_limit_is_refused() -> None:
    backend = FakeBackend()
    shown, _ = run(UIHandlers(backend, config()).explain_row(["good " * 2000], 1))
    assert "Row 1 has 9,999 characters; explanations take up to 5,000." in one_line(shown)
    assert backend.explained == []


def test_explain_row_errors_are_the_single_tabs(tmp_path: Path) -> None:
    backend = FakeBackend()
    rows = analyzed_rows(tmp_path, backend)
    handlers = UIHandlers(backend, config())
    backend.explain_error = RequestError("too many explanations in progress", 429)
    shown, controls = run(handlers.explain_row(rows, 1))
    assert one_line(shown).endswith(EXPLAIN_BUSY) and controls == SHOWN
    backend.explain_error = RequestError("explanations are off", 404)
    shown, controls = run(handlers.explain_row(rows, 1))
    assert one_line(shown).endswith(EXPLAIN_OFF) and controls == HIDDEN


def test_the_kept_rows_are_the_tables_and_bounded(tmp_path: Path) -> None:
    backend = FakeBackend()
    path = write(tmp_path, "r.csv", b"text\n" + b"good\n" * 9)
    handlers = UIHandlers(backend, config(preview_rows=4))
    done = run(handlers.analyze_file(path, "text", False))
    assert handlers.kept_texts(done[3]) == ["good"] * 4  # the table's 4 rows, not the file's 9
    assert handlers.kept_texts(UIHandlers.no_results()[2]) == []


def test_a_file_job_table_keeps_its_texts(tmp_path: Path) -> None:
    backend = FakeBackend()
    path = write(tmp_path, "big.csv", b"id,review\n" + b"1,good\n" * 11 + b"12,bad\n")
    handlers = UIHandlers(backend, config(preview_rows=20))
    done = run(handlers.analyze_file(path, "review", False))
    rows = handlers.kept_texts(done[3])
    assert rows == ["good"] * 11 + ["bad"]
    shown, _ = run(handlers.explain_row(rows, 12))
    assert "Row 12: " in shown and [w for _, w in marks(shown)] == ["bad"]


# --- the page and the service backend --------------------------------------------------------


def test_the_page_has_the_explain_controls_hidden_until_the_service_says() -> None:
    blocks = build_ui(FakeBackend(), config())
    by_id = {b.elem_id: b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}
    for elem_id in ("single-explain", "batch-explain"):
        assert by_id[elem_id].visible is False
    assert isinstance(by_id["single-explain"], gr.Button)
    assert isinstance(by_id["batch-explain-go"], gr.Button)
    assert isinstance(by_id["batch-explain-row"], gr.Number)
    assert isinstance(by_id["single-explanation"], gr.HTML)


class FakeService:
    def __init__(self, enabled: Any = True) -> None:
        if enabled is not None:
            self.explain_enabled = enabled
        self.asked: list[list[str]] = []

    async def explanations(self, texts: list[str]) -> list[dict[str, Any]]:
        self.asked.append(texts)
        return [explanation([(w, 0.1) for w in t.split()]) for t in texts]


def test_service_backend_calls_the_services_explanations() -> None:
    service = FakeService()
    backend = ServiceBackend(service=lambda: service)
    answer = run(backend.explain(["so good"]))
    assert service.asked == [["so good"]] and answer[0]["words"][1]["word"] == "good"
    assert backend.explain_enabled() is True
    assert ServiceBackend(service=lambda: FakeService(False)).explain_enabled() is False
    # A service from before explanations: none.
    assert ServiceBackend(service=lambda: FakeService(None)).explain_enabled() is False
