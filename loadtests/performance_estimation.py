"""`python -m loadtests.performance_estimation`: how close the label-free accuracy estimate
(`monitoring.performance`) comes to the accuracy the labels give, per kind of traffic.

The served model path runs in-process (the Bento model, int8 on CPU, the serving settings) over
pools of labelled texts, once per pool. Windows of 200 and 500 predictions are drawn from each
pool; per window the estimate is compared with the realized accuracy (share right). Pools:

- sst2_validation (no shift): SST-2 validation. The model's temperature was fitted on it, and
  so are the estimators compared here (as the import step would fit them): in-sample.
- sst2_unseen (no shift, out of sample): full SST-2 sentences of train.tsv the model did not
  train on and that are not in validation (as in the drift benchmark: rows that are no token
  span of a longer row, whose lengths match validation's).
- amazon (domain shift): product-review sentences.
- sst2_negative / sst2_positive (label shift): only the negatives, or only the positives, of
  sst2_unseen; sst2_mostly_negative / sst2_mostly_positive: 75 % of one label.
- short_phrases (another shift): train.tsv rows of at most SHORT_PHRASE_MAX_WORDS words that
  the model did not see. The quick model trained on `max_train_samples` rows sampled from
  train.tsv less its hold-out (training.train.prepare_data, reproduced here with the training
  config's seed and sizes); a row is unseen when its text is none of those rows' texts (nor a
  validation sentence). Held-out rows and rows beyond the sample both count.
- sst2_said_positive (a stress test, not a shift of the traffic): the sst2_unseen texts the
  model calls positive. No mix of labels gives only positive predictions, so the label-shift
  step must refuse these windows (`LabelShiftBand`); it would read them as all right.

Per pool, window size and estimator (each calibration method, with and without the label-shift
step): mean absolute error between estimate and realized accuracy, the share of windows within
WITHIN of it, the mean estimate and the mean realized accuracy, and for the shifted pools
whether the mean estimate moved from sst2_unseen's the way the mean realized accuracy did.
Prints a table; writes results/performance_estimation.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.drift_benchmark import full_sentence_rows
from monitoring.performance import (
    DEFAULT_METHOD,
    METHOD_THRESHOLD,
    METHODS,
    AccuracyEstimate,
    PerformanceEstimator,
    fit_estimator,
)
from sentiment.calibration import expected_calibration_error
from sentiment.config import PROJECT_ROOT

WINDOW_SIZES = (200, 500)
DEFAULT_WINDOWS = 200  # windows per pool and size
MAX_POOL = 3000  # texts predicted per sampled pool (sst2_unseen, short_phrases)
SHORT_PHRASE_MAX_WORDS = 4
WITHIN = 0.03  # "the estimate is within 3 points"
TRAINING_CONFIG = "configs/training_quick.yaml"  # tells which train.tsv rows the model saw
OUTPUT = "results/performance_estimation.json"

# Targets from issue 16, on windows of TARGET_WINDOW predictions.
TARGET_WINDOW = 500
MAX_MAE_NO_SHIFT = 0.02
MAX_MAE_DOMAIN_SHIFT = 0.04
# Below this change of the realized accuracy there is no direction for the estimate to follow.
DIRECTION_MIN_CHANGE = 0.01

# Estimators compared: every calibration method as it is, and with the label-shift step
# (name + LABEL_SHIFT_SUFFIX) where it applies (not to the 0/1 threshold map).
# One more, to show what LabelShiftBand is for: the default without it (+ NO_BAND_SUFFIX).
LABEL_SHIFT_SUFFIX = "+prior"
NO_BAND_SUFFIX = "/noband"
DEFAULT_VARIANT = DEFAULT_METHOD + LABEL_SHIFT_SUFFIX
VARIANTS: tuple[str, ...] = (
    *METHODS,
    *(m + LABEL_SHIFT_SUFFIX for m in METHODS if m != METHOD_THRESHOLD),
    DEFAULT_VARIANT + NO_BAND_SUFFIX,
)
# Partial label shift: windows of this share of the majority label.
MOSTLY_SHARE = 0.75

KIND_NO_SHIFT = "no shift"
KIND_DOMAIN = "domain shift"
KIND_LABEL = "label shift"
KIND_PHRASES = "short phrases"
KIND_SELECTION = "output selection"
BASELINE_POOL = "sst2_unseen"  # where the shifted pools' directions are measured from
CALIBRATION_POOL = "sst2_validation"  # labelled predictions the calibrations are fitted on
POOL_ORDER = (
    "sst2_validation",
    "sst2_unseen",
    "amazon",
    "sst2_negative",
    "sst2_positive",
    "sst2_mostly_negative",
    "sst2_mostly_positive",
    "short_phrases",
    "sst2_said_positive",
)


@dataclass(frozen=True)
class Pool:
    name: str
    kind: str
    texts: list[str]
    labels: list[int]


@dataclass(frozen=True)
class PoolScores:
    """The served model's answers on a pool: confidence of the predicted class, predicted and
    true label index."""

    confidence: np.ndarray
    predicted: np.ndarray
    true: np.ndarray

    def __len__(self) -> int:
        return int(self.confidence.size)

    @property
    def correct(self) -> np.ndarray:
        return np.asarray(self.predicted == self.true)

    def subset(self, mask: np.ndarray) -> PoolScores:
        return PoolScores(self.confidence[mask], self.predicted[mask], self.true[mask])


# --- pure parts ------------------------------------------------------------------------------


def draw_windows(pool_size: int, size: int, n_windows: int, rng: np.random.Generator) -> np.ndarray:
    """(n_windows, size) row indices: each window drawn without replacement, windows
    independently."""
    if size > pool_size:
        raise ValueError(f"window of {size} from a pool of {pool_size}")
    if size < 1 or n_windows < 1:
        raise ValueError("size and n_windows must be >= 1")
    return np.stack([np.sort(rng.choice(pool_size, size, replace=False)) for _ in range(n_windows)])


def label_mix(true: np.ndarray, positive_share: float) -> np.ndarray:
    """A mask of rows whose share of positives is `positive_share`: every row of the label that
    is to be the majority (or the minority, whichever limits), and the first rows of the other
    label in pool order, as many as the share allows."""
    if not 0.0 <= positive_share <= 1.0:
        raise ValueError("positive_share must lie in [0, 1]")
    labels = np.asarray(true)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if positive_share in (0.0, 1.0):
        keep_pos, keep_neg = (len(pos), 0) if positive_share == 1.0 else (0, len(neg))
    else:
        total = min(len(pos) / positive_share, len(neg) / (1.0 - positive_share))
        keep_pos = round(total * positive_share)
        keep_neg = round(total * (1.0 - positive_share))
    mask = np.zeros(labels.shape, dtype=bool)
    mask[pos[:keep_pos]] = True
    mask[neg[:keep_neg]] = True
    return mask


def window_means(values: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The mean of `values` over each window (a row of indices)."""
    return np.asarray(np.asarray(values, dtype=np.float64)[windows].mean(axis=1))


