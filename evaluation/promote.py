"""`python -m evaluation.promote`: the gate from the candidate alias to the production alias.

`python -m evaluation.promote rollback` points production back to the version before it.
Decisions are tags on the candidate's model version (`promotion.*`); the order of production
versions is the registered model's `production.history` tag, so rollback needs no other store.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from evaluation.behaviour import classifier_predict, run_suite
from evaluation.evaluate import evaluate_ref, make_context
from evaluation.predict import classifier_predictor, load_classifier
from monitoring.performance import shadow_report
from monitoring.prediction_store import PredictionStore, database_url
from sentiment.config import (
    CONFIG_DIR,
    ConfigError,
    StrictModel,
    load_config,
    load_serving_config,
    load_training_config,
)
from sentiment.data import DataUnavailableError
from serving.store import bentoml_store_path
from training.import_model import bento_tag_for
from training.registry import Registry, model_uri

HISTORY_TAG = "production.history"
LOG_TAG = "production.log"
LOG_KEEP = 30
# MLflow refuses tag values longer than this.
TAG_LIMIT = 5000


# --- settings ---------------------------------------------------------------------------------


class RegistrySection(StrictModel):
    production_alias: str = "production"


class GateSection(StrictModel):
    min_f1: float = Field(0.75, ge=0, le=1)
    min_f1_margin: float = Field(0.005, ge=-1, le=1)
    max_bucket_drop: float = Field(0.03, ge=0, le=1)
    min_bucket_size: int = Field(30, ge=1)
    min_behaviour_pass_rate: float = Field(0.85, ge=0, le=1)
    max_latency_factor: float = Field(1.5, gt=0)
    max_latency_ms: float = Field(500.0, gt=0)
    latency_samples: int = Field(40, ge=1)
    # A shadow result (the candidate in shadow behind the served model, serving/shadow.py),
    # read from the prediction store: None = not required.
    # The challenger agrees with the served model on at least this share of shadowed predictions.
    min_shadow_agreement: float | None = Field(None, ge=0, le=1)
    # The challenger is not worse than the served model on at least this many labelled ones.
    min_shadow_labelled: int | None = Field(None, ge=1)
    # The prediction store to read: "" = the serving config's (feedback.database).
    shadow_database: str = ""


class PromotionConfig(StrictModel):
    registry: RegistrySection = RegistrySection()
    gate: GateSection = GateSection()


PROMOTION_ENV: dict[str, tuple[str, ...]] = {
    "PRODUCTION_ALIAS": ("registry", "production_alias"),
    "PROMOTION_MIN_F1": ("gate", "min_f1"),
    "PROMOTION_MIN_F1_MARGIN": ("gate", "min_f1_margin"),
    "PROMOTION_MAX_BUCKET_DROP": ("gate", "max_bucket_drop"),
    "PROMOTION_MIN_BEHAVIOUR_PASS_RATE": ("gate", "min_behaviour_pass_rate"),
    "PROMOTION_MAX_LATENCY_FACTOR": ("gate", "max_latency_factor"),
    "PROMOTION_MAX_LATENCY_MS": ("gate", "max_latency_ms"),
    "PROMOTION_MIN_SHADOW_AGREEMENT": ("gate", "min_shadow_agreement"),
    "PROMOTION_MIN_SHADOW_LABELLED": ("gate", "min_shadow_labelled"),
}


def load_promotion_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> PromotionConfig:
    env = os.environ if env is None else env
    path = path or env.get("PROMOTION_CONFIG") or CONFIG_DIR / "promotion_config.yaml"
    return load_config(PromotionConfig, path, PROMOTION_ENV, env)


# --- the gate (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    n: int
    accuracy: float | None


@dataclass(frozen=True)
class GateInputs:
    candidate_f1: float
    production_f1: float | None
    candidate_buckets: Mapping[str, Bucket]
    production_buckets: Mapping[str, Bucket] | None
    behaviour_pass_rate: float
    candidate_latency_ms: float
    production_latency_ms: float | None
    # monitoring.performance.shadow_report of the candidate in shadow, when the gate asks.
    shadow: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    promote: bool
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> str:
        """The failed checks when rejected, every check when promoted."""
        chosen = [c for c in self.checks if not c.passed] if not self.promote else self.checks
        return "; ".join(f"{c.name}: {c.detail}" for c in chosen)


def worst_bucket_drop(
    candidate: Mapping[str, Bucket], production: Mapping[str, Bucket], min_size: int
) -> tuple[str | None, float]:
    """The bucket where the candidate loses most accuracy (buckets big enough in both)."""
    worst: tuple[str | None, float] = (None, 0.0)
    for name, cand in candidate.items():
        prod = production.get(name)
        if prod is None or cand.accuracy is None or prod.accuracy is None:
            continue
        if min(cand.n, prod.n) < min_size:
            continue
        drop = prod.accuracy - cand.accuracy
        if worst[0] is None or drop > worst[1]:
            worst = (name, drop)
    return worst


def decide(inputs: GateInputs, gate: GateSection) -> Decision:
    checks = [
        Check(
            "f1_floor",
            inputs.candidate_f1 >= gate.min_f1,
            f"F1 {inputs.candidate_f1:.4f} vs floor {gate.min_f1:.4f}",
        )
    ]
    if inputs.production_f1 is None:
        checks.append(Check("f1_vs_production", True, "no production model to beat"))
    else:
        delta = inputs.candidate_f1 - inputs.production_f1
        checks.append(
            Check(
                "f1_vs_production",
                delta >= gate.min_f1_margin,
                f"F1 {inputs.candidate_f1:.4f} vs production {inputs.production_f1:.4f} "
                f"({delta:+.4f}, margin {gate.min_f1_margin:+.4f})",
            )
        )
    if inputs.production_buckets is None:
        checks.append(Check("length_buckets", True, "no production model to compare"))
    else:
        name, drop = worst_bucket_drop(
            inputs.candidate_buckets, inputs.production_buckets, gate.min_bucket_size
        )
        detail = (
            "no bucket large enough to compare"
            if name is None
            else f"worst bucket {name} words loses {drop:+.4f} (limit {gate.max_bucket_drop:.4f})"
        )
        checks.append(Check("length_buckets", drop <= gate.max_bucket_drop, detail))
    checks.append(
        Check(
            "behaviour",
            inputs.behaviour_pass_rate >= gate.min_behaviour_pass_rate,
            f"pass rate {inputs.behaviour_pass_rate:.3f} vs {gate.min_behaviour_pass_rate:.3f}",
        )
    )
    lat = inputs.candidate_latency_ms
    ok = lat <= gate.max_latency_ms
    detail = f"median {lat:.2f} ms (ceiling {gate.max_latency_ms:.0f} ms)"
    if inputs.production_latency_ms:
        factor = lat / inputs.production_latency_ms
        ok = ok and factor <= gate.max_latency_factor
        detail += f", {factor:.2f}x production's {inputs.production_latency_ms:.2f} ms"
        detail += f" (limit {gate.max_latency_factor:.2f}x)"
    checks.append(Check("latency", ok, detail))
    checks.extend(shadow_checks(inputs.shadow, gate))
    return Decision(all(c.passed for c in checks), tuple(checks))


def shadow_checks(shadow: Mapping[str, Any] | None, gate: GateSection) -> list[Check]:
    """The checks on the candidate's shadow result that the gate asks for (none by default)."""
    checks: list[Check] = []
    compared = 0 if shadow is None else int(shadow["compared"])
    if gate.min_shadow_agreement is not None:
        agreement = None if shadow is None else shadow["agreement"]
        checks.append(
            Check(
                "shadow_agreement",
                agreement is not None and agreement >= gate.min_shadow_agreement,
                "no shadowed predictions"
                if agreement is None
                else f"agrees on {agreement:.4f} of {compared} (floor {gate.min_shadow_agreement})",
            )
        )
    if gate.min_shadow_labelled is not None:
        labelled = 0 if shadow is None else int(shadow["labelled_count"])
        mine = None if shadow is None else shadow["challenger_realized_accuracy"]
        theirs = None if shadow is None else shadow["champion_realized_accuracy"]
        detail = f"{labelled} labelled shadowed predictions (need {gate.min_shadow_labelled})"
        passed = False
        if labelled >= gate.min_shadow_labelled and mine is not None and theirs is not None:
            detail = f"accuracy {mine:.4f} vs served {theirs:.4f} on {labelled} labelled"
            passed = mine >= theirs
        checks.append(Check("shadow_accuracy", passed, detail))
    return checks


