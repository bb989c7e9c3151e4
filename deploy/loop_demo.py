"""`python -m deploy.loop_demo` (`make loop-demo`): the retraining loop, end to end, on one machine.

Every component is the real one, started as an operator starts it (README, "Closing the loop"):

1. `bentoml serve` over a small model (its own BENTOML_HOME and prediction store) takes Amazon
   review sentences, a domain SST-2 did not cover, and labels for some of them (`POST /feedback`,
   the labels of the reviews file);
2. Prometheus (Debian's, scraping every second) evaluates `SentimentDriftDetected` of
   docker/alerts.yml (its expression, with a `for` of seconds) and fires it;
3. Alertmanager (docker/alertmanager.yml, grouping of a second) calls the retrain listener
   (`python -m deploy.retrain_listener`) with the shared secret;
4. the listener runs `python -m training.retrain` on the small profile: SST-2 plus the feedback,
   a new version aliased `candidate` with the feedback in its lineage, evaluated and gated. The
   gate requires a shadow result (PROMOTION_MIN_SHADOW_AGREEMENT), which does not exist yet, so
   this first decision is a rejection;
5. `python -m training.import_model --alias candidate`, and the service restarted with
   `SENTIMENT_SHADOW_MODEL=alias:candidate`: more traffic and labels, the challenger scores all of
   it, `GET /monitoring` shows the agreement;
6. `python -m evaluation.promote --model candidate` decides again, now with the shadow result,
   and tags the version (`promotion.decision`, `promotion.checks`, `promotion.shadow`).

Each step is printed with its time and recorded in a timeline (results/loop_timeline.json).
tests/integration/test_loop.py drives the same `Loop` and asserts each step; the demo trains the
small model first (about 2 minutes on 2 CPU cores), in a work folder (outputs/loop-demo).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
ALERT = "SentimentDriftDetected"
JOB = "sentiment-api"
MODEL_NAME = "sentiment"
LABELS = {0: "negative", 1: "positive"}
PER_REQUEST = 50
STARTED = 'retrain_triggers_total{outcome="started"}'
RUN_RESULTS = ("succeeded", "failed", "skipped")  # retrain_runs_total{result}
READY = "/-/ready"  # Prometheus's and Alertmanager's readiness route

# The tests' tiny profile (tests/conftest.py): learns the direction of obvious sentences from
# 600 SST-2 sentences in about a minute on 2 CPU cores.
LOOP_PROFILE: dict[str, Any] = {
    "model": {"max_length": 64},
    "training": {
        "epochs": 1,
        "batch_size": 16,
        "learning_rate": 1.5e-4,
        "max_train_samples": 600,
        "max_eval_samples": 300,
    },
}


class LoopError(RuntimeError):
    """A step of the loop did not happen (within its deadline)."""


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A server subprocess in its own session, logging to a file, ready once `ready_path`
    answers 200 on its loopback port."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        port: int,
        *,
        cwd: Path = ROOT,
        ready_path: str = "/readyz",
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log_path = log_path
        self._log: IO[str] = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LoopError(f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise LoopError(f"{self.name} not ready after {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to its process group; SIGKILL to it and every descendant (BentoML's workers
        run in sessions of their own) when it has not ended within 30 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(psutil.NoSuchProcess):
                    family = [psutil.Process(self.proc.pid)]
                    family += family[0].children(recursive=True)
                    for proc in family:
                        with contextlib.suppress(psutil.NoSuchProcess):
                            proc.kill()
                    psutil.wait_procs(family, timeout=30)
                self.proc.wait(timeout=30)
        self._log.close()


def binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise LoopError(
        f"{names[0]} not found: install Debian's prometheus and prometheus-alertmanager"
    )


# --- the timeline -----------------------------------------------------------------------------


@dataclass
class Event:
    step: str
    at: float  # unix seconds
    detail: str


def clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


class Timeline:
    """What happened when: each mark is printed at once (`say`) and kept for the JSON file."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.say = say
        self.started = time.time()
        self.events: list[Event] = []

    def note(self, text: str) -> None:
        """A line for the person watching, not a step of the timeline."""
        now = time.time()
        self.say(f"[{clock(now)} {now - self.started:+7.1f} s]   {text}")

    def mark(self, step: str, detail: str, at: float | None = None) -> Event:
        event = Event(step, time.time() if at is None else at, detail)
        self.events.append(event)
        self.say(f"[{clock(event.at)} {event.at - self.started:+7.1f} s] {step}: {detail}")
        return event

    def at(self, step: str) -> float:
        return next(e.at for e in self.events if e.step == step)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": iso(self.started),
            "events": [
                {
                    "step": e.step,
                    "at": iso(e.at),
                    "since_start_s": round(e.at - self.started, 1),
                    "detail": e.detail,
                }
                for e in self.events
            ],
        }

    def table(self) -> str:
        lines = []
        previous = self.started
        for e in self.events:
            lines.append(
                f"{iso(e.at)[11:23]}  {e.at - self.started:+7.1f} s  "
                f"(+{e.at - previous:6.1f} s)  {e.step}"
            )
            previous = e.at
        return "\n".join(lines)


