"""evaluation/report.py: the self-contained HTML page and its PDF step."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from evaluation.figures import reliability_png
from evaluation.report import ReportInputs, headline_rows, print_pdf, render_html
from tests.unit.evaluation.test_evaluate import make_result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_reliability_png_is_a_png() -> None:
    assert reliability_png(make_result()).startswith(PNG_MAGIC)


def test_headline_rows_show_the_difference_with_production() -> None:
    cand = make_result(version="2")
    prod = make_result(version="1")
    prod.metrics = {**prod.metrics, "accuracy": 0.5}
    rows = {r[0]: r for r in headline_rows(cand, prod)}
    assert rows["accuracy"] == ["accuracy", "0.6000", "0.5000", "+0.1000"]
    assert rows["F1"][3] == "+0.0000"
    alone = {r[0]: r for r in headline_rows(cand, None)}
    assert alone["accuracy"] == ["accuracy", "0.6000", "—", ""]


def test_the_page_embeds_its_plots_and_escapes_texts() -> None:
    cand = make_result(version="2")
    page = render_html(
        ReportInputs(
            cand,
            make_result(version="1"),
            {"promotion.decision": "rejected", "promotion.reasons": "f1 <worse>"},
            10,
        )
    )
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # Two confusion matrices, reliability, histogram, accuracy by length.
    assert len(images) == 5
    assert all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    # Nothing is fetched: no external src or href.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; good" in page and "<b>bad</b>" not in page
    assert "f1 &lt;worse&gt;" in page
    assert "production v1" in page and "Worst errors" in page


def test_without_production_the_page_says_so() -> None:
    page = render_html(ReportInputs(make_result(), None, {}, 5))
    assert "No production model is registered" in page
    assert page.count("data:image/png;base64,") == 4


def test_pdf_step_says_why_not_without_chromium(tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    html.write_text("<html></html>")
    why = print_pdf(html, tmp_path / "r.pdf", "no-such-browser-binary")
    assert why is not None and "not installed" in why
    assert not (tmp_path / "r.pdf").exists()