# --- production history (pure) ----------------------------------------------------------------


class NoPreviousVersionError(LookupError):
    """Rollback asked for, but no earlier production version is recorded."""


def parse_history(value: str | None) -> list[str]:
    if not value:
        return []
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        return []
    return [str(v) for v in data] if isinstance(data, list) else []


def history_after_promotion(history: Sequence[str], current: str | None, new: str) -> list[str]:
    """Append `new`; a production version set by hand (not last in the list) is kept first."""
    out = list(history)
    if current is not None and (not out or out[-1] != current):
        out.append(current)
    if not out or out[-1] != new:
        out.append(new)
    return out


def history_after_rollback(history: Sequence[str], current: str) -> tuple[list[str], str]:
    """Drop `current` from the top; returns (new history, version to point production at)."""
    out = list(history)
    if not out or out[-1] != current:
        out.append(current)
    while out and out[-1] == current:
        out.pop()
    if not out:
        raise NoPreviousVersionError(
            f"no production version before v{current} is recorded in the '{HISTORY_TAG}' tag"
        )
    return out, out[-1]


def append_log(value: str | None, event: Mapping[str, str]) -> str:
    """The event log tag: the last LOG_KEEP events that fit in one tag value."""
    entries = parse_history_log(value)
    entries.append(dict(event))
    entries = entries[-LOG_KEEP:]
    text = json.dumps(entries)
    while len(text) > TAG_LIMIT and len(entries) > 1:
        entries = entries[1:]
        text = json.dumps(entries)
    return text