def summarize(
    estimates: np.ndarray, realized: np.ndarray, within: float = WITHIN
) -> dict[str, float]:
    """How far the per-window estimates are from the realized accuracies."""
    est = np.asarray(estimates, dtype=np.float64)
    real = np.asarray(realized, dtype=np.float64)
    if est.shape != real.shape or est.size == 0:
        raise ValueError("estimates and realized must be non-empty and of the same shape")
    error = est - real
    return {
        "mae": float(np.mean(np.abs(error))),
        # The small tolerance keeps an error of exactly `within` inside despite float rounding.
        "within": float(np.mean(np.abs(error) <= within + 1e-12)),
        "mean_estimate": float(est.mean()),
        "mean_realized": float(real.mean()),
        "bias": float(error.mean()),
        "max_abs_error": float(np.max(np.abs(error))),
    }


def direction(
    shifted: Mapping[str, float],
    baseline: Mapping[str, float],
    min_change: float = DIRECTION_MIN_CHANGE,
) -> dict[str, Any]:
    """Did the mean estimate move from the baseline's the way the mean realized accuracy did?

    `right` is None when the realized accuracy moved less than `min_change`: nothing to follow.
    """
    d_est = shifted["mean_estimate"] - baseline["mean_estimate"]
    d_real = shifted["mean_realized"] - baseline["mean_realized"]
    right = None if abs(d_real) < min_change else bool(np.sign(d_est) == np.sign(d_real))
    return {"delta_estimate": d_est, "delta_realized": d_real, "right": right}


