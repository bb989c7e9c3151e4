"""Blue-green switching of one environment over the Docker Protocol.

Per environment `E`: a network `sentiment-E`, containers `sentiment-E-blue` and
`sentiment-E-green` (each on its own preview port) and `sentiment-E-router`, which owns the
stable port and forwards each new connection to the colour its upstream file names. The
router's file is the only state: what it names is live, the other colour is the previous one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deploy.config import EnvironmentSection, SmokeSection
from deploy.docker import Docker, DockerError, RunSpec
from deploy.smoke import SmokeCheck, SmokeReport, run_smoke

COLOURS = ("blue", "green")
CONTAINER_PORT = 3000
ROUTER_SCRIPT = Path(__file__).with_name("router.py")
ROUTER_PATH_IN_CONTAINER = "/router.py"

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
    ) -> None:
        self.docker = docker
        self.names = Names(environment)
        self.env_cfg = env_cfg
        self.smoke_cfg = smoke_cfg
        self.smoke = smoke
        self.host = host
        self.log = log

    # --- state --------------------------------------------------------------------------------

    def port_of(self, colour: str) -> int:
        return self.env_cfg.blue_port if colour == "blue" else self.env_cfg.green_port

    def url_of(self, colour: str) -> str:
        return f"http://{self.host}:{self.port_of(colour)}"

    @property
    def stable_url(self) -> str:
        return f"http://{self.host}:{self.env_cfg.port}"

    def live_colour(self) -> str | None:
        router = self.docker.inspect(self.names.router)
        if router is None or not router.running:
            return None
        code, out = self.docker.exec(self.names.router, ["python", ROUTER_PATH_IN_CONTAINER, "get"])
        return self.names.colour_of(out) if code == 0 else None

    def status(self) -> dict[str, object]:
        live = self.live_colour()
        out: dict[str, object] = {"environment": self.names.environment, "live": live}
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
            return
        if info is not None:
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

    def _switch(self, colour: str) -> None:
        upstream = f"{self.names.colour(colour)}:{CONTAINER_PORT}"
        code, out = self.docker.exec(
            self.names.router, ["python", ROUTER_PATH_IN_CONTAINER, "set", upstream]
        )
        if code != 0:
            raise DockerError(f"the router refused the switch to {upstream}: {out}")

    def _stable_health(self) -> SmokeCheck:
        quick = self.smoke_cfg.model_copy(update={"startup_timeout_s": 30.0})
        report = self.smoke(self.stable_url, quick, health_only=True)
        return report.checks[0]

    # --- commands -----------------------------------------------------------------------------

    def deploy(self, image: str, labels: Mapping[str, str] | None = None) -> DeployResult:
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
        live = self.live_colour()
        if live is None:
            return DeployResult(False, env, f"{env}: nothing is deployed, nothing to roll back")
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
