"""HTML fragments the UI shows: result cards, messages, model and monitoring panels.

Everything that came from a user or a file goes through `html.escape`: a review may contain
markup, and the page must show it, not run it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sentiment.labels import LABEL_NAMES
from ui.charts import COLORS

Kind = Literal["error", "warning", "info", "success"]
# Plain characters in a CSS circle: headless and minimal systems often lack an emoji font.
ICONS = {"error": "×", "warning": "!", "info": "i", "success": "✓"}
EMOJI = {"positive": "😊", "negative": "😞"}


def esc(value: Any) -> str:
    """For element text only (never attributes), where quotes need no escaping."""
    return html.escape(str(value), quote=False)


def message_html(kind: Kind, text: str) -> str:
    return (
        f'<div class="ui-alert ui-alert-{kind}" role="{"alert" if kind == "error" else "status"}">'
        f'<span class="ui-alert-icon">{ICONS[kind]}</span><span>{esc(text)}</span></div>'
    )


def percent(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.{digits}f}%"


def millis(seconds: float) -> str:
    ms = 1000 * seconds
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _stat(label: str, value: str, elem: str = "") -> str:
    data = f' data-testid="{elem}"' if elem else ""
    return (
        f'<div class="ui-stat"><div class="ui-stat-label">{esc(label)}</div>'
        f'<div class="ui-stat-value"{data}>{esc(value)}</div></div>'
    )


def prediction_html(prediction: Mapping[str, Any], latency_s: float, logged: bool | None) -> str:
    """The headline of one prediction: label, confidence, latency, whether it was logged."""
    label = str(prediction["label"])
    color = COLORS.get(label, "#6b7280")
    logged_text = {True: "logged", False: "not logged", None: "unavailable"}[logged]
    return (
        f'<div class="ui-result" style="--accent:{color}">'
        f'<div class="ui-result-label" data-testid="sentiment-label">'
        f"{EMOJI.get(label, '')} {esc(label.capitalize())}</div>"
        '<div class="ui-stats">'
        + _stat("Confidence", percent(prediction["confidence"]), "confidence")
        + _stat("Latency", millis(latency_s), "latency")
        + _stat("Tokens", str(prediction.get("n_tokens", "—")))
        + _stat("Monitoring", logged_text)
        + "</div></div>"
    )


# --- explanations: which words made the model say what it said -----------------------------------

# The colours' names, for the legend: the colour is never the only carrier of the meaning.
COLOR_NAMES = {"negative": "red", "positive": "green"}
# The strongest word's background opacity: the text on it stays readable (light and dark theme).
MAX_WORD_ALPHA = 0.7
TOP_WORDS = 3


def _rgba(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha:.2f})"


def _signed(value: float) -> str:
    """+0.412, -0.120, 0.000 (never -0.000)."""
    text = f"{value:+.3f}"
    return "0.000" if text in ("+0.000", "-0.000") else text


def _attribution(value: Any) -> float:
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _towards(predicted: str, attribution: float) -> str:
    """The label a word pushes towards: the predicted one (attribution >= 0) or the other."""
    if attribution >= 0:
        return predicted
    others = [name for name in LABEL_NAMES if name != predicted]
    return others[0] if len(others) == 1 else f"not {predicted}"


def _word_mark(word: str, attribution: float, strength: float, predicted: str) -> str:
    """One word, coloured by the label it pushes towards, as strong as its share of the largest
    effect, with its value as a tooltip and an accessible name."""
    towards = _towards(predicted, attribution)
    label = f"{word}: {_signed(attribution)}, towards {towards}"
    if attribution == 0:
        css, style = "ui-word ui-word-none", ""
    else:
        css = "ui-word " + ("ui-word-for" if attribution > 0 else "ui-word-against")
        color = COLORS.get(towards, "#6b7280")
        style = f' style="background-color:{_rgba(color, MAX_WORD_ALPHA * strength)}"'
    return (
        f'<mark class="{css}" data-attribution="{_signed(attribution)}" '
        f'data-strength="{strength:.2f}" title="{html.escape(label)}" '
        f'aria-label="{html.escape(label)}"{style}>{esc(word)}</mark>'
    )


def _legend(predicted: str) -> str:
    towards = [predicted, *(name for name in LABEL_NAMES if name != predicted)]
    keys = []
    for index, label in enumerate(towards):
        color = COLORS.get(label, "#6b7280")
        # Words against the prediction are also underlined: a cue that is not a colour.
        name = COLOR_NAMES.get(label, "grey") + (", underlined" if index else "")
        keys.append(
            f'<span class="ui-legend-key"><span class="ui-swatch" aria-hidden="true" '
            f'style="background-color:{_rgba(color, MAX_WORD_ALPHA)}"></span>'
            f"{esc(name)}: towards {esc(label)}</span>"
        )
    keys.append('<span class="ui-legend-key">stronger colour = larger effect</span>')
    return (
        '<div class="ui-explain-legend" data-testid="explanation-legend">'
        + " · ".join(keys)
        + "</div>"
    )


def _top_words(words: Sequence[tuple[str, float]], predicted: str) -> str:
    """The strongest words in text: what the colours say, for anyone who cannot see them."""
    ranked = sorted((w for w in words if w[1] != 0), key=lambda w: -abs(w[1]))[:TOP_WORDS]
    if not ranked:
        text = "No single word changed the prediction: every attribution is zero."
        return f'<p class="ui-explain-top" data-testid="explanation-top">{esc(text)}</p>'
    items = [
        f"“{esc(word)}” {_signed(value)} (towards {esc(_towards(predicted, value))})"
        for word, value in ranked
    ]
    return (
        '<p class="ui-explain-top" data-testid="explanation-top">'
        f"Strongest word{'s' if len(items) > 1 else ''}: {', '.join(items)}</p>"
    )


def explanation_html(explanation: Mapping[str, Any], title: str = "Explained prediction") -> str:
    """A text's explanation: its prediction, the text with each word highlighted by its
    attribution (the colour of the label it pushes towards, stronger for a larger effect,
    the value in a tooltip and an accessible name), a legend in words, and the strongest words.

    `explanation`: {"sentiment", "confidence", "words": [{"word", "attribution"}]}, the words
    in text order and each attribution signed towards the predicted label (a change in its
    probability). Every word is escaped: the text is user input."""
    predicted = str(explanation["sentiment"])
    words = [
        (str(item["word"]), _attribution(item["attribution"]))
        for item in explanation.get("words") or []
    ]
    largest = max((abs(value) for _, value in words), default=0.0)
    marks = " ".join(
        _word_mark(word, value, abs(value) / largest if largest > 0 else 0.0, predicted)
        for word, value in words
    )
    color = COLORS.get(predicted, "#6b7280")
    confidence = explanation.get("confidence")
    confidence_text = (
        f" · {percent(float(confidence))} confidence"
        if isinstance(confidence, int | float) and not isinstance(confidence, bool)
        else ""
    )
    head = (
        f'<div class="ui-explain-head">{esc(title)}: '
        f'<b style="color:{color}" data-testid="explained-label">'
        f"{EMOJI.get(predicted, '')} {esc(predicted.capitalize())}</b>{esc(confidence_text)}</div>"
    )
    body = (
        f'<p class="ui-explain-text" data-testid="explained-text">{marks}</p>'
        if words
        else f'<p class="ui-muted">{esc("The text has no words to explain.")}</p>'
    )
    note = (
        f"Each value is how much the word moves the probability of {predicted}: "
        "+ towards it, − away from it. Hover a word for its value."
    )
    return (
        '<div class="ui-explain" data-testid="explanation">'
        + head
        + body
        + _legend(predicted)
        + _top_words(words, predicted)
        + f'<p class="ui-muted ui-explain-note">{esc(note)}</p>'
        + "</div>"
    )


def _drift_badge(drift: Mapping[str, Any] | None) -> str:
    if not drift:
        return '<span class="ui-badge ui-badge-muted">no drift data</span>'
    status = str(drift.get("status") or "")
    detected = drift.get("drift_detected")
    score = drift.get("drift_score")
    score_text = f" · score {float(score):.3f}" if isinstance(score, int | float) else ""
    if detected is True:
        css, text = "ui-badge-bad", status or "drift detected"
    elif status == "no drift":
        css, text = "ui-badge-good", status
    else:
        # "no reference", "insufficient data": nothing was tested, so no score to show.
        css, text, score_text = "ui-badge-muted", status or "not enough data yet", ""
    label = esc(text + score_text)
    return f'<span class="ui-badge {css}" data-testid="drift-status">{label}</span>'


def summary_html(summary: Mapping[str, Any] | None) -> str:
    """The running summary under a single prediction: count, mean confidence, drift."""
    if summary is None:
        return message_html("info", "Monitoring is not available in this server.")
    total = int(summary.get("total_predictions") or 0)
    return (
        '<div class="ui-summary">'
        f'<span><b data-testid="total-predictions">{total:,}</b> '
        f"prediction{'' if total == 1 else 's'} logged</span>"
        f"<span>average confidence <b>{percent(summary.get('average_confidence'))}</b></span>"
        f"<span>positive <b>{percent(summary.get('positive_ratio'))}</b></span>"
        f"<span>drift {_drift_badge(summary.get('drift_status'))}</span>"
        "</div>"
    )


def _rows(pairs: Sequence[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs)


def _table(title: str, pairs: Sequence[tuple[str, Any]]) -> str:
    return (
        f'<div class="ui-card"><h3>{esc(title)}</h3>'
        f'<table class="ui-kv">{_rows(pairs)}</table></div>'
    )


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def model_info_html(info: Mapping[str, Any], settings: Sequence[tuple[str, Any]]) -> str:
    """Model identity, MLflow provenance, validation metrics and the serving configuration."""
    mlflow = dict(info.get("mlflow") or {})
    metrics = dict(info.get("validation_metrics") or {})
    identity = [
        ("Model", info.get("name", "—")),
        ("Version", info.get("version", "—")),
        ("BentoML tag", info.get("tag", "—")),
        ("Labels", ", ".join(str(x) for x in info.get("labels", [])) or "—"),
    ]
    provenance = [
        ("Registered model", mlflow.get("model_name", "—")),
        ("Model version", mlflow.get("model_version", "—")),
        ("Alias", mlflow.get("alias", "—")),
        ("Run ID", mlflow.get("run_id", "—")),
        ("URI", mlflow.get("uri", "—")),
    ]
    metric_rows = [(k.replace("_", " "), _number(v)) for k, v in sorted(metrics.items())]
    system = [
        ("Device", info.get("device", "—")),
        ("Int8 quantized", "yes" if info.get("quantized") else "no"),
        ("Half precision", "yes" if info.get("half_precision") else "no"),
        ("Max length (tokens)", info.get("max_length", "—")),
        ("Temperature", _number(info.get("temperature", "—"))),
        ("Adaptive batch: max size", info.get("max_batch_size", "—")),
        ("Adaptive batch: max latency", f"{info.get('max_latency_ms', '—')} ms"),
        ("Sort batch by length", "yes" if info.get("sort_by_length") else "no"),
        ("Skip padding (packed tokens)", "yes" if info.get("skip_padding") else "no"),
        ("Model load time", f"{info.get('load_seconds', '—')} s"),
        *settings,
    ]
    return (
        '<div class="ui-grid">'
        + _table("Model", identity)
        + _table("MLflow provenance", provenance)
        + _table("Validation metrics", metric_rows or [("—", "no metrics recorded")])
        + _table("System configuration", system)
        + "</div>"
    )


def _latency_rows(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Request latency percentiles; the summary gives them in seconds."""
    rows: list[tuple[str, Any]] = []
    for q in ("p50", "p95", "p99"):
        value = summary.get(f"latency_{q}")
        rows.append((f"Latency {q}", millis(float(value)) if value is not None else "—"))
    return rows


