"""`make feedback-overhead`: what storing every prediction costs a client, store off and on.

The prediction store (monitoring/prediction_store.py) takes each prediction on the request path
as a queued record and writes batches from a thread of the server worker, so its cost is the
queueing plus the writer's share of the worker's CPU. This measures it where a user would see
it: `make benchmark`'s one-client p50 and its 32 single-text clients' texts/s, against a real
`bentoml serve` started with `SENTIMENT_FEEDBACK=false`, then `true`, alternating, so that the
machine's drift over minutes falls on both sides alike. Each server has a BENTOML_HOME (and so
a feedback database) of its own. Writes results/feedback_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtests.http_load import run_load
from loadtests.servers import ServerProcess, own_bentoml_home
from sentiment.data import read_tsv, resolve_sst2_dir

LOADS = ((1, 1), (32, 1))  # (clients, texts per request), as in make benchmark
TARGET = 0.05  # the bound on the relative change, both figures


def measure(
    env: dict[str, str], log: Path, texts: list[str], duration_s: float, warmup_s: float
) -> dict[str, Any]:
    """One server: the one-client p50 and the 32-client texts/s."""
    server = ServerProcess.bentoml(env, log)
    try:
        server.wait_ready()
        url = f"{server.url}/predict"
        run_load(url, texts, 8, 1, 3.0, 0.0)  # warm both model processes
        one, many = (
            run_load(url, texts, clients, per, duration_s, warmup_s).summary()
            for clients, per in LOADS
        )
    finally:
        server.stop()
    return {
        "p50_one_client_ms": one["p50_ms"],
        "texts_per_s_32_clients": many["texts_per_s"],
        "statuses": {"1": one["statuses"], "32": many["statuses"]},
    }


def relative(on: list[float], off: list[float]) -> float:
    """(mean on - mean off) / mean off."""
    return round(statistics.mean(on) / statistics.mean(off) - 1.0, 4)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by = {store: [r for r in runs if r["store"] == store] for store in ("off", "on")}
    p50 = {k: [r["p50_one_client_ms"] for r in v] for k, v in by.items()}
    rate = {k: [r["texts_per_s_32_clients"] for r in v] for k, v in by.items()}
    p50_change = relative(p50["on"], p50["off"])
    rate_change = relative(rate["on"], rate["off"])
    return {
        "p50_one_client_ms": p50,
        "texts_per_s_32_clients": rate,
        "p50_change": p50_change,
        "throughput_change": rate_change,
        "within_target": p50_change <= TARGET and rate_change >= -TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per load")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--out", default="results/feedback_overhead.json")
    args = parser.parse_args(argv)
    folder = resolve_sst2_dir(os.environ.get("SENTIMENT_DATA_DIR"))
    if folder is None:
        print("error: SST-2 not found; set SENTIMENT_DATA_DIR", file=sys.stderr)
        return 2
    texts = read_tsv(folder / "validation.tsv").texts
    scratch = Path(tempfile.mkdtemp(prefix="feedback-overhead-"))
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        # Alternate which side goes first, so neither always runs on a warmer machine.
        order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
        for store in order:
            name = f"{round_}-{store}"
            env = own_bentoml_home(dict(os.environ), scratch / name)
            env["SENTIMENT_FEEDBACK"] = "true" if store == "on" else "false"
            result = measure(env, scratch / f"{name}.log", texts, args.duration, args.warmup)
            runs.append({"round": round_, "store": store, **result})
            print(
                f"round {round_} store {store:<3}  one-client p50 "
                f"{result['p50_one_client_ms']:>7} ms  32 clients "
                f"{result['texts_per_s_32_clients']:>8} texts/s",
                flush=True,
            )
    report = {"runs": runs, **summarize(runs), "target": TARGET}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"store on vs off: one-client p50 {report['p50_change']:+.1%}, "
        f"32-client throughput {report['throughput_change']:+.1%} "
        f"(target within ±{TARGET:.0%}); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
