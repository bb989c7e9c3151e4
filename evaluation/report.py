"""`python -m evaluation.report`: one self-contained HTML report of a model, beside production.

Plots are PNGs embedded as base64, so the file can be mailed or attached to a CI run as is.
A PDF of the same page is printed with headless Chromium where it is installed.
"""

from __future__ import annotations

import argparse
import base64
import html
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluation.evaluate import evaluate_ref, make_context
from evaluation.figures import (
    confusion_figure,
    histogram_figure,
    length_figure,
    png_bytes,
    reliability_figure,
)
from evaluation.promote import load_promotion_config
from evaluation.scoring import EvaluationResult
from sentiment.config import ConfigError
from sentiment.data import DataUnavailableError
from training.registry import model_uri

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# --- the page ---------------------------------------------------------------------------------


def img(fig: Figure, alt: str) -> str:
    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _num(value: Any, digits: int = 4) -> str:
    if value is None or value == "":
        return "n/a"
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


HEADLINE = (
    ("accuracy", "accuracy"),
    ("f1", "F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("roc_auc", "ROC AUC"),
    ("ece_uncalibrated", "ECE at temperature 1"),
    ("ece_calibrated", "ECE at the fitted temperature"),
    ("temperature", "temperature"),
)


def headline_rows(
    candidate: EvaluationResult, production: EvaluationResult | None
) -> list[list[str]]:
    """Table rows [metric, candidate, production, difference] (strings, ready for HTML)."""
    rows = []
    for key, name in HEADLINE:
        c = candidate.metrics.get(key)
        p = production.metrics.get(key) if production else None
        diff = "" if c is None or p is None else f"{c - p:+.4f}"
        rows.append([name, _num(c), _num(p) if production else "—", diff])
    lat_c = candidate.latency
    lat_p = production.latency if production else None
    for key, name in (
        ("batched_ms_per_text", "latency per text, batched (ms)"),
        ("single_p50_ms", "latency, one text, p50 (ms)"),
        ("single_p95_ms", "latency, one text, p95 (ms)"),
    ):
        c = lat_c[key]
        p = lat_p[key] if lat_p else None
        rows.append(
            [name, _num(c, 2), _num(p, 2) if lat_p else "—", "" if p is None else f"{c - p:+.2f}"]
        )
    return rows


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:1em}.grid img{max-width:520px}
.pass{color:#2a7d2a;font-weight:bold}.fail{color:#b22;font-weight:bold}.muted{color:#777}
@media print{.grid img{max-width:330px}body{margin:0}}
"""


@dataclass
class ReportInputs:
    candidate: EvaluationResult
    production: EvaluationResult | None
    promotion_tags: Mapping[str, str]
    worst_errors: int


def render_html(inputs: ReportInputs) -> str:
    cand = inputs.candidate
    prod = inputs.production
    pairs: list[tuple[str, EvaluationResult]] = [(f"candidate v{cand.model['version']}", cand)]
    if prod is not None:
        pairs.append((f"production v{prod.model['version']}", prod))
    title = f"Model report: {cand.model['label']}"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        "<p>Data: <code>{}</code> ({} texts, sha256 {}…). Evaluated {} on {}, quantized={}."
        "</p>".format(
            html.escape(cand.dataset["path"]),
            cand.dataset["n"],
            cand.dataset["sha256"][:12],
            html.escape(cand.evaluated_at),
            html.escape(str(cand.runtime.get("device"))),
            html.escape(str(cand.runtime.get("quantized"))),
        ),
    ]
    if prod is None:
        parts.append("<p class='muted'>No production model is registered: nothing to compare.</p>")
    elif prod.model["version"] == cand.model["version"]:
        parts.append("<p class='muted'>This version is the production model.</p>")
    parts.append("<h2>Headline metrics</h2>")
    parts.append(
        table(
            ["metric", pairs[0][0], pairs[1][0] if prod else "production", "difference"],
            headline_rows(cand, prod),
        )
    )
    tags = inputs.promotion_tags
    if tags.get("promotion.decision"):
        verdict = tags["promotion.decision"]
        css = "pass" if verdict == "promoted" else "fail"
        parts.append(
            f"<h2>Last promotion decision</h2><p><span class='{css}'>{html.escape(verdict)}</span>"
            f" at {html.escape(tags.get('promotion.at', '?'))}: "
            f"{html.escape(tags.get('promotion.reasons', ''))}</p>"
        )
    parts.append("<h2>Confusion matrix</h2><div class='grid'>")
    parts += [img(confusion_figure(r, name), f"confusion matrix {name}") for name, r in pairs]
    parts.append("</div><h2>Calibration and confidence</h2><div class='grid'>")
    parts.append(img(reliability_figure(pairs, show_uncalibrated=True), "reliability diagram"))
    parts.append(img(histogram_figure(cand), "confidence histogram"))
    parts.append("</div><h2>Accuracy by text length</h2><div class='grid'>")
    parts.append(img(length_figure(pairs), "accuracy by length"))
    bucket_rows = []
    prod_acc = prod.bucket_accuracy() if prod else {}
    for b in cand.buckets:
        p = prod_acc.get(b["bucket"])
        diff = "" if p is None or b["accuracy"] is None else f"{b['accuracy'] - p:+.4f}"
        bucket_rows.append(
            [html.escape(b["bucket"]), str(b["n"]), _num(b["accuracy"]), _num(p), diff]
        )
    parts.append(table(["words", "n", "candidate", "production", "difference"], bucket_rows))
    parts.append("</div>")
    worst = cand.worst_errors(inputs.worst_errors)
    parts.append(
        f"<h2>Worst errors</h2><p>The {len(worst)} most confident of {len(cand.errors)} "
        "misclassified texts (all of them are in <code>error_analysis.csv</code>).</p>"
    )
    parts.append(
        table(
            ["text", "label", "predicted", "confidence", "words"],
            [
                [html.escape(e.text), e.label, e.prediction, f"{e.confidence:.3f}", str(e.n_words)]
                for e in worst
            ],
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def print_pdf(html_path: Path, pdf_path: Path, chromium: str) -> str | None:
    """Print the page with headless Chromium; returns why not when it could not."""
    binary = shutil.which(chromium)
    if binary is None:
        return f"no PDF: '{chromium}' is not installed (apt-get install chromium)"
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        try:
            subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            return "no PDF: Chromium did not finish within 120 s"
    if not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        return "no PDF: Chromium wrote nothing"
    return None


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="alias, version, or models:/ URI (default: candidate)")
    parser.add_argument("--data", help="labelled TSV/CSV (default: SST-2 validation)")
    parser.add_argument("--out", help="HTML file (default: <results>/report.html)")
    args = parser.parse_args(argv)
    try:
        ctx = make_context(args.data)
        promotion = load_promotion_config()
        registry = ctx.registry()
        ref = registry.resolve(model_uri(args.model, ctx.model_name, ctx.candidate_alias))
        production_ref = registry.find_alias(ctx.model_name, promotion.registry.production_alias)
        candidate = evaluate_ref(ctx, ref)
        production = evaluate_ref(ctx, production_ref) if production_ref else None
    except (ConfigError, DataUnavailableError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else ctx.results_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(
        ReportInputs(candidate, production, ref.tags, ctx.cfg.evaluation.worst_errors)
    )
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out} ({len(page) // 1024} KiB)")
    mode = ctx.cfg.report.pdf
    if mode != "never":
        why_not = print_pdf(out, out.with_suffix(".pdf"), ctx.cfg.report.chromium)
        if why_not is None:
            print(f"wrote {out.with_suffix('.pdf')}")
        elif mode == "always":
            print(f"error: {why_not}", file=sys.stderr)
            return 1
        else:
            print(why_not)
    return 0


if __name__ == "__main__":
    sys.exit(main())
