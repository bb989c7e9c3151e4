"""Blue-green switching of one environment over the Docker Protocol, and canary releases.

Per environment `E`: a network `sentiment-E`, containers `sentiment-E-blue` and
`sentiment-E-green` (each on its own preview port) and `sentiment-E-router`, which owns the
stable port and forwards each new connection to the colour its upstream file names. The
router's file is the only state: what it names is live, the other colour is the previous one.
During a canary release (`deploy(..., canary=N)`) the file also names the canary colour and
its share N % of new connections, and beside it the router keeps the canary controller's
record (deploy/canary.py), which `status()` shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy import router as router_script
from deploy.canary import CanaryController, Scraper, Verdict, http_scraper
from deploy.config import CanarySection, EnvironmentSection, SmokeSection
from deploy.docker import Docker, DockerError, RunSpec
from deploy.smoke import SmokeCheck, SmokeReport, run_smoke

COLOURS = ("blue", "green")
CONTAINER_PORT = 3000
ROUTER_SCRIPT = Path(__file__).with_name("router.py")
ROUTER_PATH_IN_CONTAINER = "/router.py"
# Seconds between moving a colour's new connections away and stopping it (see _retire).
RETIRE_GRACE_S = 3.0

SmokeRunner = Callable[..., SmokeReport]


def other(colour: str | None) -> str:
    """The colour a deploy goes to: the one not live (blue when nothing is)."""
    return "green" if colour == "blue" else "blue"


@dataclass(frozen=True)
class Names:
    environment: str

    @property
    def network(self) -> str:
        return f"sentiment-{self.environment}"

    @property
    def router(self) -> str:
        return f"sentiment-{self.environment}-router"

    def colour(self, colour: str) -> str:
        return f"sentiment-{self.environment}-{colour}"

    def colour_of(self, upstream: str) -> str | None:
        """'sentiment-E-green:3000' -> 'green'."""
        host = upstream.strip().rpartition(":")[0]
        for colour in COLOURS:
            if host == self.colour(colour):
                return colour
        return None


@dataclass
class DeployResult:
    ok: bool
    environment: str
    message: str
    live_before: str | None = None
    live_after: str | None = None
    image: str | None = None
    smoke: SmokeReport | None = None
    logs: str = ""
    steps: list[str] = field(default_factory=list)
    canary: Verdict | None = None


class BlueGreen:
    def __init__(
        self,
        docker: Docker,
        environment: str,
        env_cfg: EnvironmentSection,
        smoke_cfg: SmokeSection,
        *,
        smoke: SmokeRunner = run_smoke,
        host: str = "127.0.0.1",
        log: Callable[[str], None] = print,
        canary_cfg: CanarySection | None = None,
        scrape: Scraper | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.docker = docker
        self.names = Names(environment)
        self.env_cfg = env_cfg
        self.smoke_cfg = smoke_cfg
        self.smoke = smoke
        self.host = host
        self.log = log
        self.canary_cfg = canary_cfg or CanarySection()
        self.scrape = scrape
        self.clock = clock
        self.sleep = sleep

    # --- state --------------------------------------------------------------------------------

    def port_of(self, colour: str) -> int:
        return self.env_cfg.blue_port if colour == "blue" else self.env_cfg.green_port

    def url_of(self, colour: str) -> str:
        return f"http://{self.host}:{self.port_of(colour)}"

    @property
    def stable_url(self) -> str:
        return f"http://{self.host}:{self.env_cfg.port}"

    def _router(self, *args: str) -> tuple[int, str]:
        return self.docker.exec(self.names.router, ["python", ROUTER_PATH_IN_CONTAINER, *args])

    def live_colour(self) -> str | None:
        router = self.docker.inspect(self.names.router)
        if router is None or not router.running:
            return None
        code, out = self._router("get")
        return self.names.colour_of(out) if code == 0 else None

    def route_state(self) -> dict[str, Any] | None:
        """The router's state: {live, canary, share} as colours, and the canary record; None
        without a running router. A router of the first version answers only `get`."""
        router = self.docker.inspect(self.names.router)
        if router is None or not router.running:
            return None
        code, out = self._router("state")
        try:
            data = json.loads(out) if code == 0 else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            live = self.live_colour()
            return None if live is None else {"live": live, "canary": None, "share": 0.0}
        return {
            "live": self.names.colour_of(str(data.get("live") or "")),
            "canary": self.names.colour_of(str(data.get("canary") or "")),
            "share": data.get("share") or 0.0,
            "canary_run": data.get("canary_run"),
        }

    def status(self) -> dict[str, object]:
        state = self.route_state() or {}
        live = state.get("live")
        out: dict[str, object] = {"environment": self.names.environment, "live": live}
        run = state.get("canary_run")
        if state.get("canary") or run:
            out["canary"] = {
                "colour": state.get("canary"),
                "share": state.get("share", 0.0),
                "last_run": run,
            }
        for colour in COLOURS:
            info = self.docker.inspect(self.names.colour(colour))
            out[colour] = (
                None
                if info is None
                else {
                    "image": info.image,
                    "running": info.running,
                    "model_version": info.labels.get("sentiment.model_version", ""),
                    "url": self.url_of(colour),
                }
            )
        out["url"] = self.stable_url
        return out

    # --- steps --------------------------------------------------------------------------------

    def _alive(self, name: str) -> Callable[[], bool]:
        def alive() -> bool:
            info = self.docker.inspect(name)
            return info is not None and info.running

        return alive

    def _start_colour(self, colour: str, image: str, labels: Mapping[str, str]) -> None:
        name = self.names.colour(colour)
        self.docker.remove(name)
        self.docker.create(
            RunSpec(
                name=name,
                image=image,
                network=self.names.network,
                ports={self.port_of(colour): CONTAINER_PORT},
                env=self.env_cfg.env,
                labels={
                    "sentiment.environment": self.names.environment,
                    "sentiment.colour": colour,
                    "sentiment.deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    **labels,
                },
                cpus=self.env_cfg.cpus,
                memory=self.env_cfg.memory,
            )
        )
        self.docker.start(name)

    def _ensure_router(self, image: str) -> None:
        name = self.names.router
        info = self.docker.inspect(name)
        if info is not None and info.running:
            code, out = self._router("version")
            if code == 0 and out.strip() == router_script.VERSION:
                return
            # A router of an earlier version (no canary split): the new script, then a restart.
            # Its state file stays. The first version ignores SIGTERM as PID 1, so it serves on
            # until `docker stop` kills it (20 s); then about a second without a listener.
            self.log(f"[{self.names.environment}] upgrading the router to version "
                     f"{router_script.VERSION}")  # fmt: skip
            self.docker.copy_in(name, str(ROUTER_SCRIPT), ROUTER_PATH_IN_CONTAINER)
            self.docker.stop(name)
            self.docker.start(name)
            return
        if info is not None:
            self.docker.copy_in(name, str(ROUTER_SCRIPT), ROUTER_PATH_IN_CONTAINER)
            self.docker.start(name)
            return
        self.docker.create(
            RunSpec(
                name=name,
                image=image,
                network=self.names.network,
                ports={self.env_cfg.port: CONTAINER_PORT},
                public_ports=self.env_cfg.public,
                labels={
                    "sentiment.environment": self.names.environment,
                    "sentiment.role": "router",
                },
                entrypoint="python",
                command=(ROUTER_PATH_IN_CONTAINER, "serve", f"--listen=0.0.0.0:{CONTAINER_PORT}"),
            )
        )
        # Copied in before the start: the image need not contain this package.
        self.docker.copy_in(name, str(ROUTER_SCRIPT), ROUTER_PATH_IN_CONTAINER)
        self.docker.start(name)

    def _upstream(self, colour: str) -> str:
        return f"{self.names.colour(colour)}:{CONTAINER_PORT}"

    def _switch(self, colour: str) -> None:
        upstream = self._upstream(colour)
        code, out = self._router("set", upstream)
        if code != 0:
            raise DockerError(f"the router refused the switch to {upstream}: {out}")

    def _split(self, live: str, canary: str, share: float) -> None:
        code, out = self._router(
            "set", self._upstream(live), "--canary", self._upstream(canary), "--share", f"{share:g}"
        )
        if code != 0:
            raise DockerError(f"the router refused the canary split: {out}")

    def _record(self, record: Mapping[str, Any]) -> None:
        """The canary record beside the router's file; a failure to write it is only logged."""
        code, out = self._router("record", json.dumps(record, separators=(",", ":")))
        if code != 0:
            self.log(f"[{self.names.environment}] could not record the canary state: {out}")

    def _retire(self, colour: str) -> None:
        """A graceful stop (SIGTERM: the service answers what it holds, then exits) after the
        router stopped sending it connections, so no client sees a reset.

        The grace before SIGTERM covers connections the router opened just before the switch:
        still in the server's accept queue, a stop would reset them (one client in 2,638 saw
        that in the canary Docker test when the stop followed the switch at once)."""
        if self.docker.inspect(self.names.colour(colour)) is not None:
            self.sleep(RETIRE_GRACE_S)
            self.docker.stop(self.names.colour(colour))

    def _canary_is_current(self, canary: str) -> Callable[[], bool]:
        def current() -> bool:
            state = self.route_state()
            return state is not None and state.get("canary") == canary

        return current

    def _stable_health(self) -> SmokeCheck:
        quick = self.smoke_cfg.model_copy(update={"startup_timeout_s": 30.0})
        report = self.smoke(self.stable_url, quick, health_only=True)
        return report.checks[0]

    # --- commands -----------------------------------------------------------------------------

    def deploy(
        self, image: str, labels: Mapping[str, str] | None = None, canary: float | None = None
    ) -> DeployResult:
        """Start the other colour, smoke-test it, then switch: at once, or with `canary` (a
        percentage) first that share of new connections while the controller watches."""
        env = self.names.environment
        self.docker.ensure_network(self.names.network)
        live = self.live_colour()
        target = other(live)
        result = DeployResult(False, env, "", live_before=live, live_after=live, image=image)
        self.log(f"[{env}] live: {live or 'nothing'}; starting {target} from {image}")
        self._start_colour(target, image, labels or {})
        name = self.names.colour(target)
        report = self.smoke(self.url_of(target), self.smoke_cfg, is_alive=self._alive(name))
        result.smoke = report
        for check in report.checks:
            self.log(f"[{env}]   {'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}")
        if not report.passed:
            result.logs = self.docker.logs(name)
            self.docker.remove(name)
            serving = f"{live} keeps serving" if live else "nothing was serving"
            result.message = (
                f"smoke tests failed on {target} ({report.summary()}); "
                f"removed it, {serving} on {self.stable_url}"
            )
            return result
        self._ensure_router(image)
        if canary and live is not None:
            return self._canary(result, live, target, image, canary)
        if canary:
            self.log(f"[{env}] nothing is live: no stable colour to compare a canary with, "
                     f"switching all traffic to {target}")  # fmt: skip
        self._switch(target)
        check = self._stable_health()
        if not check.passed:
            if live is not None:
                self._switch(live)
            result.message = (
                f"{target} passed its smoke tests but {self.stable_url} did not answer through "
                f"the router ({check.detail}); traffic stays on {live or 'nothing'}"
            )
            return result
        result.ok = True
        result.live_after = target
        kept = f"; {live} kept running for rollback-deploy" if live else ""
        result.message = f"{env}: {self.stable_url} now served by {target} ({image}){kept}"
        return result

    def _canary(
        self, result: DeployResult, live: str, target: str, image: str, share: float
    ) -> DeployResult:
        env = self.names.environment
        self._split(live, target, share)
        check = self._stable_health()
        if not check.passed:
            self._switch(live)
            result.message = (
                f"{self.stable_url} did not answer through the router with {share:g} % on "
                f"{target} ({check.detail}); traffic stays on {live}"
            )
            return result
        cfg = self.canary_cfg
        self.log(
            f"[{env}] canary: {share:g} % of new connections to {target}, the rest to {live}; "
            f"watching both for {cfg.window_s:.0f} s, a check every {cfg.check_interval_s:.0f} s"
        )
        record: dict[str, Any] = {
            "colour": target,
            "stable": live,
            "share": share,
            "image": image,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        controller = CanaryController(
            cfg,
            self.url_of(target),
            self.url_of(live),
            self.scrape or http_scraper(cfg),
            canary_name=target,
            stable_name=live,
            prefix=f"[{env}] ",
            log=self.log,
            record=self._record,
            is_current=self._canary_is_current(target),
            clock=self.clock,
            sleep=self.sleep,
            state=record,
        )
        try:
            verdict = controller.run()
        except KeyboardInterrupt:
            verdict = Verdict("rollback", "interrupted by the operator")
            record.update({"state": "decided", "decision": "rollback", "reason": verdict.reason})
        result.canary = verdict
        if verdict.action == "aborted":
            result.message = f"{env}: the canary of {target} was ended: {verdict.reason}"
            return result
        if verdict.action == "promote":
            self._switch(target)
            after = self._stable_health()
            if after.passed:
                record["outcome"] = f"promoted: {target} serves 100 %"
                self._record(record)
                result.ok = True
                result.live_after = target
                result.message = (
                    f"{env}: canary {target} promoted after {record.get('checks_total', 0)} "
                    f"checks; {self.stable_url} now served by {target} ({image}); "
                    f"{live} kept running for rollback-deploy"
                )
                return result
            verdict = Verdict("rollback", f"no answer through the router after: {after.detail}")
            result.canary = verdict
        self._switch(live)
        self._retire(target)
        result.logs = self.docker.logs(self.names.colour(target))
        self.docker.remove(self.names.colour(target))
        record.update(
            {"state": "decided", "decision": "rollback", "reason": verdict.reason,
             "outcome": f"rolled back: {live} serves 100 %, {target} removed"}
        )  # fmt: skip
        self._record(record)
        result.message = (
            f"{env}: canary {target} rolled back ({verdict.reason}); removed it, "
            f"{live} serves all of {self.stable_url}"
        )
        return result

    def teardown(self) -> list[str]:
        """Remove the environment's containers (images stay); returns what was removed."""
        removed = []
        for name in (self.names.router, *(self.names.colour(c) for c in COLOURS)):
            if self.docker.inspect(name) is not None:
                self.docker.remove(name)
                removed.append(name)
        return removed

    def rollback(self) -> DeployResult:
        env = self.names.environment
        state = self.route_state()
        live = None if state is None else state.get("live")
        if live is None:
            return DeployResult(False, env, f"{env}: nothing is deployed, nothing to roll back")
        canary = state.get("canary") if state else None
        if canary:
            # A canary in progress (or one whose controller died): end it, the live colour
            # takes everything; the canary colour goes as a rolled-back canary does.
            self._switch(live)
            self._retire(canary)
            self.docker.remove(self.names.colour(canary))
            run = dict(state.get("canary_run") or {}) if state else {}
            run.update(
                {"state": "decided", "decision": "rollback", "reason": "make rollback-deploy",
                 "outcome": f"rolled back: {live} serves 100 %, {canary} removed"}
            )  # fmt: skip
            self._record(run)
            return DeployResult(
                True, env, f"{env}: ended the canary of {canary}; {live} serves all of "
                f"{self.stable_url}", live, live
            )  # fmt: skip
        previous = other(live)
        name = self.names.colour(previous)
        info = self.docker.inspect(name)
        if info is None:
            return DeployResult(
                False, env, f"{env}: no previous container ({name}) to roll back to", live, live
            )
        if not info.running:
            self.docker.start(name)
        report = self.smoke(self.url_of(previous), self.smoke_cfg, is_alive=self._alive(name))
        if not report.passed:
            return DeployResult(
                False,
                env,
                f"{env}: {previous} fails its smoke tests ({report.summary()}); "
                f"{live} keeps serving",
                live,
                live,
                info.image,
                report,
            )
        self._switch(previous)
        return DeployResult(
            True,
            env,
            f"{env}: rolled back {self.stable_url} from {live} to {previous} ({info.image})",
            live,
            previous,
            info.image,
            report,
        )