# --- configuration of Prometheus and Alertmanager ---------------------------------------------


def drift_rule(for_: str) -> dict[str, Any]:
    """SentimentDriftDetected of docker/alerts.yml, its expression as it is, with `for_`."""
    rule = next(
        r
        for group in yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"]
        for r in group["rules"]
        if r.get("alert") == ALERT
    )
    return {**rule, "for": for_}


def prometheus_config(target: str, rules: Path, alertmanager: str) -> dict[str, Any]:
    """docker/prometheus.yml scraping `target` every second, with `rules` and `alertmanager`."""
    config: dict[str, Any] = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(rules)]
    job = next(c for c in config["scrape_configs"] if c["job_name"] == JOB)
    job.pop("scrape_timeout", None)
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [job]
    (manager,) = config["alerting"]["alertmanagers"]
    manager["static_configs"] = [{"targets": [alertmanager]}]
    return config


def alertmanager_config(listener_url: str, secret_file: Path, slack_url_file: Path) -> Any:
    """docker/alertmanager.yml with the loop's listener and secret file, a Slack URL file
    (nothing listens there) and grouping of a second."""
    config: dict[str, Any] = yaml.safe_load((DOCKER / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        route["group_wait"] = "1s"
        route["group_interval"] = "1s"
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(slack_url_file)
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = listener_url
            hook["http_config"]["authorization"]["credentials_file"] = str(secret_file)
    return config


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def scrape_listener(url: str) -> dict[str, float]:
    """`name{labels}` -> value of the listener's /metrics."""
    out = {}
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def iso_seconds(value: str) -> float:
    """Prometheus's RFC 3339 times (nanoseconds) as unix seconds."""
    value = value.replace("Z", "+00:00")
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    return datetime.fromisoformat(value).timestamp()


# --- the loop ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopSetup:
    """What the loop starts from: an MLflow registry with the served model's version, a BentoML
    store holding it (`model_tag`), the small training profile, the data."""

    workdir: Path
    tracking_uri: str
    training_config: Path
    bentoml_home: Path
    model_tag: str
    sst2_dir: Path
    reviews_file: Path


@dataclass(frozen=True)
class LoopSettings:
    first_traffic: int = 300  # review sentences before the alert
    first_labelled: int = 120  # of which labelled
    shadow_traffic: int = 200  # other review sentences with the candidate in shadow
    shadow_labelled: int = 100  # of which labelled
    alert_for: str = "5s"  # the drift rule's `for` (docker/alerts.yml: 15m)
    drift_interval_s: float = 1.0  # MONITORING_DRIFT_INTERVAL_S
    min_shadow_agreement: float = 0.5  # PROMOTION_MIN_SHADOW_AGREEMENT
    min_shadow_labelled: int = 50  # PROMOTION_MIN_SHADOW_LABELLED
    eval_max_samples: int = 120  # EVAL_MAX_SAMPLES: evaluation and gate on a sample of SST-2
    alert_timeout_s: float = 120
    retrain_timeout_s: float = 600
    shadow_timeout_s: float = 180


@dataclass
class LoopResult:
    """What the steps found (the test asserts on it; the demo prints it)."""

    drift: dict[str, Any] = field(default_factory=dict)
    alert: dict[str, Any] = field(default_factory=dict)
    listener: dict[str, float] = field(default_factory=dict)
    before_version: str = ""
    candidate_version: str = ""
    candidate_params: dict[str, str] = field(default_factory=dict)
    retrain_report: dict[str, Any] = field(default_factory=dict)
    imported_tag: str = ""
    shadow: dict[str, Any] = field(default_factory=dict)
    gate_exit: int | None = None
    gate_output: str = ""
    gate_tags: dict[str, str] = field(default_factory=dict)


class Loop:
    """The loop's processes and steps. Call the steps in order (`run` does), then `close`."""

    def __init__(
        self,
        setup: LoopSetup,
        settings: LoopSettings | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        from sentiment.data import read_tsv

        self.setup = setup
        self.settings = settings or LoopSettings()
        self.timeline = timeline or Timeline()
        self.result = LoopResult()
        self.work = setup.workdir
        self.work.mkdir(parents=True, exist_ok=True)
        self.database = self.work / "feedback.sqlite3"
        self.retrain_json = self.work / "retrain.json"
        self.listener_logs = self.work / "listener-runs"
        reviews = read_tsv(setup.reviews_file)
        needed = self.settings.first_traffic + self.settings.shadow_traffic
        if len(reviews) < needed:
            raise LoopError(f"{setup.reviews_file}: {len(reviews)} sentences, {needed} needed")
        self.reviews = list(zip(reviews.texts, reviews.labels, strict=True))
        self.service: Process | None = None
        # Started by start_alerting.
        self.listener: Process
        self.alertmanager: Process
        self.prometheus: Process
        self.processes: list[Process] = []
        self._said: set[str] = set()

    # --- environments -------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """Every process's: the registry, the data, the store, the prediction store."""
        return {
            **os.environ,
            "MLFLOW_TRACKING_URI": self.setup.tracking_uri,
            "SENTIMENT_DATA_DIR": str(self.setup.sst2_dir),
            "BENTOML_HOME": str(self.setup.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "SENTIMENT_FEEDBACK_DATABASE": str(self.database),
            "CONFIG": str(self.setup.training_config),
            "RESULTS_DIR": str(self.work / "results"),
            "EVAL_MAX_SAMPLES": str(self.settings.eval_max_samples),
            "PROMOTION_MIN_SHADOW_AGREEMENT": str(self.settings.min_shadow_agreement),
            "PROMOTION_MIN_SHADOW_LABELLED": str(self.settings.min_shadow_labelled),
        }

    def service_env(self, shadow: bool) -> dict[str, str]:
        env = {
            **self.base_env(),
            # The served model stays the same tag after the candidate is imported.
            "SENTIMENT_MODEL_TAG": self.setup.model_tag,
            "SENTIMENT_MODEL_PROCESSES": "1",
            "SENTIMENT_EXPLAIN": "false",
            "MONITORING_DRIFT_INTERVAL_S": str(self.settings.drift_interval_s),
            "SENTIMENT_SHADOW_MODEL": "alias:candidate" if shadow else "",
        }
        if shadow:
            env["SENTIMENT_SHADOW_SAMPLE_RATE"] = "1.0"
        return env

    # --- processes ----------------------------------------------------------------------------

    def start(self, process: Process, timeout_s: float = 180) -> Process:
        self.processes.append(process)
        process.wait_ready(timeout_s)
        return process

    def start_service(self, shadow: bool = False) -> Process:
        port = self.service.port if self.service is not None else free_port()
        name = "service with the candidate in shadow" if shadow else "service"
        argv = [sys.executable, "-m", "bentoml", "serve", "service:SentimentAPI"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        log = self.work / ("service-shadow.log" if shadow else "service.log")
        self.service = self.start(Process(name, argv, self.service_env(shadow), log, port))
        return self.service

    def start_alerting(self) -> None:
        """The listener, Alertmanager and Prometheus, configured for this loop."""
        assert self.service is not None, "start the service first"
        secret = secrets.token_hex(24)
        listener_port, am_port, prom_port = free_port(), free_port(), free_port()
        retrain = [sys.executable, "-m", "training.retrain"]
        retrain += ["--config", str(self.setup.training_config), "--json", str(self.retrain_json)]
        env = {
            **self.base_env(),
            "RETRAIN_WEBHOOK_SECRET_FILE": str(write_secret(self.work / "listener_secret", secret)),
            "RETRAIN_COMMAND": shlex.join(retrain),
            "RETRAIN_COOLDOWN_S": "3600",
            "RETRAIN_LOG_DIR": str(self.listener_logs),
        }
        env.pop("RETRAIN_WEBHOOK_SECRET", None)
        argv = [sys.executable, "-m", "deploy.retrain_listener"]
        argv += ["--host", "127.0.0.1", "--port", str(listener_port)]
        # Its runs train in the work folder (outputs/training, relative to the profile).
        self.listener = self.start(
            Process(
                "retrain listener",
                argv,
                env,
                self.work / "listener.log",
                listener_port,
                cwd=self.work,
                ready_path="/health",
            )
        )

        slack_url = self.work / "slack_url"
        slack_url.write_text("http://127.0.0.1:9/no-slack-here")
        am_yml = self.work / "alertmanager.yml"
        am_yml.write_text(
            yaml.safe_dump(
                alertmanager_config(
                    f"{self.listener.url}/alertmanager",
                    write_secret(self.work / "alertmanager_secret", secret),
                    slack_url,
                )
            )
        )
        self.alertmanager = self.start(
            Process(
                "alertmanager",
                [
                    binary("prometheus-alertmanager", "alertmanager"),
                    f"--config.file={am_yml}",
                    f"--storage.path={self.work / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                dict(os.environ),
                self.work / "alertmanager.log",
                am_port,
                ready_path=READY,
            )
        )

        rules = self.work / "rules.yml"
        rule = drift_rule(self.settings.alert_for)
        rules.write_text(yaml.safe_dump({"groups": [{"name": "loop", "rules": [rule]}]}))
        prom_yml = self.work / "prometheus.yml"
        prom_yml.write_text(
            yaml.safe_dump(
                prometheus_config(f"127.0.0.1:{self.service.port}", rules, f"127.0.0.1:{am_port}")
            )
        )
        self.prometheus = self.start(
            Process(
                "prometheus",
                [
                    binary("prometheus"),
                    f"--config.file={prom_yml}",
                    f"--storage.tsdb.path={self.work / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                dict(os.environ),
                self.work / "prometheus.log",
                prom_port,
                ready_path=READY,
            )
        )
        self.timeline.note(
            f"Prometheus {self.prometheus.url} (rule {ALERT}: `{rule['expr'].strip()}` "
            f"for {rule['for']}), Alertmanager {self.alertmanager.url}, "
            f"retrain listener {self.listener.url}"
        )

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ({p.log_path}):\n{p.log_tail(2500)}" for p in self.processes
        )

    def wait(self, what: str, timeout_s: float, check: Callable[[], Any]) -> Any:
        """`check()` until it returns something truthy; LoopError with the logs after
        `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if found := check():
                    return found
            if time.monotonic() > deadline:
                raise LoopError(f"{what}: not within {timeout_s:.0f} s\n{self.logs()}")
            time.sleep(0.5)

    # --- traffic ------------------------------------------------------------------------------

    def monitoring(self) -> dict[str, Any]:
        assert self.service is not None
        answer = httpx.get(f"{self.service.url}/monitoring", timeout=60)
        answer.raise_for_status()
        summary: dict[str, Any] = answer.json()
        return summary

    def send(self, start: int, count: int, labelled: int) -> dict[str, int]:
        """Review sentences [start, start + count) to /predict, then the file's labels for
        `labelled` of them, spread evenly, to /feedback (by prediction id)."""
        assert self.service is not None
        rows = self.reviews[start : start + count]
        chosen = {round(i * count / labelled) for i in range(labelled)} if labelled else set()
        items = []
        with httpx.Client(base_url=self.service.url, timeout=120) as client:
            for first in range(0, len(rows), PER_REQUEST):
                batch = rows[first : first + PER_REQUEST]
                answer = client.post("/predict", json={"texts": [t for t, _ in batch]})
                if answer.status_code != 200:
                    raise LoopError(f"/predict answered {answer.status_code}: {answer.text}")
                for i, prediction in enumerate(answer.json()["predictions"]):
                    if first + i in chosen:
                        items.append({"id": prediction["id"], "label": LABELS[batch[i][1]]})
            answer = client.post("/feedback", json={"feedback": items})
            if answer.status_code != 200:
                raise LoopError(f"/feedback answered {answer.status_code}: {answer.text}")
        stored: dict[str, int] = answer.json()
        return {"predicted": len(rows), "labelled": len(items), **stored}

    # --- the steps ----------------------------------------------------------------------------

    def step_serve_and_send(self) -> dict[str, Any]:
        """1. The service, the alerting chain, review traffic with feedback; drift at the
        service."""
        from monitoring.config import load_monitoring_config
        from training.registry import Registry

        self.result.before_version = (
            Registry(self.setup.tracking_uri).resolve_alias(MODEL_NAME, "candidate").version
        )
        s = self.settings
        min_window = load_monitoring_config().drift.min_window
        if s.first_traffic < min_window:
            raise LoopError(f"first_traffic {s.first_traffic} < the drift min window {min_window}")
        service = self.start_service()
        self.timeline.mark(
            "service started", f"bentoml serve {self.setup.model_tag} on {service.url}"
        )
        self.start_alerting()
        sent = self.send(0, s.first_traffic, s.first_labelled)
        self.timeline.mark(
            "traffic sent",
            f"{sent['predicted']} Amazon review sentences predicted, {sent['accepted']} labels "
            f"accepted by /feedback",
        )
        drift = self.wait(
            "drift at the service",
            60,
            lambda: (d := self.monitoring())["drift_status"]["status"] == "drift" and d,
        )
        status = drift["drift_status"]
        fired = sorted(k for k, t in status.get("tests", {}).items() if t.get("drift_detected"))
        performance = drift.get("performance") or {}
        self.result.drift = drift
        self.timeline.mark(
            "drift detected",
            f"GET /monitoring: drift score {status['drift_score']:.3f} over "
            f"{status['window_size']} predictions ({', '.join(fired)}); accuracy estimated "
            f"{performance.get('estimated_accuracy')}, realized "
            f"{performance.get('realized_accuracy')} on {performance.get('labelled_count')} labels",
        )
        return {"sent": sent, "drift": drift}

    def step_alert(self) -> dict[str, Any]:
        """2. Prometheus fires the drift alert."""

        def firing() -> dict[str, Any] | None:
            answer = httpx.get(f"{self.prometheus.url}/api/v1/alerts", timeout=10).json()
            for alert in answer["data"]["alerts"]:
                if alert["labels"].get("alertname") == ALERT and alert["state"] == "firing":
                    found: dict[str, Any] = alert
                    return found
            return None

        alert = self.wait(f"{ALERT} firing in Prometheus", self.settings.alert_timeout_s, firing)
        self.result.alert = alert
        self.timeline.mark(
            "alert fired",
            f"Prometheus /api/v1/alerts: {ALERT} firing (pending since "
            f"{clock(iso_seconds(alert['activeAt']))}, for {self.settings.alert_for})",
        )
        return alert

    def step_listener(self) -> dict[str, float]:
        """3. Alertmanager calls the listener, which starts one retraining run."""
        started = STARTED
        metrics = self.wait(
            "the listener starting a run",
            60,
            lambda: (m := scrape_listener(self.listener.url)).get(started, 0) >= 1 and m,
        )
        self.result.listener = metrics
        self.timeline.mark(
            "retrain started",
            f"listener /metrics: {started} {metrics[started]:.0f}, retrain_running "
            f"{metrics['retrain_running']:.0f}",
            at=metrics["retrain_last_start_timestamp_seconds"],
        )
        return metrics

    def listener_started(self) -> float:
        """How many runs the listener has started (retrain_triggers_total{outcome="started"})."""
        return scrape_listener(self.listener.url).get(STARTED, 0)

    def say_run_lines(self) -> None:
        """The run's `retrain: ...` lines, each once, as they appear in its log."""
        for log in sorted(self.listener_logs.glob("retrain-*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("retrain: ") and line not in self._said:
                    self._said.add(line)
                    self.timeline.note(line)

    def step_retrain(self) -> dict[str, Any]:
        """4. The run registers a candidate with the feedback in its lineage; the gate, asking
        for a shadow result that does not exist yet, decides (rejects)."""
        from training.registry import Registry

        def finished() -> dict[str, float] | None:
            self.say_run_lines()
            metrics = scrape_listener(self.listener.url)
            done = sum(metrics.get(f'retrain_runs_total{{result="{r}"}}', 0) for r in RUN_RESULTS)
            return metrics if done >= 1 else None

        metrics = self.wait("the retraining run", self.settings.retrain_timeout_s, finished)
        self.say_run_lines()
        self.result.listener = metrics
        if metrics.get('retrain_runs_total{result="succeeded"}', 0) != 1:
            raise LoopError(f"the retraining run did not succeed: {metrics}\n{self.run_log()}")
        report: dict[str, Any] = json.loads(self.retrain_json.read_text())
        self.result.retrain_report = report
        registry = Registry(self.setup.tracking_uri)
        version = registry.resolve_alias(MODEL_NAME, "candidate")
        record = registry.run_record(version.run_id)
        self.result.candidate_version = version.version
        self.result.candidate_params = record.params
        self.timeline.mark(
            "candidate registered",
            f"MLflow: {MODEL_NAME} v{version.version} @candidate (was v"
            f"{self.result.before_version}), run {version.run_id[:8]}: feedback.texts="
            f"{record.params.get('feedback.texts')} (train {record.params.get('feedback.train')}, "
            f"held out {record.params.get('feedback.holdout')})",
            at=report.get("registered_at"),
        )
        self.timeline.mark(
            "retrain finished",
            f"exit {report['exit_code']}; first gate decision {report['decision']} "
            f"(promotion.reasons: {version.tags.get('promotion.reasons', '')[:160]})",
            at=report.get("decided_at"),
        )
        return report

    def run_log(self) -> str:
        logs = sorted(self.listener_logs.glob("retrain-*.log"))
        return logs[-1].read_text(errors="replace")[-4000:] if logs else "(no run log)"

    def run_module(self, args: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", *args],
            cwd=self.work,
            env=self.base_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def step_shadow(self) -> dict[str, Any]:
        """5. Import the candidate, restart the service with it in shadow, more traffic and
        labels; the agreement in GET /monitoring."""
        done = self.run_module(["training.import_model", "--alias", "candidate"], 600)
        if done.returncode != 0:
            raise LoopError(f"import_model failed: {done.stdout[-2000:]}{done.stderr[-3000:]}")
        tag = next(w for w in done.stdout.split() if w.startswith(f"{MODEL_NAME}:"))
        self.result.imported_tag = tag
        self.timeline.mark("candidate imported", f"{tag} in {self.setup.bentoml_home}")
        assert self.service is not None
        self.processes.remove(self.service)
        self.service.stop()
        self.start_service(shadow=True)
        self.timeline.mark(
            "shadow started",
            f"service restarted with SENTIMENT_SHADOW_MODEL=alias:candidate "
            f"(sample rate 1.0); serving {self.setup.model_tag}",
        )
        s = self.settings
        sent = self.send(s.first_traffic, s.shadow_traffic, s.shadow_labelled)
        self.timeline.note(
            f"{sent['predicted']} more review sentences, {sent['accepted']} labels accepted"
        )

        def compared() -> dict[str, Any] | None:
            shadow: dict[str, Any] | None = self.monitoring().get("shadow")
            if (
                shadow
                and shadow["compared"] >= sent["predicted"]
                and shadow["labelled_count"] >= sent["accepted"]
            ):
                return shadow
            return None

        shadow = self.wait("the shadow comparison", s.shadow_timeout_s, compared)
        self.result.shadow = shadow
        self.timeline.mark(
            "shadow agreement",
            f"GET /monitoring shadow: {shadow['tag']} agrees on {shadow['agreement']} of "
            f"{shadow['compared']}; on {shadow['labelled_count']} labelled: served "
            f"{shadow['champion_realized_accuracy']}, candidate "
            f"{shadow['challenger_realized_accuracy']}",
        )
        return shadow

    def step_gate(self) -> dict[str, str]:
        """6. The gate on the candidate, now with its shadow result; its decision in MLflow."""
        from training.registry import Registry

        done = self.run_module(
            ["evaluation.promote", "--model", self.result.candidate_version], 600
        )
        self.result.gate_exit = done.returncode
        self.result.gate_output = done.stdout
        if done.returncode not in (0, 1):
            raise LoopError(f"the gate failed: {done.stdout[-2000:]}{done.stderr[-3000:]}")
        for line in done.stdout.splitlines():
            self.timeline.note(f"gate: {line.strip()}")
        version = Registry(self.setup.tracking_uri).resolve(
            f"models:/{MODEL_NAME}/{self.result.candidate_version}"
        )
        tags = {k: v for k, v in version.tags.items() if k.startswith("promotion.")}
        self.result.gate_tags = tags
        shadow = json.loads(tags.get("promotion.shadow", "{}"))
        self.timeline.mark(
            "gate decision",
            f"MLflow v{version.version}: promotion.decision={tags.get('promotion.decision')} "
            f"(shadow: agreement {shadow.get('agreement')} over {shadow.get('compared')}); "
            f"promotion.reasons: {tags.get('promotion.reasons', '')[:200]}",
        )
        return tags

    def run(self) -> LoopResult:
        """Every step in order."""
        self.step_serve_and_send()
        self.step_alert()
        self.step_listener()
        self.step_retrain()
        self.step_shadow()
        self.step_gate()
        return self.result


def write_timeline(
    timeline: Timeline, result: LoopResult, path: Path, extra: Mapping[str, Any]
) -> None:
    """results/loop_timeline.json: the events and the main intervals."""
    steps = {e.step: e.at for e in timeline.events}

    def between(a: str, b: str) -> float | None:
        return round(steps[b] - steps[a], 1) if a in steps and b in steps else None

    document = {
        **timeline.as_dict(),
        "intervals_s": {
            "traffic sent -> alert fired": between("traffic sent", "alert fired"),
            "alert fired -> retrain started": between("alert fired", "retrain started"),
            "retrain started -> candidate registered": between(
                "retrain started", "candidate registered"
            ),
            "candidate registered -> shadow agreement": between(
                "candidate registered", "shadow agreement"
            ),
            "shadow agreement -> gate decision": between("shadow agreement", "gate decision"),
            "alert fired -> gate decision": between("alert fired", "gate decision"),
        },
        "candidate": {
            "before": result.before_version,
            "version": result.candidate_version,
            "feedback.texts": result.candidate_params.get("feedback.texts"),
            "imported_tag": result.imported_tag,
        },
        "shadow": result.shadow,
        "decision": result.gate_tags.get("promotion.decision"),
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")


# --- the demo ---------------------------------------------------------------------------------


def prepare(workdir: Path, timeline: Timeline) -> LoopSetup:
    """A fresh MLflow registry with the small profile's model and a BentoML store holding it."""
    from sentiment.data import resolve_reviews_file, resolve_sst2_dir

    sst2 = resolve_sst2_dir(os.environ.get("SENTIMENT_DATA_DIR"))
    if sst2 is None:
        raise LoopError("SST-2 TSV files not found: set SENTIMENT_DATA_DIR")
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    config = workdir / "loop_profile.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **LOOP_PROFILE,
                "data": {"data_dir": str(sst2)},
                "mlflow": {"tracking_uri": tracking_uri, "experiment_name": "loop-demo"},
            }
        )
    )
    home = workdir / "bentoml_home"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "SENTIMENT_DATA_DIR": str(sst2),
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "CONFIG": str(config),
    }
    timeline.note(f"training the small profile into {tracking_uri} (about 2 minutes)")
    for args in (["training.train", "--config", str(config)], ["training.import_model"]):
        done = subprocess.run(
            [sys.executable, "-m", *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if done.returncode != 0:
            raise LoopError(f"{' '.join(args)} failed: {done.stderr[-3000:]}")
    tag = next(w for w in done.stdout.split() if w.startswith(f"{MODEL_NAME}:"))
    timeline.note(f"served model: {tag}")
    return LoopSetup(workdir, tracking_uri, config, home, tag, sst2, resolve_reviews_file())


@contextlib.contextmanager
def running(loop: Loop) -> Iterator[Loop]:
    try:
        yield loop
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--workdir", default="outputs/loop-demo", help="emptied, then everything goes here"
    )
    parser.add_argument("--timeline", default="results/loop_timeline.json")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir).absolute()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    timeline = Timeline()
    settings = LoopSettings()
    try:
        setup = prepare(workdir, timeline)
        timeline.started = time.time()  # the loop's time 0: the service starting
        with running(Loop(setup, settings, timeline)) as loop:
            result = loop.run()
    except LoopError as exc:
        print(f"loop-demo failed: {exc}", file=sys.stderr)
        return 1
    write_timeline(timeline, result, Path(args.timeline), {"settings": asdict(settings)})
    print(f"\nTimeline ({args.timeline}):\n{timeline.table()}")
    print(f"Everything the processes wrote: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
