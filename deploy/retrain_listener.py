"""`python -m deploy.retrain_listener` (`make retrain-listener`): an Alertmanager webhook
receiver that starts retraining (`python -m training.retrain`) when a configured alert fires.

- **Only Alertmanager, only with the secret.** `POST /alertmanager` takes Alertmanager's webhook
  JSON with `Authorization: Bearer <secret>` (alertmanager.yml's `http_config.authorization.
  credentials_file`). The secret comes from RETRAIN_WEBHOOK_SECRET or the file named by
  RETRAIN_WEBHOOK_SECRET_FILE, is compared in constant time and never logged, and is not passed
  on to the retraining process. A call without it, or with another, is answered 401 before its
  body is read; a body that is not the webhook's JSON (or larger than `max_body_bytes`) 400 or
  413. Neither changes anything.
- **What starts a run.** A call with at least one *firing* alert whose `alertname` is in
  RETRAIN_ALERTS. Resolved alerts and other names are ignored (counted). One run at a time: a
  trigger while one runs is `busy`; and none within `cooldown_s` of the last start (`cooldown`),
  kept across restarts of the listener (`state.json` in the log folder). Busy and cooldown are
  answered 200 too, so Alertmanager does not retry them.
- **What an operator sees.** One log line per trigger and per finished run; each run's output
  in `<log_dir>/retrain-<UTC time>.log`; `GET /metrics` (Prometheus):
  `retrain_triggers_total{outcome}` (started, busy, cooldown, ignored, unauthorized,
  bad_request), `retrain_alerts_received_total{status,matched}`, `retrain_runs_total{result}`
  (succeeded, failed, skipped: training/retrain.py's exit 3, too little feedback),
  `retrain_running`, `retrain_last_start_timestamp_seconds`,
  `retrain_last_run_duration_seconds`; `GET /health`.

Settings: environment variables only (the table beside ListenerSettings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sentiment.config import ConfigError, StrictModel, apply_env_overrides

logger = logging.getLogger("deploy.retrain_listener")

DEFAULT_ALERTS = (
    "SentimentDriftDetected",
    "SentimentEstimatedAccuracyLow",
    "SentimentRealizedAccuracyLow",
)
OUTCOMES = ("started", "busy", "cooldown", "ignored", "unauthorized", "bad_request")
RESULTS = ("succeeded", "failed", "skipped")
# training/retrain.py's exit status when there was too little feedback to train on.
EXIT_SKIPPED = 3
SECRET_ENV = "RETRAIN_WEBHOOK_SECRET"
SECRET_FILE_ENV = "RETRAIN_WEBHOOK_SECRET_FILE"
MIN_SECRET_CHARS = 16
STATE_FILE = "state.json"
# On shutdown, a run in progress gets this long after SIGTERM before SIGKILL.
STOP_GRACE_S = 10.0


class ListenerSettings(StrictModel):
    # RETRAIN_LISTENER_HOST, RETRAIN_LISTENER_PORT: where the listener listens.
    host: str = "127.0.0.1"
    port: int = Field(9095, ge=1, le=65535)
    # RETRAIN_ALERTS: comma-separated alert names whose firing starts a run.
    alerts: list[str] = Field(default_factory=lambda: list(DEFAULT_ALERTS), min_length=1)
    # RETRAIN_COOLDOWN_S: no second run within this many seconds of the last start.
    cooldown_s: float = Field(3600.0, ge=0)
    # RETRAIN_COMMAND: the command run (shell words, not a shell); empty = this interpreter
    # with `-m training.retrain` (what `make retrain` runs).
    command: list[str] = Field(default_factory=list)
    # RETRAIN_LOG_DIR: each run's output (retrain-<time>.log) and state.json.
    log_dir: str = "outputs/retrain-listener"
    # RETRAIN_MAX_BODY_BYTES: a larger webhook body is refused (413).
    max_body_bytes: int = Field(1 << 20, ge=1024)
    # RETRAIN_RUN_TIMEOUT_S: a run still going after this is killed (and counted failed).
    run_timeout_s: float = Field(6 * 3600.0, gt=0)

    @field_validator("alerts", mode="before")
    @classmethod
    def comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("command", mode="before")
    @classmethod
    def shell_words(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    def argv(self) -> list[str]:
        return self.command or [sys.executable, "-m", "training.retrain"]


LISTENER_ENV: dict[str, tuple[str, ...]] = {
    "RETRAIN_LISTENER_HOST": ("host",),
    "RETRAIN_LISTENER_PORT": ("port",),
    "RETRAIN_ALERTS": ("alerts",),
    "RETRAIN_COOLDOWN_S": ("cooldown_s",),
    "RETRAIN_COMMAND": ("command",),
    "RETRAIN_LOG_DIR": ("log_dir",),
    "RETRAIN_MAX_BODY_BYTES": ("max_body_bytes",),
    "RETRAIN_RUN_TIMEOUT_S": ("run_timeout_s",),
}


def load_settings(env: Mapping[str, str] | None = None) -> ListenerSettings:
    env = os.environ if env is None else env
    try:
        return ListenerSettings.model_validate(apply_env_overrides({}, LISTENER_ENV, env))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"retrain listener: {where}: {first['msg']}") from None


def load_secret(env: Mapping[str, str] | None = None) -> SecretStr:
    """The shared secret from RETRAIN_WEBHOOK_SECRET, else the file RETRAIN_WEBHOOK_SECRET_FILE
    names (surrounding whitespace dropped). Errors name the source, never the value."""
    env = os.environ if env is None else env
    value, source = env.get(SECRET_ENV, "").strip(), SECRET_ENV
    if not value and (path := env.get(SECRET_FILE_ENV, "").strip()):
        source = SECRET_FILE_ENV
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{SECRET_FILE_ENV}: cannot read the file ({exc.strerror})") from None
    if not value:
        raise ConfigError(f"no webhook secret: set {SECRET_ENV} or {SECRET_FILE_ENV}")
    if len(value) < MIN_SECRET_CHARS or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError(
            f"{source}: the secret must be at least {MIN_SECRET_CHARS} printable characters "
            "without spaces"
        )
    return SecretStr(value)


# --- the webhook's body -----------------------------------------------------------------------


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]


class WebhookBody(BaseModel):
    """Alertmanager's webhook JSON (version 4); only what the trigger reads is checked."""

    model_config = ConfigDict(extra="ignore")

    alerts: list[WebhookAlert]