def parse_history_log(value: str | None) -> list[dict[str, str]]:
    if not value:
        return []
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- measuring --------------------------------------------------------------------------------


def paired_latency(predicts: Sequence[Any], texts: Sequence[str], samples: int) -> list[float]:
    """Median ms per single-text call of each predictor, timed in alternation.

    Alternating (and swapping the order each round) exposes both models to the same
    background load, which on a shared machine moves far more than the difference measured.
    """
    timings: list[list[float]] = [[] for _ in predicts]
    order = list(range(len(predicts)))
    for text in texts[:3]:
        for predict in predicts:
            predict([text])
    for i in range(samples):
        text = texts[i % len(texts)]
        for k in order if i % 2 == 0 else reversed(order):
            started = time.perf_counter()
            predicts[k]([text])
            timings[k].append((time.perf_counter() - started) * 1000)
    return [statistics.median(t) for t in timings]


def buckets_of(result: Any) -> dict[str, Bucket]:
    return {b["bucket"]: Bucket(b["n"], b["accuracy"]) for b in result.buckets}


@dataclass
class PromotionOutcome:
    candidate: str
    production: str | None
    decision: Decision | None
    applied: bool
    message: str
    tags: dict[str, str]


def decision_tags(
    decision: Decision,
    inputs: GateInputs,
    production_version: str | None,
    behaviour_failures: Sequence[str],
    dataset: str,
) -> dict[str, str]:
    tags = {
        "promotion.decision": "promoted" if decision.promote else "rejected",
        "promotion.at": now(),
        "promotion.reasons": decision.reasons,
        "promotion.compared_to": production_version or "none",
        "promotion.dataset": dataset,
        "promotion.f1": f"{inputs.candidate_f1:.6f}",
        "promotion.production_f1": (
            "" if inputs.production_f1 is None else f"{inputs.production_f1:.6f}"
        ),
        "promotion.behaviour_pass_rate": f"{inputs.behaviour_pass_rate:.4f}",
        "promotion.behaviour_failures": ",".join(behaviour_failures),
        "promotion.latency_ms": f"{inputs.candidate_latency_ms:.3f}",
        "promotion.production_latency_ms": (
            "" if inputs.production_latency_ms is None else f"{inputs.production_latency_ms:.3f}"
        ),
        "promotion.checks": json.dumps([asdict(c) for c in decision.checks]),
    }
    if inputs.shadow is not None:
        tags["promotion.shadow"] = json.dumps(dict(inputs.shadow))
    return {k: v[:TAG_LIMIT] for k, v in tags.items()}


