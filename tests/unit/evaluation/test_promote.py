"""evaluation/promote.py: the gate, the production history, and its settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.promote import (
    LOG_KEEP,
    TAG_LIMIT,
    Bucket,
    GateInputs,
    GateSection,
    NoPreviousVersionError,
    append_log,
    decide,
    decision_tags,
    history_after_promotion,
    history_after_rollback,
    load_promotion_config,
    paired_latency,
    parse_history,
    worst_bucket_drop,
)
from sentiment.config import ConfigError

GATE = GateSection(
    min_f1=0.75,
    min_f1_margin=0.01,
    max_bucket_drop=0.03,
    min_bucket_size=30,
    min_behaviour_pass_rate=0.85,
    max_latency_factor=1.5,
    max_latency_ms=200.0,
)
BUCKETS = {"1-9": Bucket(100, 0.90), "10+": Bucket(200, 0.80)}


def inputs(**changes: object) -> GateInputs:
    base = {
        "candidate_f1": 0.85,
        "production_f1": 0.82,
        "candidate_buckets": BUCKETS,
        "production_buckets": {"1-9": Bucket(100, 0.89), "10+": Bucket(200, 0.80)},
        "behaviour_pass_rate": 0.9,
        "candidate_latency_ms": 20.0,
        "production_latency_ms": 18.0,
    }
    base.update(changes)
    return GateInputs(**base)  # type: ignore[arg-type]


def failed(decision_inputs: GateInputs) -> list[str]:
    return [c.name for c in decide(decision_inputs, GATE).checks if not c.passed]


def test_a_better_candidate_passes_every_check() -> None:
    decision = decide(inputs(), GATE)
    assert decision.promote
    assert [c.name for c in decision.checks] == [
        "f1_floor",
        "f1_vs_production",
        "length_buckets",
        "behaviour",
        "latency",
    ]
    assert "F1 0.8500 vs production 0.8200 (+0.0300, margin +0.0100)" in decision.reasons


def test_each_threshold_can_reject() -> None:
    assert failed(inputs(candidate_f1=0.825)) == ["f1_vs_production"]
    assert failed(inputs(candidate_f1=0.74, production_f1=0.70)) == ["f1_floor"]
    drop = {"1-9": Bucket(100, 0.85), "10+": Bucket(200, 0.80)}
    assert failed(inputs(candidate_buckets=drop)) == ["length_buckets"]
    assert failed(inputs(behaviour_pass_rate=0.8)) == ["behaviour"]
    assert failed(inputs(candidate_latency_ms=28.0)) == ["latency"]
    assert failed(inputs(candidate_latency_ms=201.0, production_latency_ms=200.0)) == ["latency"]


def test_the_margin_and_limits_are_inclusive() -> None:
    edge = inputs(candidate_f1=0.83, production_f1=0.82, candidate_latency_ms=27.0)
    assert failed(edge) == []


def test_rejection_reasons_name_only_the_failures() -> None:
    decision = decide(inputs(candidate_f1=0.80, behaviour_pass_rate=0.5), GATE)
    assert not decision.promote
    assert decision.reasons.startswith("f1_vs_production: F1 0.8000 vs production 0.8200")
    assert "behaviour: pass rate 0.500 vs 0.850" in decision.reasons
    assert "latency" not in decision.reasons


def test_an_empty_production_is_beaten_by_any_candidate_above_the_floor() -> None:
    first = inputs(production_f1=None, production_buckets=None, production_latency_ms=None)
    decision = decide(first, GATE)
    assert decision.promote
    assert "no production model to beat" in decision.reasons
    assert not decide(inputs(production_f1=None, candidate_f1=0.7), GATE).promote


def test_worst_bucket_drop_ignores_small_and_missing_buckets() -> None:
    cand = {
        "a": Bucket(100, 0.80),
        "b": Bucket(10, 0.10),
        "c": Bucket(100, None),
        "d": Bucket(50, 0.9),
    }
    prod = {"a": Bucket(100, 0.85), "b": Bucket(10, 0.90), "c": Bucket(100, 0.9)}
    name, drop = worst_bucket_drop(cand, prod, 30)
    assert name == "a" and drop == pytest.approx(0.05)
    assert worst_bucket_drop({"b": Bucket(10, 0.1)}, prod, 30) == (None, 0.0)


def test_history_after_promotion() -> None:
    assert history_after_promotion([], None, "1") == ["1"]
    assert history_after_promotion(["1"], "1", "2") == ["1", "2"]
    # Production moved by hand to 5: kept, so a rollback from 6 returns to it.
    assert history_after_promotion(["1", "2"], "5", "6") == ["1", "2", "5", "6"]
    assert history_after_promotion(["1", "2"], "2", "2") == ["1", "2"]


def test_history_after_rollback() -> None:
    assert history_after_rollback(["1", "2", "3"], "3") == (["1", "2"], "2")
    assert history_after_rollback(["1", "2"], "7") == (["1", "2"], "2")
    assert history_after_rollback(["1", "1", "2", "2"], "2") == (["1", "1"], "1")
    with pytest.raises(NoPreviousVersionError, match="no production version before v1"):
        history_after_rollback(["1"], "1")
    with pytest.raises(NoPreviousVersionError):
        history_after_rollback([], "4")


def test_parse_history_tolerates_garbage() -> None:
    assert parse_history('["1", 2]') == ["1", "2"]
    assert parse_history("not json") == []
    assert parse_history('{"a": 1}') == []
    assert parse_history(None) == []


def test_the_event_log_stays_within_a_tag() -> None:
    value = None
    for i in range(LOG_KEEP + 5):
        value = append_log(value, {"event": "promote", "version": str(i), "at": "t"})
    entries = json.loads(value or "[]")
    assert len(entries) == LOG_KEEP
    assert entries[-1]["version"] == str(LOG_KEEP + 4)
    huge = append_log(None, {"event": "x" * 3000})
    huge = append_log(huge, {"event": "y" * 3000})
    assert len(huge) <= TAG_LIMIT
    assert json.loads(huge)[-1]["event"].startswith("y")


def test_decision_tags_carry_the_figures() -> None:
    decision = decide(inputs(candidate_f1=0.80), GATE)
    tags = decision_tags(decision, inputs(candidate_f1=0.80), "4", ["a", "b"], "sst2_validation")
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.compared_to"] == "4"
    assert tags["promotion.f1"] == "0.800000"
    assert tags["promotion.production_f1"] == "0.820000"
    assert tags["promotion.behaviour_failures"] == "a,b"
    checks = json.loads(tags["promotion.checks"])
    assert {c["name"]: c["passed"] for c in checks}["f1_vs_production"] is False
    assert all(len(v) <= TAG_LIMIT for v in tags.values())


def test_paired_latency_alternates_and_returns_medians() -> None:
    order: list[str] = []

    def make(name: str):
        def predict(texts: list[str]) -> list[tuple[float, float]]:
            order.append(name)
            return [(0.5, 0.5)]

        return predict

    medians = paired_latency([make("a"), make("b")], ["x", "y"], 4)
    timed = order[4:]  # after two warm-up rounds of both
    assert timed == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(medians) == 2 and all(m >= 0 for m in medians)


def test_promotion_config_env_overrides(tmp_path: Path) -> None:
    cfg = load_promotion_config(
        env={"PROMOTION_MIN_F1_MARGIN": "-1", "PRODUCTION_ALIAS": "champion"}
    )
    assert cfg.gate.min_f1_margin == -1.0
    assert cfg.registry.production_alias == "champion"
    bad = tmp_path / "p.yaml"
    bad.write_text("gate:\n  max_latency_factor: 0\n")
    with pytest.raises(ConfigError, match="max_latency_factor"):
        load_promotion_config(bad, env={})


SHADOW = {
    "tag": "sentiment:v2-abc",
    "compared": 400,
    "agreement": 0.93,
    "champion_realized_accuracy": 0.8,
    "challenger_realized_accuracy": 0.85,
    "labelled_count": 60,
}


def test_the_shadow_checks_run_only_when_the_gate_asks() -> None:
    assert [c.name for c in decide(inputs(shadow=SHADOW), GATE).checks if "shadow" in c.name] == []
    strict = GATE.model_copy(update={"min_shadow_agreement": 0.9, "min_shadow_labelled": 50})
    decision = decide(inputs(shadow=SHADOW), strict)
    assert decision.promote
    assert [c.name for c in decision.checks][-2:] == ["shadow_agreement", "shadow_accuracy"]


@pytest.mark.parametrize(
    ("shadow", "failing"),
    [
        (None, ["shadow_agreement", "shadow_accuracy"]),
        ({**SHADOW, "agreement": 0.89}, ["shadow_agreement"]),
        ({**SHADOW, "labelled_count": 49}, ["shadow_accuracy"]),
        ({**SHADOW, "challenger_realized_accuracy": 0.79}, ["shadow_accuracy"]),
        (
            {
                **SHADOW,
                "compared": 0,
                "agreement": None,
                "labelled_count": 0,
                "champion_realized_accuracy": None,
                "challenger_realized_accuracy": None,
            },
            ["shadow_agreement", "shadow_accuracy"],
        ),
        ({**SHADOW, "challenger_realized_accuracy": 0.8}, []),  # not worse is enough
    ],
)
def test_each_shadow_threshold_can_reject(
    shadow: dict[str, object] | None, failing: list[str]
) -> None:
    strict = GATE.model_copy(update={"min_shadow_agreement": 0.9, "min_shadow_labelled": 50})
    decision = decide(inputs(shadow=shadow), strict)
    assert [c.name for c in decision.checks if not c.passed] == failing