# --- metrics ----------------------------------------------------------------------------------


class ListenerMetrics:
    """The listener's own Prometheus registry (not the process-wide one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.triggers = Counter(
            "retrain_triggers_total",
            "Webhook calls by what they did",
            ["outcome"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "retrain_alerts_received_total",
            "Alerts in authenticated webhook calls, by status and whether their name is configured",
            ["status", "matched"],
            registry=self.registry,
        )
        self.runs = Counter(
            "retrain_runs_total",
            "Finished retraining runs by result",
            ["result"],
            registry=self.registry,
        )
        self.running = Gauge(
            "retrain_running", "1 while a run is in progress", registry=self.registry
        )
        self.last_start = Gauge(
            "retrain_last_start_timestamp_seconds",
            "Unix time of the last start (0: none)",
            registry=self.registry,
        )
        self.last_duration = Gauge(
            "retrain_last_run_duration_seconds",
            "How long the last finished run took",
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.triggers.labels(outcome)
        for result in RESULTS:
            self.runs.labels(result)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# --- the trigger ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerOutcome:
    outcome: str  # one of OUTCOMES
    detail: str


def result_of(exit_code: int) -> str:
    if exit_code == 0:
        return "succeeded"
    return "skipped" if exit_code == EXIT_SKIPPED else "failed"


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The run's environment: ours without the webhook secret."""
    return {k: v for k, v in env.items() if k not in (SECRET_ENV, SECRET_FILE_ENV)}


