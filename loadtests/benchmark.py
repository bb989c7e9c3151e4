"""`make benchmark`: the platform, two baselines and its peers measured side by side in one run.

Peers (loadtests/peers/): what a user would pick instead on the same model, Ray Serve with
`@serve.batch` (torch and ONNX Runtime engines) and BentoML's own `batchable=True` API.

Writes results/benchmark.json and prints a table. Compare ratios, not absolute figures: these
machines are noisy, so every figure of one report comes from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.compute_limit import compute_limit
from loadtests.http_load import run_load
from loadtests.peers.common import describe_engine, peer_config
from loadtests.servers import ServerProcess, free_port, own_bentoml_home
from sentiment.config import ServingConfig, load_serving_config
from sentiment.data import read_tsv, resolve_sst2_dir
from sentiment.metrics import classification_metrics

# (clients, texts per request)
LOADS: list[tuple[int, int]] = [(1, 1), (8, 1), (32, 1), (64, 1), (32, 16)]
# The peers run fewer, to bound the benchmark's time: one client, and the two 32-client loads.
PEER_LOADS: list[tuple[int, int]] = [(1, 1), (32, 1), (32, 16)]
# Report key -> the Ray Serve peer's engine.
RAY_SERVE_PEERS = {"ray_serve_torch": "torch", "ray_serve_onnx": "onnx"}
BATCHABLE_PEER = "bentoml_batchable"
SERVERS = ("platform", "baseline_a", "baseline_b", *RAY_SERVE_PEERS, BATCHABLE_PEER)
CEILING_BATCHES = (1, 8, 16, 32, 64)


@dataclass(frozen=True)
class Settings:
    duration_s: float
    warmup_s: float
    overload_clients: int
    out: Path


class Ceiling:
    """The served model's own batch function without HTTP, in the two layouts the serving
    config offers: one process on every core, and the model processes the service starts.

    `sweep` finds the best layout and batch size with short passes; `sustained` then measures
    that choice over a window as long as each HTTP load's, so that the ratios compare windows
    of the same length (the best of many short passes on a noisy machine is biased upwards).
    The copies stay loaded between windows and use no CPU while the server is measured.
    """

    def __init__(self) -> None:
        from serving.replica import Replica

        self.served = load_serving_config()
        # One process on every core: torch's default threads, not the per-copy setting.
        self.cfg = self.served.with_model(num_threads=0, processes=0)
        self.replica = Replica.load(self.cfg)
        self.classifier = self.replica.classifier
        self.layouts: dict[str, tuple[Callable[[list[str]], Any], int]] = {
            "in_process": (self.replica.classify, 1)
        }
        self.pool: Any = None
        if self.served.model.processes > 0 and self.classifier.device.type == "cpu":
            from serving.replicas import start_replicas

            self.pool = start_replicas(self.served)
            self.layouts["model_processes"] = (self.pool.classify, self.pool.concurrency)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def sweep(self, texts: list[str], labels: list[int]) -> dict[str, Any]:
        """Texts/s per layout and batch size, the single-text forward time, and accuracy of
        the serving defaults against full precision."""
        import torch

        from serving.replica import Replica

        for _ in range(3):
            self.classifier.predict(texts[:64])
        rates = {name: batch_rates(fn, n, texts) for name, (fn, n) in self.layouts.items()}
        layout, per_batch = max(rates.items(), key=lambda kv: max(kv[1].values()))
        singles = []
        for text in texts[:100]:
            started = time.perf_counter()
            self.replica.classify([text])
            singles.append((time.perf_counter() - started) * 1000)
        result = {
            "layout": layout,
            "texts_per_s_by_layout_and_batch": rates,
            "best_batch": max(per_batch, key=lambda k: per_batch[k]),
            "sweep_best_texts_per_s": max(per_batch.values()),
            "single_forward_ms": round(statistics.median(singles), 2),
            "accuracy_served_defaults": served_accuracy(self.classifier, texts, labels),
            "device": self.classifier.device.type,
            "quantized": self.classifier.quantized,
            "torch_threads": torch.get_num_threads(),
        }
        if self.classifier.quantized:
            full = Replica(self.cfg.with_model(quantize=False), self.replica.bento_model)
            result["accuracy_fp32"] = served_accuracy(full.classifier, texts, labels)
            started = time.perf_counter()
            for i in range(0, 256, 32):
                full.classify(texts[i : i + 32])
            result["fp32_texts_per_s_batch32"] = round(256 / (time.perf_counter() - started), 2)
            del full
        return result

    def sustained(self, layout: str, batch: int, texts: list[str], seconds: float) -> float:
        fn, parallel = self.layouts[layout]
        return sustained_rate(fn, parallel, batch, texts, seconds)


def sustained_rate(
    fn: Callable[[list[str]], Any], parallel: int, batch: int, texts: list[str], seconds: float
) -> float:
    """Texts/s of `fn` called with `batch` texts at a time from `parallel` threads (one per
    model copy), kept busy for `seconds`; the threads walk through `texts` in turn."""
    from concurrent.futures import ThreadPoolExecutor

    stop_at = time.perf_counter() + seconds

    def worker(offset: int) -> int:
        done, i = 0, offset
        while time.perf_counter() < stop_at:
            fn([texts[(i + k) % len(texts)] for k in range(batch)])
            done += batch
            i += batch * parallel
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as threads:
        total = sum(threads.map(worker, [batch * p for p in range(parallel)]))
    return round(total / (time.perf_counter() - started), 2)


def served_accuracy(
    classifier: Any, texts: list[str], labels: list[int], batchings: int = 6, size: int = 32
) -> dict[str, float]:
    """SST-2 validation accuracy as served: texts in random batches of `size`, over several
    batchings. int8 scales activations per token, so batchings differ only where float
    rounding (summation order) tips a borderline text."""
    import random

    runs = []
    for seed in range(batchings):
        order = list(range(len(texts)))
        random.Random(seed).shuffle(order)
        preds = []
        for start in range(0, len(order), size):
            batch = classifier.predict([texts[i] for i in order[start : start + size]])
            preds += [1 if p.label == "positive" else 0 for p in batch]
        runs.append(classification_metrics([labels[i] for i in order], preds)["accuracy"])
    return {
        "mean": round(statistics.mean(runs), 4),
        "min": round(min(runs), 4),
        "max": round(max(runs), 4),
    }


def batch_rates(
    classify: Callable[[list[str]], Any], parallel: int, texts: list[str]
) -> dict[str, float]:
    """Texts/s of `classify` at each batch size, called from `parallel` threads at once (one
    per model process), best of two passes over the same sentences."""
    from concurrent.futures import ThreadPoolExecutor

    rates: dict[str, float] = {}
    with ThreadPoolExecutor(parallel) as threads:
        list(threads.map(classify, [texts[:16]] * parallel))  # warm every copy
        for size in CEILING_BATCHES:
            n = min(len(texts), max(128, size * 8))
            batches = [texts[i : i + size] for i in range(0, n, size)]
            best = 0.0
            for _ in range(2):
                started = time.perf_counter()
                list(threads.map(classify, batches))
                best = max(best, n / (time.perf_counter() - started))
            rates[str(size)] = round(best, 2)
    return rates


def run_loads(
    url: str,
    texts: list[str],
    settings: Settings,
    label: str,
    ceiling_window: Callable[[], float] | None = None,
    platform_window: Callable[[int, int], float] | None = None,
    loads: list[tuple[int, int]] | None = None,
    engine: str = "",
) -> list[dict[str, Any]]:
    """Each load of `loads` (default LOADS) against `url`, compared side by side with what it is
    divided by; every row says which `engine` served it.

    `ceiling_window`: a ceiling window before the first load and after every load, so each
    load is bracketed by the two ceiling windows nearest in time (`ceiling_bracket`).
    `platform_window`: the platform under a baseline's 32 single-text load, right before and
    right after it (`platform_bracket`).
    """
    rows: list[dict[str, Any]] = []
    before = ceiling_window() if ceiling_window is not None else None
    for clients, per_request in LOADS if loads is None else loads:
        pair = platform_window if (clients, per_request) == (32, 1) else None
        platform_before = pair(clients, per_request) if pair is not None else None
        result: dict[str, Any] = run_load(
            url, texts, clients, per_request, settings.duration_s, settings.warmup_s
        ).summary()
        result["engine"] = engine
        bracket = ""
        if ceiling_window is not None:
            after = ceiling_window()
            result["ceiling_bracket"] = [before, after]
            bracket = f"  ceiling before/after={before}/{after}"
            before = after
        if pair is not None:
            result["platform_bracket"] = [platform_before, pair(clients, per_request)]
            bracket = f"  platform before/after={'/'.join(map(str, result['platform_bracket']))}"
        print(
            f"  {label:<10} clients={clients:<3} texts/request={per_request:<3} "
            f"{result['texts_per_s']:>8} texts/s  p50={result['p50_ms']} ms  "
            f"statuses={result['statuses']} errors={result['errors']}{bracket}",
            flush=True,
        )
        rows.append(result)
    return rows


def vs_ceiling(row: dict[str, Any]) -> float:
    """A platform load's texts/s over the mean of the ceiling windows just before and after."""
    return ratio(row["texts_per_s"], statistics.mean(row["ceiling_bracket"]))