def pool_accuracy_mae(realized: np.ndarray, pool_accuracy: float) -> float:
    """MAE of an estimator that always answers the pool's own accuracy: how much the windows'
    realized accuracies scatter by sampling alone. An estimator that follows each window can
    come below it; one that is right only on average cannot."""
    return float(np.mean(np.abs(np.asarray(realized, dtype=np.float64) - pool_accuracy)))


def short_unseen_rows(
    texts: Sequence[str], max_words: int, excluded: set[str] | frozenset[str]
) -> list[int]:
    """Rows of at most `max_words` words whose text is not excluded, first of each text only."""
    kept: list[int] = []
    taken: set[str] = set()
    for index, text in enumerate(texts):
        words = text.split()
        if not words or len(words) > max_words:
            continue
        key = text.strip()
        if key in excluded or key in taken:
            continue
        taken.add(key)
        kept.append(index)
    return kept


def target_for(pool: str, kind: str, size: int) -> float | None:
    """The largest MAE the issue allows for this pool and window size, if it sets one."""
    if size != TARGET_WINDOW:
        return None
    if kind == KIND_NO_SHIFT:
        return MAX_MAE_NO_SHIFT
    if kind == KIND_DOMAIN:
        return MAX_MAE_DOMAIN_SHIFT
    return None


def evaluate_pool(
    scores: PoolScores,
    estimators: Mapping[str, PerformanceEstimator],
    sizes: Sequence[int],
    n_windows: int,
    rng: np.random.Generator,
) -> dict[tuple[int, str], dict[str, float]]:
    """Per (window size, estimator): the summary over the same windows for every estimator."""
    out: dict[tuple[int, str], dict[str, float]] = {}
    correct = scores.correct.astype(np.float64)
    for size in sizes:
        windows = draw_windows(len(scores), size, n_windows, rng)
        realized = window_means(correct, windows)
        scatter = pool_accuracy_mae(realized, float(correct.mean()))
        for name, estimator in estimators.items():
            answers = [_estimate(estimator, scores, window) for window in windows]
            estimates = np.asarray([a.estimated for a in answers], dtype=np.float64)
            outside = float(np.mean([a.outside_label_shift for a in answers]))
            out[(size, name)] = {
                **summarize(estimates, realized),
                "pool_accuracy_mae": scatter,
                "outside_label_shift": outside,
            }
    return out


def _estimate(
    estimator: PerformanceEstimator, scores: PoolScores, window: np.ndarray
) -> AccuracyEstimate:
    estimate = estimator.estimate(scores.confidence[window], scores.predicted[window])
    if estimate is None:
        raise ValueError("empty window")
    return estimate


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = [
        "pool",
        "kind",
        "window",
        "MAE",
        "within 3 pts",
        "mean est",
        "mean real",
        "Δ est",
        "Δ real",
        "direction",
        "pool-acc MAE",
        "step refused",
        "target",
        "ok",
    ]
    lines = [header]
    for r in rows:
        s, d = r["summary"], r.get("direction")
        lines.append(
            [
                r["pool"] + (" *" if r.get("in_sample") else ""),
                r["kind"],
                str(r["window_size"]),
                f"{s['mae']:.4f}",
                f"{s['within']:.2f}",
                f"{s['mean_estimate']:.4f}",
                f"{s['mean_realized']:.4f}",
                f"{d['delta_estimate']:+.4f}" if d else "-",
                f"{d['delta_realized']:+.4f}" if d else "-",
                {True: "right", False: "WRONG", None: "flat"}[d["right"]] if d else "-",
                f"{s['pool_accuracy_mae']:.4f}",
                f"{s.get('outside_label_shift', 0.0):.2f}",
                f"<= {r['target']:.2f}" if r["target"] is not None else "-",
                {True: "yes", False: "NO", None: "-"}[r["meets_target"]],
            ]
        )
    return _aligned(lines)


