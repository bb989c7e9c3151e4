"""Behavioural tests of a sentiment model (minimum functionality, invariance, direction).

Each case is judged from predictions only, so the same suite runs against any registered
version (`tests/model/`, `make behaviour-tests`) and inside the promotion gate. Given an
`Explain` function as well, a failed case also says which words pushed the model the wrong way
(`CaseResult.why`, from the word attributions of `serving.explain`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

Kind = Literal["minimum", "invariance", "directional"]


@dataclass(frozen=True)
class Case:
    id: str
    kind: Kind
    text: str
    # minimum functionality: the expected label.
    expected: str | None = None
    # invariance / directional: the edited text compared with `text`.
    variant: str | None = None
    # directional: which way p(positive) must move from text to variant.
    direction: Literal["up", "down"] | None = None


@dataclass(frozen=True)
class Prediction:
    label: str
    p_positive: float


@dataclass(frozen=True)
class CaseResult:
    case: Case
    passed: bool
    detail: str
    # For a failed case run with an explainer: the words behind each prediction.
    why: str | None = None


def _mft(cid: str, text: str, expected: str) -> Case:
    return Case(cid, "minimum", text, expected=expected)


def _inv(cid: str, text: str, variant: str) -> Case:
    return Case(cid, "invariance", text, variant=variant)


def _dir(cid: str, text: str, variant: str, direction: Literal["up", "down"]) -> Case:
    return Case(cid, "directional", text, variant=variant, direction=direction)


CASES: tuple[Case, ...] = (
    # Minimum functionality: short, unambiguous sentences.
    _mft("mft-love-it", "I love it.", "positive"),
    _mft("mft-great-movie", "This movie was great.", "positive"),
    _mft("mft-delight", "An absolute delight from start to finish.", "positive"),
    _mft("mft-wonderful-acting", "The acting is wonderful and the story is moving.", "positive"),
    _mft("mft-enjoyed", "I really enjoyed this film.", "positive"),
    _mft("mft-terrible", "Terrible.", "negative"),
    _mft("mft-terrible-movie", "This movie was terrible.", "negative"),
    _mft("mft-boring-mess", "A boring, tedious mess.", "negative"),
    _mft("mft-hated", "I hated every minute of it.", "negative"),
    _mft("mft-worst", "The worst film I have seen this year.", "negative"),
    # Simple negation.
    _mft("mft-not-good", "This movie was not good.", "negative"),
    _mft("mft-not-enjoy", "I did not enjoy it at all.", "negative"),
    _mft("mft-not-worth", "It is not worth your time.", "negative"),
    # Invariance: names, places and typos must not flip the label.
    _inv(
        "inv-name-actor",
        "Tom Hanks gives a superb performance.",
        "Denzel Washington gives a superb performance.",
    ),
    _inv(
        "inv-name-viewer",
        "Sarah found the plot dull and predictable.",
        "Ahmed found the plot dull and predictable.",
    ),
    _inv("inv-name-director", "Spielberg made a moving film.", "Kurosawa made a moving film."),
    _inv(
        "inv-place-good", "The best film ever made in France.", "The best film ever made in Brazil."
    ),
    _inv("inv-place-bad", "A boring movie set in London.", "A boring movie set in Nairobi."),
    _inv("inv-typo-wonderful", "The acting was wonderful.", "The actng was wonderfull."),
    _inv("inv-typo-dreadful", "A dreadful, boring script.", "A dreadfull, borring script."),
    _inv("inv-typo-loved", "I loved this movie.", "I lovd this movie."),
    # Directional: negation lowers p(positive); intensifiers push it further the same way.
    _dir("dir-not-good", "The movie was good.", "The movie was not good.", "down"),
    _dir("dir-not-like", "I liked the ending.", "I did not like the ending.", "down"),
    _dir("dir-very-good", "The movie was good.", "The movie was very good.", "up"),
    _dir("dir-extremely-funny", "A funny film.", "An extremely funny film.", "up"),
    _dir("dir-very-bad", "The plot was bad.", "The plot was very bad.", "down"),
    _dir("dir-incredibly-boring", "The film is boring.", "The film is incredibly boring.", "down"),
    _dir(
        "dir-add-praise",
        "The movie was okay.",
        "The movie was okay, and the music was fantastic.",
        "up",
    ),
    _dir(
        "dir-add-complaint",
        "The movie was okay.",
        "The movie was okay, but the ending was awful.",
        "down",
    ),
)


def judge(case: Case, base: Prediction, variant: Prediction | None = None) -> CaseResult:
    """Pass or fail one case from its predictions; `detail` says what was seen."""
    if case.kind == "minimum":
        ok = base.label == case.expected
        return CaseResult(
            case, ok, f"expected {case.expected}, got {base.label} (p+={base.p_positive:.3f})"
        )
    if variant is None:
        raise ValueError(f"case {case.id} needs the prediction of its variant")
    if case.kind == "invariance":
        ok = base.label == variant.label
        return CaseResult(case, ok, f"{base.label} -> {variant.label}")
    shift = variant.p_positive - base.p_positive
    ok = shift < 0 if case.direction == "down" else shift > 0
    return CaseResult(
        case,
        ok,
        f"p+ {base.p_positive:.3f} -> {variant.p_positive:.3f} ({shift:+.3f}, "
        f"expected {case.direction})",
    )


@dataclass(frozen=True)
class SuiteResult:
    results: tuple[CaseResult, ...]

    @property
    def pass_rate(self) -> float:
        return sum(r.passed for r in self.results) / len(self.results) if self.results else 0.0

    def by_kind(self) -> dict[str, float]:
        out = {}
        for kind in ("minimum", "invariance", "directional"):
            mine = [r for r in self.results if r.case.kind == kind]
            if mine:
                out[kind] = sum(r.passed for r in mine) / len(mine)
        return out

    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


Predict = Callable[[list[str]], list[Prediction]]
# Texts -> one explanation each: {"sentiment": label, "words": [{"word", "attribution"}, ...]},
# attributions signed towards that label (serving.explain.Explainer.explain).
Explain = Callable[[list[str]], Sequence[Mapping[str, Any]]]


def describe_explanation(text: str, explanation: Mapping[str, Any], top: int = 3) -> str:
    """One line: the predicted label, the words that pushed towards it most, and the word that
    pushed hardest against it, e.g. `'Not good.' -> positive: good. +0.41, Not +0.02; against:
    none`."""
    words = [(str(w["word"]), float(w["attribution"])) for w in explanation["words"]]
    towards = sorted((w for w in words if w[1] > 0), key=lambda w: -w[1])[:top]
    against = sorted((w for w in words if w[1] < 0), key=lambda w: w[1])[:1]

    def listed(chosen: list[tuple[str, float]]) -> str:
        return ", ".join(f"{word} {value:+.2f}" for word, value in chosen) or "none"

    return f"'{text}' -> {explanation['sentiment']}: {listed(towards)}; against: {listed(against)}"


def run_case(predict: Predict, case: Case, explain: Explain | None = None) -> CaseResult:
    """One call per case, text and variant together.

    Per case, not one batch for the suite: int8 dynamic quantisation scales activations per
    batch, so a prediction shifts slightly with its batch-mates, and a directional case is
    judged on small shifts. Every runner (tests/model, the gate) then sees the same numbers.

    With `explain`, a failed case is explained too (`CaseResult.why`): which words carried each
    prediction, so a failure says which word misled the model.
    """
    texts = [case.text] + ([case.variant] if case.variant else [])
    preds = predict(texts)
    result = judge(case, preds[0], preds[1] if case.variant else None)
    if result.passed or explain is None:
        return result
    why = " | ".join(
        describe_explanation(text, explanation)
        for text, explanation in zip(texts, explain(texts), strict=True)
    )
    return replace(result, why=why)


def run_suite(
    predict: Predict, cases: Sequence[Case] = CASES, explain: Explain | None = None
) -> SuiteResult:
    return SuiteResult(tuple(run_case(predict, c, explain) for c in cases))


def classifier_predict(classifier: object) -> Predict:
    """Adapt a Classifier to the suite."""

    def predict(texts: list[str]) -> list[Prediction]:
        preds = classifier.predict(texts)  # type: ignore[attr-defined]
        return [Prediction(p.label, p.probabilities["positive"]) for p in preds]

    return predict


def classifier_explain(classifier: Any, **options: Any) -> Explain:
    """Explain a Classifier's predictions word by word (serving.explain; options: method,
    n_steps, ...)."""
    # Here, not at the top: torch and captum load only when a model is explained.
    from serving.explain import Explainer

    explainer = Explainer(classifier, max_texts=2, **options)
    return explainer.explain