def platform_vs(row: dict[str, Any]) -> float:
    """The mean of the platform windows just before and after a baseline's load, over it."""
    return ratio(statistics.mean(row["platform_bracket"]), row["texts_per_s"])


def fastest_peer(report: dict[str, Any], keys: Any) -> tuple[str, float] | None:
    """Of the peers `keys` that ran, the one that did best at 32 single-text clients against the
    platform windows around it, with the platform's ratio to it (`platform_vs`); None if none
    ran. Each peer is compared with its own windows, so the machine's drift between the two
    runs does not pick the winner."""
    ratios = [(key, platform_vs(find(report[key], 32, 1))) for key in keys if report.get(key)]
    return min(ratios, key=lambda kv: kv[1]) if ratios else None


def peer_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    """`vs_ray_serve`: platform ÷ the faster Ray Serve variant at 32 × 1; `vs_bentoml_batchable`:
    platform ÷ BentoML's batchable API at 32 × 1; None where the peer did not run."""
    ray_serve = fastest_peer(report, RAY_SERVE_PEERS)
    batchable = fastest_peer(report, [BATCHABLE_PEER])
    return {
        "vs_ray_serve": ray_serve[1] if ray_serve else None,
        "vs_bentoml_batchable": batchable[1] if batchable else None,
    }