TEST_NAMES = {
    "confidence_ks": "Confidence distribution",
    "label_chi2": "Predicted label mix",
    "length_ks": "Text length",
    "embedding_mmd": "Sentence embeddings",
}
METHOD_NAMES = {"ks": "Kolmogorov–Smirnov", "chi2": "χ² test", "mmd": "MMD permutation test"}


def _result_badge(test: Mapping[str, Any]) -> str:
    if test.get("drift_detected") is True:
        return '<span class="ui-badge ui-badge-bad">drift</span>'
    if test.get("drift_detected") is False:
        return '<span class="ui-badge ui-badge-good">ok</span>'
    return f'<span class="ui-badge ui-badge-muted">{esc(test.get("status") or "—")}</span>'


def _tests_html(tests: Any) -> str:
    """One row per drift test: what it compares, how, its statistic, adjusted p, result."""
    if not isinstance(tests, Mapping) or not tests:
        return ""
    rows = []
    for name, test in tests.items():
        test = test if isinstance(test, Mapping) else {}
        method = str(test.get("method", ""))
        statistic, p_value = test.get("statistic"), test.get("adjusted_p_value")
        rows.append(
            f"<tr><td>{esc(TEST_NAMES.get(name, name.replace('_', ' ')))}</td>"
            f"<td>{esc(METHOD_NAMES.get(method, method) or '—')}</td>"
            f"<td>{esc(_number(statistic) if statistic is not None else '—')}</td>"
            f"<td>{esc(_number(p_value) if p_value is not None else '—')}</td>"
            f"<td>{_result_badge(test)}</td></tr>"
        )
    head = "<tr><th>Test</th><th>Method</th><th>Statistic</th><th>Adjusted p</th><th></th></tr>"
    return (
        '<div class="ui-card ui-wide"><h3>Drift tests</h3>'
        f'<table class="ui-tests"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
        "</div>"
    )


