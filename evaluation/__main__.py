"""`python -m evaluation`: measure one registered model version on a labelled file.

Accuracy, F1, precision, recall, ROC AUC, the confusion matrix, calibration (ECE at
temperature 1 and at the version's fitted temperature, with the reliability bins), accuracy by
text-length bucket and latency per text on this machine. Writes `results/error_analysis.csv`,
appends a row to `results/performance_analysis.csv`, caches the whole result as JSON under
`results/evaluations/` and logs it to the version's MLflow run.
"""

from __future__ import annotations

import argparse
import sys

from evaluation.evaluate import evaluate_ref, make_context
from evaluation.outputs import format_table
from sentiment.config import ConfigError
from sentiment.data import DataUnavailableError
from training.registry import model_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", help="alias, version, or models:/ URI (default: candidate)")
    parser.add_argument("--data", help="labelled TSV/CSV (default: SST-2 validation)")
    parser.add_argument(
        "--cached", action="store_true", help="reuse an earlier result of the same version and data"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to the MLflow run")
    parser.add_argument(
        "--fail-below-f1",
        type=float,
        metavar="F1",
        help="exit 1 when F1 is under this (scheduled validation: fail loudly)",
    )
    args = parser.parse_args(argv)
    try:
        ctx = make_context(args.data)
        uri = model_uri(args.model, ctx.model_name, ctx.candidate_alias)
        ref = ctx.registry().resolve(uri)
        result = evaluate_ref(
            ctx,
            ref,
            use_cache=args.cached,
            write_errors=True,
            log=False if args.no_mlflow else None,
        )
    except (ConfigError, DataUnavailableError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    out = ctx.results_dir
    print(
        f"\nwrote {out / 'error_analysis.csv'} ({len(result.errors)} errors), "
        f"appended to {out / 'performance_analysis.csv'}"
    )
    f1 = float(result.metrics["f1"] or 0.0)
    if args.fail_below_f1 is not None and f1 < args.fail_below_f1:
        print(f"FAIL: F1 {f1:.4f} is under {args.fail_below_f1:.4f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