def find(rows: list[dict[str, Any]], clients: int, per_request: int) -> dict[str, Any]:
    return next(
        r for r in rows if r["clients"] == clients and r["texts_per_request"] == per_request
    )


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per measured load")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--out", default="results/benchmark.json")
    parser.add_argument(
        "--skip-seed", action="store_true", help="skip baseline A (the slowest part)"
    )
    parser.add_argument(
        "--skip-peers", action="store_true", help="skip the Ray Serve and BentoML batchable peers"
    )
    args = parser.parse_args(argv)
    cfg = load_serving_config()
    settings = Settings(args.duration, args.warmup, 4 * cfg.api.max_concurrency, Path(args.out))
    folder = resolve_sst2_dir(os.environ.get("SENTIMENT_DATA_DIR"))
    if folder is None:
        print("error: SST-2 not found; set SENTIMENT_DATA_DIR", file=sys.stderr)
        return 2
    data = read_tsv(folder / "validation.tsv")
    texts = data.texts
    logs = Path(tempfile.mkdtemp(prefix="benchmark-"))
    env = dict(os.environ)
    report: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "settings": {
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "loads": LOADS,
            "peer_loads": PEER_LOADS,
            "serving": cfg.model_dump(),
            "sentences": f"{folder / 'validation.tsv'} ({len(texts)})",
        },
    }

    print("ceiling: the served batch function in-process", flush=True)
    ceiling = Ceiling()
    server: ServerProcess | None = None
    try:
        report["ceiling"] = sweep = ceiling.sweep(texts, data.labels)
        sweep["engine"] = describe_engine(ceiling.cfg.model)
        classifier = ceiling.classifier
        report["compute_limit"] = compute_limit(
            classifier.model.config.to_dict(), classifier.token_counts(texts)
        )
        print(f"  compute limit: {report['compute_limit']}", flush=True)
        print(f"  {sweep}", flush=True)
        layout, batch = sweep["layout"], int(sweep["best_batch"])
        windows: list[float] = []

        def window() -> float:
            # The server idles meanwhile (no requests), as the copies idle during its loads.
            windows.append(ceiling.sustained(layout, batch, texts, settings.duration_s))
            return windows[-1]

        print("platform: bentoml serve, default settings; ceiling windows between", flush=True)
        server = ServerProcess.bentoml(env, logs / "platform.log")
        server.wait_ready()
        url = f"{server.url}/predict"
        run_load(url, texts, 8, 1, 3.0, 0.0)
        platform_engine = describe_engine(cfg.model)
        report["platform"] = run_loads(
            url, texts, settings, "platform", window, engine=platform_engine
        )
        ceiling.close()
        # This machine's speed drifts over minutes, so each platform load is compared with the
        # ceiling windows just before and after it; this is the mean of every window.
        sweep["sustained_texts_per_s"] = windows
        sweep["texts_per_s"] = round(statistics.mean(windows), 2)

        def platform_window(clients: int, per_request: int) -> float:
            # The baseline idles meanwhile, as the platform idles during the baseline's loads.
            result = run_load(url, texts, clients, per_request, settings.duration_s, 2.0)
            return float(result.summary()["texts_per_s"])  # type: ignore[arg-type]

        # 4 x the concurrency limit: clients that honour Retry-After (the ratio below), and
        # clients that come straight back, the worst case (reported, not in the ratio).
        for key, honour in (("overload", True), ("overload_no_backoff", False)):
            overload = run_load(
                url,
                texts,
                settings.overload_clients,
                1,
                settings.duration_s,
                2.0,
                honour_retry_after=honour,
            ).summary()
            report[key] = {**overload, "engine": platform_engine}
            print(f"  {key}   clients={settings.overload_clients}: {overload}", flush=True)

        engines = {
            "baseline_a": "torch fp32 per text",
            # loadtests/baselines.py: the platform's model settings on every core.
            "baseline_b": f"{describe_engine(cfg.with_model(num_threads=0).model)} per text",
        }
        baselines = [("unbatched", "baseline_b")]
        if not args.skip_seed:
            baselines.insert(0, ("seed", "baseline_a"))
        for kind, key in baselines:
            print(f"{key}: uvicorn, one forward per text ({kind})", flush=True)
            port = free_port()
            argv = [sys.executable, "-m", "uvicorn", "--factory", "loadtests.baselines:build_app"]
            argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            proc = ServerProcess(argv, {**env, "BASELINE": kind}, logs / f"{kind}.log", port)
            try:
                proc.wait_ready()
                report[key] = run_loads(
                    f"{proc.url}/predict",
                    texts,
                    settings,
                    key,
                    platform_window=platform_window,
                    engine=engines[key],
                )
            finally:
                proc.stop()
        if not args.skip_peers:
            not_run = report.setdefault("peers_not_run", {})
            peers = peers_to_run(cfg, env, logs, not_run)
            run_peers(report, peers, logs, texts, settings, platform_window)
    finally:
        ceiling.close()
        if server is not None:
            server.stop()

    report["ratios"] = {
        "vs_seed_architecture": platform_vs(find(report["baseline_a"], 32, 1))
        if "baseline_a" in report
        else None,
        "vs_unbatched": platform_vs(find(report["baseline_b"], 32, 1)),
        **peer_ratios(report),
        "single_text_vs_ceiling": vs_ceiling(find(report["platform"], 32, 1)),
        "multi_text_vs_ceiling": vs_ceiling(find(report["platform"], 32, 16)),
        # Accepted texts/s at 4 x the concurrency limit over those at 32 clients (target >= 0.8).
        "overload_vs_32_clients": round(
            float(report["overload"]["texts_per_s"])
            / float(find(report["platform"], 32, 1)["texts_per_s"]),
            3,
        ),
    }
    limit = report["compute_limit"].get("texts_per_s", {})
    if limit:
        # The served passes are int8 (ONNX Runtime or torch); fp32 shown for scale.
        ceiling_mean = float(report["ceiling"]["texts_per_s"])
        report["ratios"]["ceiling_vs_compute_limit"] = {
            kind: round(ceiling_mean / rate, 3) for kind, rate in limit.items()
        }
    report["p50_one_client_ms"] = find(report["platform"], 1, 1)["p50_ms"]
    report["single_forward_ms"] = report["ceiling"]["single_forward_ms"]
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"written {settings.out}; server logs in {logs}")
    return 0