def promote(
    candidate_arg: str | None = None,
    *,
    dry_run: bool = False,
    data_file: str | None = None,
    config: PromotionConfig | None = None,
) -> PromotionOutcome:
    pcfg = config or load_promotion_config()
    ctx = make_context(data_file)
    registry = ctx.registry()
    name = ctx.model_name
    alias = pcfg.registry.production_alias
    cand = registry.resolve(model_uri(candidate_arg, name, ctx.candidate_alias))
    prod = registry.find_alias(name, alias)
    if prod is not None and prod.version == cand.version:
        return PromotionOutcome(
            cand.version, prod.version, None, False, f"v{cand.version} is already @{alias}", {}
        )
    cand_eval = evaluate_ref(ctx, cand)
    prod_eval = evaluate_ref(ctx, prod) if prod else None
    texts = ctx.data.texts
    serve = ctx.cfg.evaluation.as_served
    with registry.downloaded_transformers(cand) as (weights, tokenizer):
        cand_classifier = load_classifier(cand, weights, tokenizer, serve)
    suite = run_suite(classifier_predict(cand_classifier))
    if prod is not None:
        with registry.downloaded_transformers(prod) as (weights, tokenizer):
            prod_classifier = load_classifier(prod, weights, tokenizer, serve)
        cand_ms, prod_ms = paired_latency(
            [classifier_predictor(cand_classifier), classifier_predictor(prod_classifier)],
            texts,
            pcfg.gate.latency_samples,
        )
        del prod_classifier
    else:
        (cand_ms,) = paired_latency(
            [classifier_predictor(cand_classifier)], texts, pcfg.gate.latency_samples
        )
        prod_ms = None
    inputs = GateInputs(
        candidate_f1=float(cand_eval.metrics["f1"] or 0.0),
        production_f1=None if prod_eval is None else float(prod_eval.metrics["f1"] or 0.0),
        candidate_buckets=buckets_of(cand_eval),
        production_buckets=None if prod_eval is None else buckets_of(prod_eval),
        behaviour_pass_rate=suite.pass_rate,
        candidate_latency_ms=cand_ms,
        production_latency_ms=prod_ms,
        shadow=shadow_result(pcfg.gate, bento_tag_for(load_serving_config().model.name, cand)),
    )
    decision = decide(inputs, pcfg.gate)
    tags = decision_tags(
        decision,
        inputs,
        prod.version if prod else None,
        [r.case.id for r in suite.failures()],
        ctx.dataset["name"],
    )
    if dry_run:
        verb = "would promote" if decision.promote else "would reject"
        return PromotionOutcome(
            cand.version, prod.version if prod else None, decision, False, verb, tags
        )
    registry.set_version_tags(name, cand.version, tags)
    if decision.promote:
        set_production(registry, name, alias, cand.version, prod.version if prod else None)
        message = f"promoted v{cand.version} to @{alias}"
    else:
        message = f"kept @{alias} on " + (f"v{prod.version}" if prod else "nothing")
    return PromotionOutcome(
        cand.version, prod.version if prod else None, decision, decision.promote, message, tags
    )