def _fraction(value: Any) -> float | None:
    """A share or an accuracy from the summary, or None where it has none (or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _accuracy_row(label: str, value: str, elem: str, note: str = "") -> str:
    """A key-value row whose value may carry a badge or a muted note (already HTML)."""
    return (
        f'<tr><th>{esc(label)}</th><td><span data-testid="{elem}">{esc(value)}</span>'
        f"{note}</td></tr>"
    )


ESTIMATED_HINT = (
    "Estimated: from the model's calibrated confidences on recent traffic, no labels needed."
)
REALIZED_HINT = "Realized: from users' right / wrong answers on predictions."


def _performance_html(performance: Any) -> str:
    """Estimated accuracy (against the floor) and realized accuracy (from feedback); nothing
    where the summary has no such block (a server from before it)."""
    if not isinstance(performance, Mapping):
        return ""
    floor = _fraction(performance.get("accuracy_floor"))
    estimated = _fraction(performance.get("estimated_accuracy"))
    badge = ""
    if not performance.get("estimator"):
        estimated_row = _accuracy_row(
            "Estimated accuracy",
            "—",
            "estimated-accuracy",
            ' <span class="ui-muted">no fitted estimator: re-import the model to estimate '
            "accuracy</span>",
        )
    elif estimated is None:
        estimated_row = _accuracy_row(
            "Estimated accuracy",
            "—",
            "estimated-accuracy",
            ' <span class="ui-muted">not enough predictions yet</span>',
        )
    else:
        if floor is not None:
            below = estimated < floor
            css = "ui-badge-bad" if below else "ui-badge-good"
            words = f"{'below' if below else 'above'} the {percent(floor)} floor"
            badge = f' <span class="ui-badge {css}" data-testid="accuracy-floor">{esc(words)}'
            badge += "</span>"
        estimated_row = _accuracy_row(
            "Estimated accuracy", percent(estimated), "estimated-accuracy", badge
        )

    labelled = performance.get("labelled_count")
    labelled = labelled if isinstance(labelled, int) and not isinstance(labelled, bool) else 0
    window = performance.get("window")
    realized = _fraction(performance.get("realized_accuracy"))
    if labelled <= 0:
        realized_text = "no labels yet"
    else:
        of_window = f" of window {int(window):,}" if isinstance(window, int) else ""
        realized_text = f"{percent(realized)} · {labelled:,} labelled{of_window}"
    rows = [
        estimated_row,
        _accuracy_row("Realized accuracy", realized_text, "realized-accuracy"),
    ]
    details: list[tuple[str, Any]] = []
    unadjusted = _fraction(performance.get("estimated_accuracy_unadjusted"))
    if unadjusted is not None:
        details.append(("Estimate before label-shift adjustment", percent(unadjusted)))
    share = _fraction(performance.get("estimated_positive_share"))
    if share is not None:
        details.append(("Estimated positive share", percent(share)))
    if floor is not None and not badge:  # else the estimate's badge names the floor
        details.append(("Accuracy floor", percent(floor)))
    if performance.get("estimator"):
        details.append(("Estimator", performance["estimator"]))
    shift = ""
    if performance.get("outside_label_shift") is True:
        shift = message_html(
            "warning",
            "The share of positive predictions is outside what label shift can explain: the "
            "estimate is the unadjusted one, treat it with care.",
        )
    return (
        '<div class="ui-card" data-testid="performance"><h3>Accuracy</h3>'
        f'<table class="ui-kv">{"".join(rows)}{_rows(details)}</table>{shift}'
        f'<p class="ui-muted ui-accuracy-hint">{esc(ESTIMATED_HINT)}<br>{esc(REALIZED_HINT)}</p>'
        "</div>"
    )


def monitoring_html(summary: Mapping[str, Any] | None) -> str:
    """The live monitoring panel: traffic, accuracy, confidence, latency, drift and its
    tests."""
    if summary is None:
        return message_html("info", "Monitoring is not available in this server.")
    traffic = [
        ("Predictions logged", f"{int(summary.get('total_predictions') or 0):,}"),
        ("Average confidence", percent(summary.get("average_confidence"))),
        ("Positive share", percent(summary.get("positive_ratio"))),
        *_latency_rows(summary),
    ]
    drift = summary.get("drift_status")
    drift = drift if isinstance(drift, Mapping) else {}
    reference = summary.get("reference")
    reference = reference if isinstance(reference, Mapping) else {}
    window = drift.get("window_size")
    details = [
        ("Window", _count(int(window), "prediction") if window else "—"),
        ("Needed to test", _count(int(drift["min_window"]), "prediction"))
        if drift.get("min_window")
        else None,
        ("Family-wise threshold", _number(drift["threshold"], 2))
        if drift.get("threshold") is not None
        else None,
        ("Reference", f"{reference.get('source', '?')} ({_count(int(reference['size']), 'text')})")
        if reference.get("size")
        else None,
    ]
    reason = drift.get("reason")
    drift_card = (
        '<div class="ui-card"><h3>Drift</h3>'
        f'<p class="ui-drift-status">{_drift_badge(drift or None)}</p>'
        + (f'<p class="ui-muted">{esc(reason)}</p>' if reason else "")
        + f'<table class="ui-kv">{_rows([d for d in details if d is not None])}</table></div>'
    )
    return (
        '<div class="ui-grid">'
        + _table("Traffic", traffic)
        + _performance_html(summary.get("performance"))
        + drift_card
        + _tests_html(drift.get("tests"))
        + "</div>"
    )


def batch_summary_html(
    name: str,
    n_rows: int,
    n_scored: int,
    seconds: float,
    distribution: Mapping[str, int],
    refused_why: str | None = None,
) -> str:
    """`refused_why`: what the note on the rows not scored says after "N rows were refused"
    (for files scored by the service, whose rows can be refused for several reasons); the
    default note is about empty texts."""
    n_empty = n_rows - n_scored
    rate = n_scored / seconds if seconds > 0 else 0.0
    parts = [
        _stat("Rows", f"{n_rows:,}", "rows"),
        _stat("Positive", f"{distribution.get('positive', 0):,}"),
        _stat("Negative", f"{distribution.get('negative', 0):,}"),
        _stat("Time", f"{seconds:.1f} s ({rate:,.0f} rows/s)"),
    ]
    was = "was" if n_empty == 1 else "were"
    if refused_why is None:
        text = (
            f"{_count(n_empty, 'row')} with an empty text {was} left unscored "
            "(empty sentiment in the download)."
        )
    else:
        text = f"{_count(n_empty, 'row')} {was} refused {refused_why}"
    note = message_html("warning", text) if n_empty else ""
    return (
        f'<div class="ui-result"><div class="ui-result-title">{esc(name)}</div>'
        f'<div class="ui-stats">{"".join(parts)}</div></div>{note}'
    )


def placeholder_html(text: str) -> str:
    return f'<div class="ui-placeholder">{esc(text)}</div>'


def header_html(info: Mapping[str, Any] | None) -> str:
    """Page title, with the served model's version once the service has answered."""
    if info:
        metrics = dict(info.get("validation_metrics") or {})
        accuracy = metrics.get("accuracy")
        detail = f"model {esc(info.get('tag', '?'))} on {esc(info.get('device', '?'))}"
        if isinstance(accuracy, int | float):
            detail += f" · validation accuracy {percent(float(accuracy))}"
    else:
        detail = "connecting to the model…"
    return (
        '<div class="ui-header"><div class="ui-header-title">Sentiment <span>analysis</span></div>'
        '<div class="ui-header-sub">Fine-tuned MiniLM on SST-2, served by BentoML · '
        f'<span data-testid="header-model">{detail}</span></div></div>'
    )


def footer_html() -> str:
    return (
        '<div class="ui-footer">'
        '<a href="../docs" target="_blank">REST API docs</a> · '
        '<a href="../model/info" target="_blank">/model/info</a> · '
        '<a href="../health" target="_blank">/health</a></div>'
    )


def hint_html(text: str) -> str:
    return f'<div class="ui-muted ui-hint">{esc(text)}</div>'