@dataclass(frozen=True)
class Peer:
    key: str
    what: str
    engine: str
    argv: list[str]
    env: dict[str, str]
    port: int


def peers_to_run(
    cfg: ServingConfig, env: dict[str, str], logs: Path, not_run: dict[str, str]
) -> list[Peer]:
    """The peers, each on a free port; one that cannot run here goes to `not_run` with why."""
    peers: list[Peer] = []
    for key, engine in RAY_SERVE_PEERS.items():
        try:
            model = peer_config(engine, cfg).model
        except (RuntimeError, ValueError) as exc:
            not_run[key] = str(exc)
            continue
        port = free_port()
        argv = [sys.executable, "-m", "loadtests.peers.ray_serve"]
        argv += ["--engine", engine, "--port", str(port)]
        what = f"Ray Serve, @serve.batch, 2 replicas ({engine})"
        peers.append(Peer(key, what, describe_engine(model), argv, env, port))
    port = free_port()
    argv = [sys.executable, "-m", "bentoml", "serve"]
    argv += ["loadtests.peers.bento_batchable:BatchableSentiment"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    # A home of its own: a second server on the platform's would empty its Prometheus folder.
    peer_env = own_bentoml_home(env, logs / BATCHABLE_PEER)
    what = "bentoml serve, batchable=True API on the platform's model processes"
    peers.append(Peer(BATCHABLE_PEER, what, describe_engine(cfg.model), argv, peer_env, port))
    return peers


def run_peers(
    report: dict[str, Any],
    peers: list[Peer],
    logs: Path,
    texts: list[str],
    settings: Settings,
    platform_window: Callable[[int, int], float],
) -> None:
    """Each peer in turn, its PEER_LOADS bracketed by the platform's 32-client windows; a peer
    that does not start is noted under `peers_not_run` and the others still run."""
    not_run: dict[str, str] = report.setdefault("peers_not_run", {})
    for peer in peers:
        print(f"{peer.key}: {peer.what}", flush=True)
        started = time.perf_counter()
        proc = ServerProcess(peer.argv, peer.env, logs / f"{peer.key}.log", peer.port)
        try:
            try:
                proc.wait_ready()
            except (RuntimeError, TimeoutError) as exc:
                not_run[peer.key] = f"did not start: {exc}"[-2000:]
                print(f"  {peer.key} did not start; log: {proc.log_path}", flush=True)
                continue
            start_s = round(time.perf_counter() - started, 1)
            report.setdefault("peer_start_s", {})[peer.key] = start_s
            print(f"  ready in {start_s} s", flush=True)
            report[peer.key] = run_loads(
                f"{proc.url}/predict",
                texts,
                settings,
                peer.key,
                platform_window=platform_window,
                loads=PEER_LOADS,
                engine=peer.engine,
            )
        finally:
            proc.stop()


def print_table(report: dict[str, Any]) -> None:
    print()
    print(
        f"{'server':<18}{'engine':<34}{'clients':>8}{'texts/req':>10}{'texts/s':>10}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  non-200"
    )
    for key in SERVERS:
        for row in report.get(key, []):
            bad = {k: v for k, v in row["statuses"].items() if k != "200"}
            bad.update(row["errors"])
            print(
                f"{key:<18}{row.get('engine', ''):<34}{row['clients']:>8}"
                f"{row['texts_per_request']:>10}{row['texts_per_s']:>10}{row['p50_ms']:>9}"
                f"{row['p95_ms']:>9}{row['p99_ms']:>9}  {bad or '-'}"
            )
    for key, why in report.get("peers_not_run", {}).items():
        print(f"{key:<18}not run: {why.splitlines()[0] if why else ''}")
    c = report["ceiling"]
    print(
        f"ceiling ({c['layout']}, batch {c['best_batch']}): {c['texts_per_s']} texts/s, mean of "
        f"{c['sustained_texts_per_s']} (best short pass {c['sweep_best_texts_per_s']}); "
        f"single forward {c['single_forward_ms']} ms"
    )
    limit = report.get("compute_limit") or {}
    if limit:
        print(
            f"compute limit: {limit['texts_per_s']} texts/s ({limit['gflop_per_text']} GFLOP per "
            f"text, {limit['cores']} cores at {limit['ghz']} GHz; loadtests/compute_limit.py)"
        )
    print(f"ratios: {report['ratios']}")
    print(
        f"p50 one client {report['p50_one_client_ms']} ms vs single forward "
        f"{report['single_forward_ms']} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