def shadow_result(gate: GateSection, candidate_tag: str) -> dict[str, Any] | None:
    """The candidate's shadow result from the prediction store, when the gate asks for one."""
    if gate.min_shadow_agreement is None and gate.min_shadow_labelled is None:
        return None
    serving = load_serving_config()
    url = database_url(
        gate.shadow_database or serving.feedback.database,
        Path(bentoml_store_path()) / "feedback",
    )
    store = PredictionStore(url)
    store.start()
    try:
        version = candidate_tag.split(":", 1)[1]
        pairs = store.shadow_pairs(version, serving.shadow.window)
    finally:
        store.close()
    return shadow_report(candidate_tag, [(p.champion, p.challenger, p.true) for p in pairs])


def set_production(
    registry: Registry, name: str, alias: str, version: str, previous: str | None
) -> None:
    model_tags = registry.model_tags(name)
    history = history_after_promotion(parse_history(model_tags.get(HISTORY_TAG)), previous, version)
    registry.set_alias(name, alias, version)
    event = {"event": "promote", "version": version, "from": previous or "", "at": now()}
    registry.set_model_tags(
        name,
        {
            HISTORY_TAG: json.dumps(history),
            LOG_TAG: append_log(model_tags.get(LOG_TAG), event),
        },
    )
    registry.set_version_tags(
        name, version, {"production.since": event["at"], "production.previous": previous or "none"}
    )


def rollback(tracking_uri: str, name: str, alias: str) -> tuple[str, str]:
    """Point `alias` at the version before the current one; returns (from, to)."""
    registry = Registry(tracking_uri)
    found = registry.find_alias(name, alias)
    if found is None:
        raise NoPreviousVersionError(f"{name}@{alias} is not set: nothing to roll back")
    current = found.version
    model_tags = registry.model_tags(name)
    history, target = history_after_rollback(parse_history(model_tags.get(HISTORY_TAG)), current)
    registry.set_alias(name, alias, target)
    event = {"event": "rollback", "version": target, "from": current, "at": now()}
    registry.set_model_tags(
        name,
        {
            HISTORY_TAG: json.dumps(history),
            LOG_TAG: append_log(model_tags.get(LOG_TAG), event),
        },
    )
    registry.set_version_tags(name, current, {"production.rolled_back_at": event["at"]})
    registry.set_version_tags(name, target, {"production.since": event["at"]})
    return current, target


def print_outcome(outcome: PromotionOutcome) -> None:
    if outcome.decision is not None:
        for check in outcome.decision.checks:
            mark = "PASS" if check.passed else "FAIL"
            print(f"  [{mark}] {check.name}: {check.detail}")
        failures = outcome.tags.get("promotion.behaviour_failures")
        if failures:
            print(f"  behaviour cases failed: {failures}")
    print(outcome.message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", choices=("promote", "rollback"), default="promote")
    parser.add_argument("--model", help="candidate: alias, version or models:/ URI")
    parser.add_argument("--data", help="labelled TSV/CSV (default: SST-2 validation)")
    parser.add_argument("--dry-run", action="store_true", help="decide, change nothing")
    args = parser.parse_args(argv)
    try:
        if args.action == "rollback":
            pcfg = load_promotion_config()
            training = load_training_config()
            old, new = rollback(
                training.mlflow.tracking_uri,
                training.mlflow.registered_model_name,
                pcfg.registry.production_alias,
            )
            print(f"rolled back @{pcfg.registry.production_alias}: v{old} -> v{new}")
            return 0
        outcome = promote(args.model, dry_run=args.dry_run, data_file=args.data)
    except (ConfigError, DataUnavailableError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_outcome(outcome)
    if outcome.decision is None:
        return 0
    return 0 if outcome.decision.promote else 1


if __name__ == "__main__":
    sys.exit(main())