def format_method_table(rows: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> str:
    """MAE per pool and window size (rows) and estimator (columns)."""
    by_key: dict[tuple[str, int], dict[str, float]] = {}
    for r in rows:
        by_key.setdefault((r["pool"], r["window_size"]), {})[r["method"]] = r["summary"]["mae"]
    lines = [["pool", "window", *methods]]
    for (pool, size), maes in by_key.items():
        lines.append([pool, str(size), *(f"{maes[m]:.4f}" if m in maes else "-" for m in methods)])
    return _aligned(lines)


def _aligned(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def build_rows(
    results: Mapping[str, Mapping[tuple[int, str], Mapping[str, float]]],
    pools: Mapping[str, PoolScores],
    kinds: Mapping[str, str],
    methods: Sequence[str],
    sizes: Sequence[int],
) -> list[dict[str, Any]]:
    """One row per pool, window size and method: summary, direction, noise floor, target."""
    rows: list[dict[str, Any]] = []
    for name in results:
        for size in sizes:
            for method in methods:
                summary = results[name][(size, method)]
                moved = None
                if kinds[name] != KIND_NO_SHIFT and BASELINE_POOL in results:
                    moved = direction(summary, results[BASELINE_POOL][(size, method)])
                target = target_for(name, kinds[name], size)
                rows.append(
                    {
                        "pool": name,
                        "kind": kinds[name],
                        "pool_size": len(pools[name]),
                        "window_size": size,
                        "method": method,
                        "in_sample": name == CALIBRATION_POOL,
                        "summary": {k: round(v, 5) for k, v in summary.items()},
                        "direction": None
                        if moved is None
                        else {
                            k: (round(v, 5) if isinstance(v, float) else v)
                            for k, v in moved.items()
                        },
                        "target": target,
                        "meets_target": None if target is None else summary["mae"] <= target,
                    }
                )
    return rows


def verdict(rows: Sequence[Mapping[str, Any]], method: str) -> dict[str, Any]:
    """For one method: each target met or not, and every shift's direction."""
    mine = [r for r in rows if r["method"] == method]
    targets = {
        f"{r['pool']}@{r['window_size']}": r["meets_target"]
        for r in mine
        if r["meets_target"] is not None
    }
    directions = {
        f"{r['pool']}@{r['window_size']}": r["direction"]["right"]
        for r in mine
        if r["direction"] is not None
    }
    return {
        "targets": targets,
        "directions": directions,
        "all_met": all(targets.values()) and all(v is not False for v in directions.values()),
    }


# --- data and the model ----------------------------------------------------------------------


def build_pools(training_config: Path, seed: int, max_pool: int) -> list[Pool]:
    from sentiment.config import load_training_config
    from sentiment.data import read_tsv, resolve_reviews_file, resolve_sst2_dir
    from training.train import select_training_rows

    training = load_training_config(training_config)
    folder = resolve_sst2_dir(training.data.data_dir)
    if folder is None:
        raise SystemExit("SST-2 TSV files not found: set SENTIMENT_DATA_DIR")
    validation = read_tsv(folder / "validation.tsv")
    train = read_tsv(folder / "train.tsv")
    seen = set(select_training_rows(train, training)[0].texts)
    excluded = {t.strip() for t in seen | set(validation.texts)}
    rng = np.random.default_rng(seed)

    def sample(rows: list[int]) -> list[int]:
        if len(rows) > max_pool:
            return sorted(rng.choice(rows, max_pool, replace=False).tolist())
        return rows

    sentences = sample(
        [i for i in full_sentence_rows(train.texts) if train.texts[i].strip() not in excluded]
    )
    phrases = sample(short_unseen_rows(train.texts, SHORT_PHRASE_MAX_WORDS, excluded))
    reviews = read_tsv(resolve_reviews_file())
    unseen = train.subset(sentences)
    short = train.subset(phrases)
    return [
        Pool("sst2_validation", KIND_NO_SHIFT, validation.texts, validation.labels),
        Pool("sst2_unseen", KIND_NO_SHIFT, unseen.texts, unseen.labels),
        Pool("amazon", KIND_DOMAIN, reviews.texts, reviews.labels),
        Pool("short_phrases", KIND_PHRASES, short.texts, short.labels),
    ]


def score_pool(
    classifier: Any, pool: Pool, model_tag: str, cache_dir: Path | None, batch_size: int = 64
) -> PoolScores:
    """The served model's answers on a pool (from the cache when the same model saw the same
    texts)."""
    from tqdm import tqdm

    from monitoring.reference import label_index

    path = None
    if cache_dir is not None:
        key = hashlib.sha256(("\n".join(pool.texts) + model_tag).encode()).hexdigest()[:16]
        path = cache_dir / f"{pool.name}-{key}.npz"
        if path.is_file():
            with np.load(path) as cached:
                return PoolScores(**{k: cached[k] for k in cached.files})
    confidence: list[float] = []
    predicted: list[int] = []
    with tqdm(total=len(pool.texts), desc=pool.name, unit="text", leave=False) as bar:
        for start in range(0, len(pool.texts), batch_size):
            chunk = pool.texts[start : start + batch_size]
            for p in classifier.predict(chunk):
                confidence.append(p.confidence)
                predicted.append(label_index(p.label, classifier.labels))
            bar.update(len(chunk))
    scores = PoolScores(
        np.asarray(confidence, np.float64),
        np.asarray(predicted, np.int8),
        np.asarray(pool.labels, np.int8),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **scores.__dict__)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--windows", type=int, default=DEFAULT_WINDOWS)
    parser.add_argument("--model-tag", help="Bento model (default: the serving config's tag)")
    parser.add_argument("--training-config", default=TRAINING_CONFIG)
    parser.add_argument(
        "--estimator", default=DEFAULT_VARIANT, choices=VARIANTS, help="the one the table shows"
    )
    parser.add_argument("--max-pool", type=int, default=MAX_POOL)
    parser.add_argument("--cache-dir", help="keep the pools' predictions here between runs")
    parser.add_argument("--output", default=OUTPUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import bentoml
    from bentoml.exceptions import NotFound

    from sentiment.config import load_serving_config
    from serving.classifier import Classifier, serving_options

    started = time.perf_counter()
    serving = load_serving_config()
    try:
        bento_model = bentoml.models.get(args.model_tag or serving.model.tag)
    except NotFound as exc:
        print(f"error: {exc}; run `make ensure-model` first", file=sys.stderr)
        return 1
    tag = str(bento_model.tag)
    metadata: dict[str, Any] = dict(bento_model.info.metadata or {})
    classifier = Classifier.from_bento_model(
        bento_model,
        max_length=serving.model.max_length or int(metadata.get("max_length", 128)),
        **serving_options(serving.model),
    )
    pools = build_pools(PROJECT_ROOT / args.training_config, args.seed, args.max_pool)
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    scores = {p.name: score_pool(classifier, p, tag, cache_dir) for p in pools}
    kinds = {p.name: p.kind for p in pools}
    unseen = scores[BASELINE_POOL]
    scores["sst2_negative"] = unseen.subset(unseen.true == 0)
    scores["sst2_positive"] = unseen.subset(unseen.true == 1)
    for name, share in (
        ("sst2_mostly_negative", 1.0 - MOSTLY_SHARE),
        ("sst2_mostly_positive", MOSTLY_SHARE),
    ):
        scores[name] = unseen.subset(label_mix(unseen.true, share))
    kinds |= {
        name: KIND_LABEL
        for name in (
            "sst2_negative",
            "sst2_positive",
            "sst2_mostly_negative",
            "sst2_mostly_positive",
        )
    }
    # Not a shift of the traffic but a stress test of the label-shift step: only the texts the
    # model calls positive, a share of positive predictions no label mix can produce.
    scores["sst2_said_positive"] = unseen.subset(unseen.predicted == 1)
    kinds["sst2_said_positive"] = KIND_SELECTION
    scored_seconds = time.perf_counter() - started

    estimators = fit_variants(scores[CALIBRATION_POOL], VARIANTS)
    sizes = [s for s in WINDOW_SIZES if s <= min(len(v) for v in scores.values())] or [
        min(WINDOW_SIZES)
    ]
    rng = np.random.default_rng(args.seed)
    results = {
        name: evaluate_pool(scores[name], estimators, sizes, args.windows, rng)
        for name in POOL_ORDER
        if name in scores
    }
    rows = build_rows(results, scores, kinds, VARIANTS, sizes)
    verdicts = {v: verdict(rows, v) for v in VARIANTS}

    print(f"\nmodel {tag} (temperature {classifier.temperature:.4f}); {args.windows} windows")
    print(f"estimators fitted on {CALIBRATION_POOL} (* = in-sample);", end=" ")
    print(f"directions from {BASELINE_POOL}\n")
    print(f"estimator {args.estimator!r}:")
    print(format_table([r for r in rows if r["method"] == args.estimator]))
    print(f"\nMAE per estimator ({LABEL_SHIFT_SUFFIX}: with the label-shift step;", end=" ")
    print(f"{NO_BAND_SUFFIX}: without its band):")
    print(format_method_table(rows, VARIANTS))
    pool_info = {name: describe_pool(s, kinds[name], estimators) for name, s in scores.items()}
    output = PROJECT_ROOT / args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "model_tag": tag,
        "temperature": classifier.temperature,
        "quantized": classifier.quantized,
        "training_config": args.training_config,
        "windows": args.windows,
        "window_sizes": sizes,
        "within": WITHIN,
        "calibration_pool": CALIBRATION_POOL,
        "baseline_pool": BASELINE_POOL,
        "estimators": {v: e.to_dict() for v, e in estimators.items()},
        "targets": {
            "window": TARGET_WINDOW,
            "max_mae_no_shift": MAX_MAE_NO_SHIFT,
            "max_mae_domain_shift": MAX_MAE_DOMAIN_SHIFT,
            "direction_min_change": DIRECTION_MIN_CHANGE,
        },
        "pools": pool_info,
        "estimator_shown": args.estimator,
        "verdicts": verdicts,
        "seconds": {
            "predicting": round(scored_seconds, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "rows": rows,
    }
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {output}")
    return 0 if verdicts[args.estimator]["all_met"] else 3


def fit_variants(fit_on: PoolScores, variants: Sequence[str]) -> dict[str, PerformanceEstimator]:
    """Each named estimator fitted on the labelled predictions `fit_on`."""
    out = {}
    for name in variants:
        base = name.removesuffix(NO_BAND_SUFFIX)
        out[name] = fit_estimator(
            fit_on.confidence,
            fit_on.predicted,
            fit_on.true,
            base.removesuffix(LABEL_SHIFT_SUFFIX),
            label_shift=base.endswith(LABEL_SHIFT_SUFFIX),
            band=not name.endswith(NO_BAND_SUFFIX),
        )
    return out


def describe_pool(
    scores: PoolScores, kind: str, estimators: Mapping[str, PerformanceEstimator]
) -> dict[str, Any]:
    """A whole pool: size, labels, accuracy, and every estimator's estimate over all of it."""
    whole = {v: e.estimate(scores.confidence, scores.predicted) for v, e in estimators.items()}
    return {
        "kind": kind,
        "size": len(scores),
        "positive_share": round(float(np.mean(scores.true == 1)), 5),
        "predicted_positive_share": round(float(np.mean(scores.predicted == 1)), 5),
        "accuracy": round(float(scores.correct.mean()), 5),
        "mean_confidence": round(float(scores.confidence.mean()), 5),
        "ece": round(expected_calibration_error(scores.confidence, scores.correct), 5),
        "estimate": {v: None if e is None else round(e.estimated, 5) for v, e in whole.items()},
        "estimated_positive_share": {
            v: None if e is None or e.positive_share is None else round(e.positive_share, 5)
            for v, e in whole.items()
        },
    }


if __name__ == "__main__":
    sys.exit(main())
