"""`python -m evaluation.explain_benchmark`: how faithful and how fast the word explanations are.

Faithfulness is ERASER's comprehensiveness (DeYoung et al. 2020): on SST-2 validation sentences
of at least `--min-words` words (a seeded sample of `--limit`), the served model explains each
sentence; its k = 1, 2, 3 words of highest attribution towards the predicted label are deleted
and the fall in the predicted label's probability is compared with deleting k words at random
(the mean over `--random-draws` seeded draws of k words). Reported per k: the mean fall for both,
their ratio, and the share of sentences where the top-k deletion lowers the probability more
than the random one; and AOPC, the mean fall over k = 1..3.

Latency: the p50 of explaining one 20-word SST-2 sentence, beside the p50 of predicting one
text in the same process, with the serving config's torch threads (one per model process).

Each `--method NAME[=N_STEPS]` is measured on the same sentences and the same random deletions;
results/explain_benchmark.json keeps the entries of methods measured by earlier runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiment.config import PROJECT_ROOT, ConfigError, load_serving_config
from sentiment.data import DataUnavailableError, read_tsv, resolve_sst2_dir

if TYPE_CHECKING:
    from serving.classifier import Classifier
    from serving.explain import Explainer

KS = (1, 2, 3)
# The issue's targets (issue 18): top-3 beats random in >= 85 % of sentences, with a mean fall
# >= 3 x the random one; explaining one 20-word text <= 40 x the one-client /predict p50.
TARGET_SHARE = 0.85
TARGET_RATIO = 3.0
TARGET_LATENCY_FACTOR = 40.0
# The one-client HTTP /predict p50 on this machine class (README, Performance), for the target
# when the service itself is not measured here.
HTTP_PREDICT_P50_MS = 27.0
# Shapley sampling (`--method shapley=10`) is measured on request: about 5 x ablation's time.
DEFAULT_METHODS = ("ablation", "integrated_gradients=20")
# The texts of one /explain call measured for memory (the API's limit).
MAX_TEXTS = 8


@dataclass(frozen=True)
class MethodSpec:
    name: str
    n_steps: int | None

    @classmethod
    def parse(cls, value: str) -> MethodSpec:
        from serving.explain import METHODS

        name, _, steps = value.partition("=")
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; one of {', '.join(METHODS)}")
        return cls(name, int(steps) if steps else None)

    @property
    def key(self) -> str:
        return self.name if self.n_steps is None else f"{self.name}={self.n_steps}"


def sample_sentences(texts: Sequence[str], min_words: int, limit: int, seed: int) -> list[str]:
    """A seeded sample, in file order, of the sentences with at least min_words words."""
    eligible = [t for t in texts if len(t.split()) >= min_words]
    if limit >= len(eligible):
        return eligible
    chosen = np.random.default_rng(seed).choice(len(eligible), size=limit, replace=False)
    return [eligible[i] for i in sorted(chosen)]


def delete_words(words: Sequence[str], drop: Sequence[int]) -> str:
    gone = set(drop)
    return " ".join(w for i, w in enumerate(words) if i not in gone)


def top_k(attributions: Sequence[float], k: int) -> list[int]:
    """The k word indices of highest attribution (towards the predicted label), ties in text
    order: positive attributions first, so those that supported the prediction."""
    return sorted(range(len(attributions)), key=lambda i: (-attributions[i], i))[:k]


def random_k(n_words: int, k: int, draws: int, rng: np.random.Generator) -> list[list[int]]:
    return [sorted(rng.choice(n_words, size=k, replace=False).tolist()) for _ in range(draws)]


def comprehensiveness(
    top_drops: dict[int, list[float]], random_drops: dict[int, list[list[float]]]
) -> dict[str, Any]:
    """Per k: the mean fall for the top-k deletion and for the random ones, their ratio, the
    share of sentences where top-k fell more than the mean of that sentence's random draws
    (and, stricter, than each single draw); and AOPC, the mean fall over the ks."""
    per_k: dict[str, Any] = {}
    for k in sorted(top_drops):
        top = np.asarray(top_drops[k])
        draws = np.asarray(random_drops[k])  # [sentences, draws]
        rnd = draws.mean(axis=1)
        mean_top, mean_random = float(top.mean()), float(rnd.mean())
        per_k[str(k)] = {
            "mean_drop_top": mean_top,
            "mean_drop_random": mean_random,
            "ratio": mean_top / mean_random if mean_random > 0 else float("inf"),
            "share_top_beats_random": float((top > rnd).mean()),
            "share_top_beats_each_draw": float((top[:, None] > draws).mean()),
        }
    return {
        "per_k": per_k,
        "aopc_top": float(np.mean([v["mean_drop_top"] for v in per_k.values()])),
        "aopc_random": float(np.mean([v["mean_drop_random"] for v in per_k.values()])),
    }


def faithfulness(
    classifier: Classifier,
    explainer: Explainer,
    sentences: Sequence[str],
    seed: int,
    draws: int,
) -> dict[str, Any]:
    from tqdm import tqdm

    labels = classifier.labels
    top_drops: dict[int, list[float]] = {k: [] for k in KS}
    random_drops: dict[int, list[list[float]]] = {k: [] for k in KS}
    started = time.perf_counter()
    explain_seconds = 0.0
    for index, text in enumerate(tqdm(sentences, desc=explainer.method, unit="sentence")):
        t0 = time.perf_counter()
        explanation = explainer.explain([text])[0]
        explain_seconds += time.perf_counter() - t0
        target = labels.index(explanation["sentiment"])
        before = explanation["probabilities"][explanation["sentiment"]]
        words = [w["word"] for w in explanation["words"]]
        scores = [w["attribution"] for w in explanation["words"]]
        # The same random deletions for every method: seeded by the sentence alone.
        rng = np.random.default_rng([seed, index])
        variants: list[str] = []
        for k in KS:
            variants.append(delete_words(words, top_k(scores, k)))
            variants.extend(delete_words(words, d) for d in random_k(len(words), k, draws, rng))
        after = [
            p.probabilities[labels[target]] for p in classifier.predict(variants)
        ]  # one call: top-k then the draws, per k
        for i, k in enumerate(KS):
            block = after[i * (draws + 1) : (i + 1) * (draws + 1)]
            top_drops[k].append(before - block[0])
            random_drops[k].append([before - p for p in block[1:]])
    result = comprehensiveness(top_drops, random_drops)
    result["sentences"] = len(sentences)
    result["explain_seconds_mean"] = explain_seconds / max(1, len(sentences))
    result["seconds"] = time.perf_counter() - started
    return result


def interleaved_p50_ms(
    calls: dict[str, Any], texts: Sequence[str], runs: int, warmup: int
) -> dict[str, float]:
    """p50 milliseconds of each call on one text at a time, the calls taking turns on the same
    text, so that a busy machine slows them alike and their ratios hold."""
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + runs):
        text = texts[i % len(texts)]
        for name, call in calls.items():
            t0 = time.perf_counter()
            call([text])
            if i >= warmup:
                timings[name].append((time.perf_counter() - t0) * 1000)
    return {name: float(np.percentile(values, 50)) for name, values in timings.items()}


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def load_served_classifier() -> tuple[Classifier, dict[str, Any]]:
    """The Bento model exactly as a model process loads it (serving.replica.Replica)."""
    from serving.classifier import Classifier, serving_options
    from serving.store import get_bento_model

    cfg = load_serving_config()
    bento_model = get_bento_model(cfg.model.tag)
    metadata = dict(bento_model.info.metadata or {})
    classifier = Classifier.from_bento_model(
        bento_model,
        max_length=cfg.model.max_length or int(metadata.get("max_length", 128)),
        num_threads=cfg.model.num_threads,
        **serving_options(cfg.model),
    )
    model = {
        "tag": str(bento_model.tag),
        "quantized": classifier.quantized,
        "skip_padding": classifier.packed,
        "device": classifier.device.type,
        "max_length": classifier.max_length,
        "torch_threads": cfg.model.num_threads,
    }
    return classifier, model


def format_table(results: dict[str, Any]) -> str:
    lines = [
        f"{'method':<24} {'k':>2} {'drop top-k':>11} {'drop random':>12} {'ratio':>6} "
        f"{'top-k beats':>12} {'each draw':>10}"
    ]
    for key, entry in results["methods"].items():
        faith = entry["faithfulness"]
        for k, row in faith["per_k"].items():
            lines.append(
                f"{key:<24} {k:>2} {row['mean_drop_top']:>11.4f} {row['mean_drop_random']:>12.4f}"
                f" {row['ratio']:>6.1f} {row['share_top_beats_random']:>11.1%}"
                f" {row['share_top_beats_each_draw']:>10.1%}"
            )
        lines.append(
            f"{key:<24} AOPC {faith['aopc_top']:.4f} vs random {faith['aopc_random']:.4f} "
            f"({faith['sentences']} sentences)"
        )
    lines.append("")
    lines.append(
        f"{'method':<24} {'explain p50':>12} {'predict p50':>12} {'ratio':>6} "
        f"{'/ HTTP ref':>11} {'weights MB':>10} {'peak MB':>8} {'targets':>8}"
    )
    for key, entry in results["methods"].items():
        lat = entry["latency"]
        lines.append(
            f"{key:<24} {lat['explain_p50_ms']:>10.1f}ms {lat['predict_p50_ms']:>10.2f}ms"
            f" {lat['ratio_in_process']:>6.1f} {lat['ratio_to_http_reference']:>10.1f}x"
            f" {entry['memory']['extra_weight_bytes'] / 1e6:>10.1f}"
            f" {entry['memory']['peak_rss_growth_bytes'] / 1e6:>8.1f}"
            f" {'met' if entry['targets']['all_met'] else 'MISSED':>8}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from serving.explain import Explainer

    folder = resolve_sst2_dir(args.data_dir or os.environ.get("SENTIMENT_DATA_DIR") or None)
    if folder is None:
        raise DataUnavailableError("no SST-2 validation.tsv: set SENTIMENT_DATA_DIR")
    validation = read_tsv(folder / "validation.tsv")
    sentences = sample_sentences(validation.texts, args.min_words, args.limit, args.seed)
    twenty = [t for t in validation.texts if len(t.split()) == 20] or sentences
    longest = sorted(validation.texts, key=len, reverse=True)
    classifier, model = load_served_classifier()
    # A full serving batch of the longest texts first: the memory a model process reaches anyway.
    classifier.predict(longest[:64])
    serving_peak = peak_rss_bytes()
    specs = [MethodSpec.parse(m) for m in args.method or DEFAULT_METHODS]
    explainers: dict[str, Explainer] = {}
    peak_growth: dict[str, int] = {}
    for spec in specs:
        options: dict[str, Any] = {"method": spec.name, "max_texts": MAX_TEXTS}
        if spec.n_steps is not None:
            options["n_steps"] = spec.n_steps
        explainers[spec.key] = Explainer(classifier, **options)
        # The largest call the API allows: MAX_TEXTS of the longest sentences at once.
        explainers[spec.key].explain(longest[:MAX_TEXTS])
        peak_growth[spec.key] = max(0, peak_rss_bytes() - serving_peak)
    p50 = interleaved_p50_ms(
        {"predict": classifier.predict} | {k: e.explain for k, e in explainers.items()},
        twenty,
        args.latency_runs,
        warmup=3,
    )

    methods: dict[str, Any] = {}
    for spec in specs:
        explainer = explainers[spec.key]
        faith = faithfulness(classifier, explainer, sentences, args.seed, args.random_draws)
        top3 = faith["per_k"][str(max(KS))]
        ratio = p50[spec.key] / p50["predict"]
        latency = {
            "text_words": 20,
            "explain_p50_ms": p50[spec.key],
            "predict_p50_ms": p50["predict"],
            "ratio_in_process": ratio,
            "http_predict_p50_reference_ms": args.http_predict_ms,
            "ratio_to_http_reference": p50[spec.key] / args.http_predict_ms,
        }
        targets = {
            "top3_share_ge_85pct": top3["share_top_beats_random"] >= TARGET_SHARE,
            "top3_mean_drop_ge_3x_random": top3["ratio"] >= TARGET_RATIO,
            # /explain and /predict pay the same HTTP and batching overhead, so against the
            # in-process predict p50 the ratio is the stricter check.
            "explain_p50_le_40x_http_predict": latency["ratio_to_http_reference"]
            <= TARGET_LATENCY_FACTOR,
            "explain_p50_le_40x_in_process_predict": ratio <= TARGET_LATENCY_FACTOR,
        }
        targets["all_met"] = all(targets.values())
        methods[spec.key] = {
            "method": spec.name,
            "n_steps": explainer.n_steps if spec.name != "ablation" else None,
            "internal_batch_size": explainer.internal_batch_size,
            "faithfulness": faith,
            "latency": latency,
            "memory": {
                "extra_weight_bytes": explainer.extra_weight_bytes,
                # Peak resident memory above a 64-text serving batch's, explaining MAX_TEXTS of
                # the longest sentences (after the methods listed before this one).
                "peak_rss_growth_bytes": peak_growth[spec.key],
            },
            "targets": targets,
            "model": model,
            "sample": {
                "min_words": args.min_words,
                "limit": args.limit,
                "seed": args.seed,
                "random_draws": args.random_draws,
            },
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "methods": methods,
    }


def merge_results(path: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """Keep earlier runs' methods in the file; this run's replace those it measured again."""
    merged: dict[str, Any] = {"methods": {}}
    if path.is_file():
        try:
            merged = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            merged = {"methods": {}}
    merged["machine"] = fresh["machine"]
    merged.setdefault("methods", {}).update(fresh["methods"])
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--method",
        action="append",
        metavar="NAME[=N_STEPS]",
        help=f"repeatable; default: {' '.join(DEFAULT_METHODS)}",
    )
    parser.add_argument("--limit", type=int, default=300, help="sentences (seeded sample)")
    parser.add_argument("--min-words", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-draws", type=int, default=5, help="random deletions per k")
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--http-predict-ms", type=float, default=HTTP_PREDICT_P50_MS)
    parser.add_argument("--data-dir", help="SST-2 folder (default: SENTIMENT_DATA_DIR, shared)")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "results" / "explain_benchmark.json"))
    args = parser.parse_args(argv)
    if args.limit < 1 or args.random_draws < 1 or args.latency_runs < 1:
        parser.error("--limit, --random-draws and --latency-runs must be >= 1")
    try:
        fresh = run(args)
    except (ConfigError, DataUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    merged = merge_results(out, fresh)
    out.write_text(json.dumps(merged, indent=2) + "\n")
    print(format_table(fresh))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