class RetrainTrigger:
    """Starts the retraining command: one run at a time, none within the cool-down of the last
    start. Thread-safe; `clock` is wall time (the cool-down survives a restart)."""

    def __init__(
        self,
        settings: ListenerSettings,
        metrics: ListenerMetrics,
        *,
        clock: Callable[[], float] = time.time,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.env = child_env(os.environ if env is None else env)
        self.names = frozenset(settings.alerts)
        self.log_dir = Path(settings.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._waiter: threading.Thread | None = None
        self._stopping = False
        self.last_start: float | None = self._read_state()
        self.last_log: Path | None = None
        self.last_result: str | None = None
        if self.last_start is not None:
            metrics.last_start.set(self.last_start)

    # --- state --------------------------------------------------------------------------------

    def _read_state(self) -> float | None:
        try:
            value = json.loads((self.log_dir / STATE_FILE).read_text(encoding="utf-8"))
            return float(value["last_start"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_state(self) -> None:
        state = {"last_start": self.last_start, "last_log": str(self.last_log or "")}
        path = self.log_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(path)

    @property
    def running(self) -> bool:
        return self._proc is not None

    def cooldown_left(self) -> float:
        if self.last_start is None:
            return 0.0
        return max(0.0, self.settings.cooldown_s - (self.clock() - self.last_start))

    # --- triggers -----------------------------------------------------------------------------

    def handle(self, body: WebhookBody) -> TriggerOutcome:
        matched = []
        for alert in body.alerts:
            name = alert.labels.get("alertname", "")
            hit = alert.status == "firing" and name in self.names
            self.metrics.alerts.labels(
                alert.status, "true" if name in self.names else "false"
            ).inc()
            if hit:
                matched.append(name)
        names = ", ".join(sorted(set(matched)))
        if not matched:
            seen = ", ".join(
                f"{a.labels.get('alertname', '?')} ({a.status})" for a in body.alerts[:10]
            )
            return self.record("ignored", f"no firing alert of {sorted(self.names)} in: {seen}")
        with self._lock:
            if self._stopping:
                return self.record("busy", f"{names}: the listener is stopping")
            if self._proc is not None:
                return self.record("busy", f"{names}: a run is in progress ({self.last_log})")
            left = self.cooldown_left()
            if left > 0:
                return self.record(
                    "cooldown",
                    f"{names}: {left:.0f} s of the {self.settings.cooldown_s:.0f} s cool-down left",
                )
            return self.record("started", self._start(names))

    def record(self, outcome: str, detail: str) -> TriggerOutcome:
        self.metrics.triggers.labels(outcome).inc()
        logger.info("retrain trigger %s: %s", outcome, detail)
        return TriggerOutcome(outcome, detail)

    def _start(self, names: str) -> str:
        """Under the lock: start the command, its waiter thread, record the start."""
        now = self.clock()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        log_path = self.log_dir / f"retrain-{stamp}.log"
        self.last_start, self.last_log = now, log_path
        self.metrics.last_start.set(now)
        self._write_state()
        log = open(log_path, "ab")  # noqa: SIM115 - the waiter thread closes it
        log.write(f"# started {stamp} by {names}: {shlex.join(self.settings.argv())}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                self.settings.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            log.close()
            self._finished("failed", 0.0, f"could not start: {exc.strerror or exc}")
            return f"{names}: could not start {self.settings.argv()[0]!r} ({exc.strerror or exc})"
        self._proc = proc
        self.metrics.running.set(1)
        self._waiter = threading.Thread(
            target=self._wait, args=(proc, log, time.monotonic()), name="retrain-run", daemon=True
        )
        self._waiter.start()
        return f"{names}: run started (pid {proc.pid}), output in {log_path}"

    def _wait(self, proc: subprocess.Popen[bytes], log: IO[bytes], started: float) -> None:
        try:
            code = proc.wait(timeout=self.settings.run_timeout_s)
            note = f"exit {code}"
        except subprocess.TimeoutExpired:
            stop_group(proc)
            code = -1
            note = f"killed after the {self.settings.run_timeout_s:.0f} s run timeout"
        finally:
            log.close()
        took = time.monotonic() - started
        with self._lock:
            self._proc = None
            self.metrics.running.set(0)
            self._finished(result_of(code) if code >= 0 else "failed", took, note)

    def _finished(self, result: str, took: float, note: str) -> None:
        self.last_result = result
        self.metrics.runs.labels(result).inc()
        self.metrics.last_duration.set(took)
        logger.info("retrain run %s: %s after %.0f s (log %s)", result, note, took, self.last_log)

    def close(self) -> None:
        """Stops a run in progress (SIGTERM to its process group, then SIGKILL)."""
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is not None:
            logger.info("stopping the retrain run in progress (pid %d)", proc.pid)
            stop_group(proc)
        if self._waiter is not None:
            self._waiter.join(timeout=STOP_GRACE_S + 5)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "running": self.running,
            "last_start": self.last_start,
            "last_result": self.last_result,
            "cooldown_left_s": round(self.cooldown_left(), 1),
            "alerts": sorted(self.names),
        }


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- HTTP -------------------------------------------------------------------------------------


def bearer_token(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The token of the (single) `Authorization: Bearer ...` header, as raw bytes."""
    values = [v for k, v in headers if k.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


class BodyTooLargeError(ValueError):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLargeError(f"Content-Length {declared[:20]!r} over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: ListenerSettings, secret: SecretStr, trigger: RetrainTrigger) -> Starlette:
    expected = secret.get_secret_value().encode("utf-8")
    metrics = trigger.metrics

    async def alertmanager(request: Request) -> Response:
        token = bearer_token(request.scope["headers"])
        if token is None or not hmac.compare_digest(token, expected):
            client = request.client.host if request.client else "?"
            trigger.record("unauthorized", f"a call from {client} without the right secret")
            return JSONResponse(
                {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            raw = await read_body(request, settings.max_body_bytes)
        except BodyTooLargeError as exc:
            trigger.record("bad_request", str(exc))
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            body = WebhookBody.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            trigger.record(
                "bad_request", f"not Alertmanager's webhook JSON: {where}: {first['msg']}"
            )
            return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=400)
        done = await asyncio.to_thread(trigger.handle, body)
        return JSONResponse({"outcome": done.outcome, "detail": done.detail})

    async def metrics_route(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> Response:
        return JSONResponse(trigger.health())

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(trigger.close)

    return Starlette(
        routes=[
            Route("/alertmanager", alertmanager, methods=["POST"]),
            Route("/metrics", metrics_route, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", help="listen address (default: RETRAIN_LISTENER_HOST)")
    parser.add_argument("--port", type=int, help="port (default: RETRAIN_LISTENER_PORT, 9095)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings()
        secret = load_secret()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Counters' `_created` series say nothing here (the process start is enough).
    disable_created_metrics()
    host = args.host or settings.host
    port = args.port or settings.port
    trigger = RetrainTrigger(settings, ListenerMetrics())
    app = create_app(settings, secret, trigger)
    logger.info(
        "retrain listener on http://%s:%d/alertmanager: alerts %s, cool-down %.0f s, command %s, "
        "run logs in %s",
        host,
        port,
        ", ".join(settings.alerts),
        settings.cooldown_s,
        shlex.join(settings.argv()),
        Path(settings.log_dir).resolve(),
    )
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
