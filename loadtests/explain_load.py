"""`make explain-load`: what /explain costs over HTTP, and what it takes from /predict.

Against one real `bentoml serve` (default settings):
- one-client /predict p50, and /explain p50 for one 20-word SST-2 sentence (one client, after
  a first call that starts the explaining process): the issue's bound is 40 x;
- 32 single-text /predict clients alone, then with one client explaining 20-word sentences
  back to back, alternating `--rounds` times so that the machine's drift falls on both sides:
  the texts/s of /predict must not drop while an explanation runs.
Writes results/explain_load.json and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx

from loadtests.http_load import run_load
from loadtests.servers import ServerProcess, own_bentoml_home
from sentiment.data import read_tsv, resolve_sst2_dir

WORDS = 20
CLIENTS = 32


def sentences_of(texts: list[str], words: int) -> list[str]:
    """The texts of exactly `words` words."""
    return [t for t in texts if len(t.split()) == words]


def explain_p50(url: str, texts: list[str], count: int) -> float:
    """p50 in ms of `count` one-text /explain calls, one after another."""
    times = []
    with httpx.Client(timeout=120) as client:
        for i in range(count):
            started = time.perf_counter()
            answer = client.post(f"{url}/explain", json={"texts": [texts[i % len(texts)]]})
            answer.raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


class ExplainLoop:
    """One client explaining back to back in a thread until stopped; counts what it got."""

    def __init__(self, url: str, texts: list[str]) -> None:
        self.url, self.texts = url, texts
        self.stop = threading.Event()
        self.done = 0
        self.statuses: dict[int, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                text = self.texts[self.done % len(self.texts)]
                status = client.post(f"{self.url}/explain", json={"texts": [text]}).status_code
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.done += 1

    def __enter__(self) -> ExplainLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=130)


def measure(
    url: str, texts: list[str], long: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    endpoint = f"{url}/predict"
    run_load(endpoint, texts, 8, 1, 3.0, 0.0)  # warm the model processes
    explain_p50(url, long, 1)  # starts the explaining process
    single = run_load(endpoint, texts, 1, 1, args.duration, args.warmup).summary()
    one = float(cast(float, single["p50_ms"]))
    explained = explain_p50(url, long, args.explanations)
    rounds: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        row: dict[str, Any] = {"round": round_}
        order = ("alone", "with_explain") if round_ % 2 == 0 else ("with_explain", "alone")
        for side in order:
            if side == "alone":
                row[side] = run_load(endpoint, texts, CLIENTS, 1, args.duration, args.warmup)
                row[side] = row[side].summary()["texts_per_s"]
                continue
            with ExplainLoop(url, long) as loop:
                result = run_load(endpoint, texts, CLIENTS, 1, args.duration, args.warmup)
            row[side] = result.summary()["texts_per_s"]
            row["explanations_during"] = loop.done
            row["explain_statuses"] = loop.statuses
        rounds.append(row)
        print(f"  round {round_}: {row}", flush=True)
    alone = statistics.mean(r["alone"] for r in rounds)
    shared = statistics.mean(r["with_explain"] for r in rounds)
    return {
        "p50_one_client_predict_ms": one,
        "p50_explain_20_words_ms": explained,
        "explain_vs_predict_p50": round(explained / one, 2),
        "rounds": rounds,
        "predict_texts_per_s_alone": round(alone, 2),
        "predict_texts_per_s_with_explain": round(shared, 2),
        "throughput_change": round(shared / alone - 1.0, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per load")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--explanations", type=int, default=15, help="for the /explain p50")
    parser.add_argument("--out", default="results/explain_load.json")
    args = parser.parse_args(argv)
    folder = resolve_sst2_dir(os.environ.get("SENTIMENT_DATA_DIR"))
    if folder is None:
        print("error: SST-2 not found; set SENTIMENT_DATA_DIR", file=sys.stderr)
        return 2
    texts = read_tsv(folder / "validation.tsv").texts
    long = sentences_of(texts, WORDS)
    scratch = Path(tempfile.mkdtemp(prefix="explain-load-"))
    server = ServerProcess.bentoml(own_bentoml_home(dict(os.environ), scratch), scratch / "log")
    try:
        server.wait_ready()
        report = measure(server.url, texts, long, args)
    finally:
        server.stop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"/explain p50 (one {WORDS}-word text) {report['p50_explain_20_words_ms']} ms = "
        f"{report['explain_vs_predict_p50']} x the one-client /predict p50 "
        f"({report['p50_one_client_predict_ms']} ms); 32-client /predict "
        f"{report['predict_texts_per_s_alone']} texts/s alone, "
        f"{report['predict_texts_per_s_with_explain']} with an explanation running "
        f"({report['throughput_change']:+.1%}); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
