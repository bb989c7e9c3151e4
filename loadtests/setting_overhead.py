"""What a setting costs a client: one environment variable off and on, alternating.

`make feedback-overhead` (the prediction store: `SENTIMENT_FEEDBACK=false` / `true`) and `make
shadow-overhead` (a challenger in shadow: `SENTIMENT_SHADOW_MODEL=` / `alias:candidate`, every
prediction sampled). Both work beside the request path (a queued record, a thread of the server
worker, a niced model process), so their cost is the queueing plus the share of the cores they
take. This measures it where a user would see it: `make benchmark`'s one-client p50 and its 32
single-text clients' texts/s (the latter after a 32-client warm-up load of its own), with the
server worker's CPU per request under those 32 clients (the model processes not counted; the
steadiest of the three where the machine's speed drifts by 10-20 %), against a real `bentoml
serve` started with the setting off, then on, alternating, so that the machine's drift over
minutes falls on both sides alike. Each server has a BENTOML_HOME (and so a feedback database)
of its own. Writes `--out` (JSON) and prints the figures.

`make engine-defaults` toggles the engine in this tree; `make vs-release` serves the "off" side
from an older commit's checkout (`--off-tree`, a git worktree run with this environment's
packages and model store), so a release is compared with the code it replaces, not only with
its own old setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from loadtests.http_load import run_load
from loadtests.servers import PROJECT_ROOT, ServerProcess, own_bentoml_home
from sentiment.data import read_tsv, resolve_sst2_dir

MANY = (32, 1)  # (clients, texts per request) of make benchmark's 32-client load


def cpu_seconds(proc: psutil.Process) -> float:
    """User plus system CPU time the process has used so far (its own, not its children's)."""
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(
    env: dict[str, str],
    log: Path,
    texts: list[str],
    duration_s: float,
    warmup_s: float,
    project: Path = PROJECT_ROOT,
) -> dict[str, Any]:
    """One server of the service in `project`: the one-client p50, the 32-client texts/s and
    the server worker's CPU per request under those 32 clients (the worker process's own CPU
    time over the load, divided by the requests answered 200 in it; the model processes are not
    counted). The 32-client warm-up runs as a load of its own before the measured one, so the
    CPU figure has no warm-up in it."""
    server = ServerProcess.bentoml(env, log, project=project)
    try:
        server.wait_ready()
        url = f"{server.url}/predict"
        worker = server.worker()
        run_load(url, texts, 8, 1, 3.0, 0.0)  # warm both model processes
        one = run_load(url, texts, 1, 1, duration_s, warmup_s).summary()
        clients, per = MANY
        run_load(url, texts, clients, per, warmup_s, 0.0)
        before = cpu_seconds(worker)
        loaded = run_load(url, texts, clients, per, duration_s, 0.0)
        worker_cpu_s = cpu_seconds(worker) - before
        many = loaded.summary()
    finally:
        server.stop()
    return {
        "p50_one_client_ms": one["p50_ms"],
        "texts_per_s_32_clients": many["texts_per_s"],
        "worker_cpu_ms_per_request": round(1000 * worker_cpu_s / max(1, loaded.ok), 3),
        "statuses": {"1": one["statuses"], "32": many["statuses"]},
    }


def relative(on: list[float], off: list[float]) -> float:
    """(mean on - mean off) / mean off."""
    return round(statistics.mean(on) / statistics.mean(off) - 1.0, 4)


def summarize(
    runs: list[dict[str, Any]],
    max_change: float | None,
    max_p50_ms: float | None,
) -> dict[str, Any]:
    by = {store: [r for r in runs if r["store"] == store] for store in ("off", "on")}
    p50 = {k: [r["p50_one_client_ms"] for r in v] for k, v in by.items()}
    rate = {k: [r["texts_per_s_32_clients"] for r in v] for k, v in by.items()}
    cpu = {k: [r["worker_cpu_ms_per_request"] for r in v] for k, v in by.items()}
    p50_change = relative(p50["on"], p50["off"])
    rate_change = relative(rate["on"], rate["off"])
    p50_added = round(statistics.mean(p50["on"]) - statistics.mean(p50["off"]), 2)
    within = True
    if max_change is not None:
        within = p50_change <= max_change and rate_change >= -max_change
    if max_p50_ms is not None:
        within = within and p50_added <= max_p50_ms
    return {
        "p50_one_client_ms": p50,
        "texts_per_s_32_clients": rate,
        "p50_change": p50_change,
        "p50_added_ms": p50_added,
        "throughput_change": rate_change,
        "worker_cpu_ms_per_request": cpu,
        "worker_cpu_change": relative(cpu["on"], cpu["off"]),
        "within_target": within,
    }


def _describe_tree(tree: Path) -> str:
    """The commit a checkout is at (`git describe`-like), or its path when git cannot say."""
    try:
        head = subprocess.run(
            ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(tree)
    return head[:120] or str(tree)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", required=True, help="the environment variable toggled")
    parser.add_argument("--off", required=True, help="its value for 'off'")
    parser.add_argument("--on", required=True, help="its value for 'on'")
    parser.add_argument("--extra", action="append", default=[], help="NAME=VALUE for both sides")
    parser.add_argument(
        "--max-change", type=float, default=None, help="relative bound, both figures"
    )
    parser.add_argument("--max-p50-ms", type=float, default=None, help="added one-client p50")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per load")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--off-tree",
        type=Path,
        default=None,
        help="serve the 'off' side from this checkout (an older release: git worktree add)",
    )
    parser.add_argument("--out", required=True)
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
            env.update(item.split("=", 1) for item in args.extra)
            env[args.env] = args.on if store == "on" else args.off
            project = args.off_tree if store == "off" and args.off_tree else PROJECT_ROOT
            result = measure(
                env, scratch / f"{name}.log", texts, args.duration, args.warmup, project
            )
            runs.append({"round": round_, "store": store, **result})
            print(
                f"round {round_} {args.env} {store:<3}  one-client p50 "
                f"{result['p50_one_client_ms']:>7} ms  32 clients "
                f"{result['texts_per_s_32_clients']:>8} texts/s, worker "
                f"{result['worker_cpu_ms_per_request']:>6} ms CPU/request",
                flush=True,
            )
    summary = summarize(runs, args.max_change, args.max_p50_ms)
    setting = {"env": args.env, "off": args.off, "on": args.on}
    if args.off_tree:
        setting["off_tree"] = _describe_tree(args.off_tree)
    report = {"setting": setting, "runs": runs, **summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{args.env} on vs off: one-client p50 {report['p50_change']:+.1%} "
        f"({report['p50_added_ms']:+} ms), 32-client throughput "
        f"{report['throughput_change']:+.1%}, server worker's CPU per request "
        f"{report['worker_cpu_change']:+.1%}; within target: {report['within_target']}; "
        f"wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
