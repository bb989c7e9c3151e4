"""The canary controller of `make deploy CANARY=N`: watch both colours, then promote or roll back.

While the router sends N % of new connections to the new colour (the canary) and the rest to
the live one (the stable colour), the controller scrapes each colour on its own preview port
every `canary.check_interval_s` over `canary.window_s` (configs/deployment_config.yaml):

- `/metrics`: BentoML's `bentoml_service_request_total` and
  `bentoml_service_request_duration_seconds` by endpoint and status code. The counters are
  cumulative since the container started, so every figure is the difference from the first
  scrape (the smoke tests' requests do not count): requests and 5xx answers on
  `canary.endpoints`, p95 latency on `canary.latency_endpoints` from the histogram's buckets
  (interpolated within a bucket, as Prometheus' `histogram_quantile` does);
- `/monitoring`: `performance.estimated_accuracy` (null until the service has enough
  predictions: no evidence, never a failure).

`judge` (pure) turns the two colours' figures into continue / promote / rollback with the
configured thresholds; each check is one printed line and lands in the router's canary record,
which `make deploy-status` shows. The controller itself switches nothing: bluegreen.py applies
the verdict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from deploy.config import CanarySection

REQUESTS = "bentoml_service_request_total"
DURATION_BUCKET = "bentoml_service_request_duration_seconds_bucket"
# How many checks the record keeps (the count of all of them is kept too).
RECORDED_CHECKS = 40

Action = Literal["continue", "promote", "rollback", "aborted"]


class ScrapeError(RuntimeError):
    """A colour's /metrics did not answer usably."""


# --- what one scrape sees ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One colour's cumulative counters at one moment (since its container started)."""

    requests: float = 0.0
    errors: float = 0.0
    # (upper bound in s, cumulative count) ascending, the last one +Inf; latency endpoints only.
    buckets: tuple[tuple[float, float], ...] = ()
    estimated_accuracy: float | None = None


def parse_metrics(text: str, endpoints: Iterable[str], latency_endpoints: Iterable[str]) -> Sample:
    """The request counters and latency histogram of a Prometheus text exposition, summed
    over every series (service, worker, status) of the named endpoints."""
    wanted, timed = set(endpoints), set(latency_endpoints)
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ScrapeError(f"unparsable /metrics: {exc}") from None
    for family in families:
        for sample in family.samples:
            endpoint = sample.labels.get("endpoint", "")
            if sample.name == REQUESTS and endpoint in wanted:
                requests += sample.value
                if sample.labels.get("http_response_code", "").startswith("5"):
                    errors += sample.value
            elif sample.name == DURATION_BUCKET and endpoint in timed:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Sample(requests, errors, tuple(sorted(buckets.items())))


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram, as Prometheus' histogram_quantile computes
    it: linear within the bucket holding the rank; in the +Inf bucket, the highest finite
    bound. None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


# --- one colour over the window ----------------------------------------------------------------


@dataclass(frozen=True)
class WindowStats:
    requests: float
    errors: float
    latency_count: float
    p95_s: float | None
    estimated_accuracy: float | None

    @property
    def error_rate(self) -> float | None:
        return None if self.requests <= 0 else self.errors / self.requests

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": int(self.requests),
            "errors_5xx": int(self.errors),
            "p95_ms": None if self.p95_s is None else round(self.p95_s * 1000, 1),
            "estimated_accuracy": self.estimated_accuracy,
        }


def window(start: Sample, end: Sample) -> WindowStats:
    """What happened between two scrapes of one colour. Counters that went down mean the
    container restarted: then everything it counted since is the window."""
    restarted = end.requests < start.requests or _count(end.buckets) < _count(start.buckets)
    base = Sample() if restarted else start
    before = dict(base.buckets)
    buckets = tuple((bound, count - before.get(bound, 0.0)) for bound, count in end.buckets)
    return WindowStats(
        requests=end.requests - base.requests,
        errors=end.errors - base.errors,
        latency_count=_count(buckets),
        p95_s=quantile(0.95, buckets),
        estimated_accuracy=end.estimated_accuracy,
    )


def _count(buckets: Sequence[tuple[float, float]]) -> float:
    return buckets[-1][1] if buckets else 0.0


# --- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    name: str
    passed: bool | None  # None: no evidence yet
    detail: str

    @property
    def mark(self) -> str:
        return {True: "ok", False: "FAIL", None: "n/a"}[self.passed]


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    rules: tuple[RuleResult, ...] = ()


# Float noise must not turn an equal value into a failure: limits are inclusive.
_EPS = 1e-9


def error_rule(canary: WindowStats, cfg: CanarySection) -> RuleResult:
    if canary.requests < cfg.min_requests:
        return RuleResult(
            "5xx_rate", None, f"{canary.requests:.0f} of {cfg.min_requests} requests so far"
        )
    rate = canary.errors / canary.requests
    return RuleResult(
        "5xx_rate",
        rate <= cfg.max_5xx_rate + _EPS,
        f"{canary.errors:.0f}/{canary.requests:.0f} = {rate:.1%} 5xx (max {cfg.max_5xx_rate:.1%})",
    )


def latency_rule(canary: WindowStats, stable: WindowStats | None, cfg: CanarySection) -> RuleResult:
    if canary.latency_count < cfg.min_requests or canary.p95_s is None:
        return RuleResult("p95", None, f"{canary.latency_count:.0f} timed requests so far")
    if canary.p95_s * 1000 > cfg.max_p95_ms + _EPS:
        return RuleResult(
            "p95", False, f"{canary.p95_s * 1000:.0f} ms over the {cfg.max_p95_ms:.0f} ms ceiling"
        )
    if stable is None or stable.latency_count < cfg.min_requests or stable.p95_s is None:
        return RuleResult(
            "p95", None, f"{canary.p95_s * 1000:.0f} ms, no stable p95 to compare with"
        )
    limit = stable.p95_s * cfg.max_p95_ratio + cfg.p95_slack_ms / 1000
    return RuleResult(
        "p95",
        canary.p95_s <= limit + _EPS,
        f"{canary.p95_s * 1000:.0f} ms vs stable {stable.p95_s * 1000:.0f} ms "
        f"(max {limit * 1000:.0f} ms)",
    )


def accuracy_rule(
    canary: WindowStats, stable: WindowStats | None, cfg: CanarySection
) -> RuleResult:
    ours = canary.estimated_accuracy
    theirs = None if stable is None else stable.estimated_accuracy
    if ours is None or theirs is None:
        shown = "-" if ours is None else f"{ours:.3f}"
        other = "-" if theirs is None else f"{theirs:.3f}"
        return RuleResult("accuracy", None, f"estimated {shown} vs stable {other} (no evidence)")
    floor = theirs - cfg.max_accuracy_drop
    return RuleResult(
        "accuracy",
        ours >= floor - _EPS,
        f"estimated {ours:.3f} vs stable {theirs:.3f} (min {floor:.3f})",
    )


def judge(
    canary: WindowStats | None,
    stable: WindowStats | None,
    elapsed_s: float,
    failed_scrapes: int,
    cfg: CanarySection,
) -> Verdict:
    """The decision after one check (pure).

    - the canary's /metrics unanswered on `max_failed_scrapes` checks in a row: rollback;
    - any rule with evidence failing: rollback at once (the 5xx rule once the canary has
      `min_requests`, p95 once both colours have that many timed requests, accuracy once both
      have an estimate);
    - the window over: promote when the canary reached `min_requests` (rules without evidence
      do not block), else `insufficient_traffic`;
    - whatever the stable colour shows, a canary p95 over `max_p95_ms` fails the p95 rule;
    - otherwise continue.
    """
    if failed_scrapes >= cfg.max_failed_scrapes:
        return Verdict(
            "rollback", f"the canary's /metrics did not answer on {failed_scrapes} checks in a row"
        )
    if canary is None:
        if elapsed_s + _EPS >= cfg.window_s:
            return Verdict("rollback", "no sample of the canary in the whole window")
        return Verdict("continue", "no sample of the canary yet")
    rules = (
        error_rule(canary, cfg),
        latency_rule(canary, stable, cfg),
        accuracy_rule(canary, stable, cfg),
    )
    failed = [r for r in rules if r.passed is False]
    if failed:
        return Verdict("rollback", "; ".join(f"{r.name}: {r.detail}" for r in failed), rules)
    if elapsed_s + _EPS < cfg.window_s:
        return Verdict("continue", "within the window", rules)
    if canary.requests >= cfg.min_requests:
        summary = "; ".join(f"{r.name} {r.mark}: {r.detail}" for r in rules)
        return Verdict("promote", f"healthy over {cfg.window_s:.0f} s: {summary}", rules)
    reason = (
        f"only {canary.requests:.0f} requests reached the canary in {cfg.window_s:.0f} s "
        f"(min {cfg.min_requests}; insufficient_traffic: {cfg.insufficient_traffic})"
    )
    return Verdict(cfg.insufficient_traffic, reason, rules)


# --- scraping ----------------------------------------------------------------------------------


Scraper = Callable[[str], Sample]


def http_scraper(cfg: CanarySection, client: httpx.Client | None = None) -> Scraper:
    """GET url/metrics and url/monitoring; ScrapeError when /metrics does not answer 200."""
    http = client or httpx.Client(timeout=cfg.request_timeout_s)

    def scrape(url: str) -> Sample:
        try:
            response = http.get(f"{url}/metrics")
        except httpx.HTTPError as exc:
            raise ScrapeError(f"GET {url}/metrics: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ScrapeError(f"GET {url}/metrics: {response.status_code}")
        sample = parse_metrics(response.text, cfg.endpoints, cfg.latency_endpoints)
        return replace(sample, estimated_accuracy=estimated_accuracy(http, url))

    return scrape


def estimated_accuracy(client: httpx.Client, url: str) -> float | None:
    """`performance.estimated_accuracy` of GET url/monitoring; None when absent or unreadable."""
    try:
        body = client.get(f"{url}/monitoring").json()
    except (httpx.HTTPError, ValueError):
        return None
    performance = body.get("performance") if isinstance(body, Mapping) else None
    value = performance.get("estimated_accuracy") if isinstance(performance, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --- the controller ----------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class CanaryController:
    """Checks every `check_interval_s` until a verdict; at most `window_s` plus one check.

    `record` gets the whole record (a dict) after each check; `is_current` says whether the
    router still sends the canary its share (False: someone ended the canary, e.g.
    `make rollback-deploy`, and the controller stops with "aborted")."""

    cfg: CanarySection
    canary_url: str
    stable_url: str
    scrape: Scraper
    canary_name: str = "canary"
    stable_name: str = "stable"
    prefix: str = ""
    log: Callable[[str], None] = print
    record: Callable[[dict[str, Any]], None] = lambda _: None
    is_current: Callable[[], bool] = lambda: True
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    state: dict[str, Any] = field(default_factory=dict)

    def _try(self, url: str) -> tuple[Sample | None, str]:
        try:
            return self.scrape(url), ""
        except ScrapeError as exc:
            return None, str(exc)

    def run(self) -> Verdict:
        cfg = self.cfg
        self.state.update(
            {
                "state": "watching",
                "decision": None,
                "reason": None,
                "outcome": None,
                "checks_total": 0,
                "window_s": cfg.window_s,
                "check_interval_s": cfg.check_interval_s,
                "thresholds": {
                    "min_requests": cfg.min_requests,
                    "max_5xx_rate": cfg.max_5xx_rate,
                    "max_p95_ratio": cfg.max_p95_ratio,
                    "p95_slack_ms": cfg.p95_slack_ms,
                    "max_accuracy_drop": cfg.max_accuracy_drop,
                },
                "checks": [],
            }
        )
        started = self.clock()
        base_canary, _ = self._try(self.canary_url)
        base_stable, _ = self._try(self.stable_url)
        failed_scrapes = 0 if base_canary is not None else 1
        self.record(self.state)
        checks = 0
        while True:
            remaining = cfg.window_s - (self.clock() - started)
            self.sleep(max(0.0, min(cfg.check_interval_s, remaining)))
            checks += 1
            elapsed = self.clock() - started
            if not self.is_current():
                verdict = Verdict(
                    "aborted", "the router no longer sends the canary its share (rollback-deploy?)"
                )
                self._note(checks, elapsed, None, None, verdict)
                return verdict
            canary_now, why = self._try(self.canary_url)
            stable_now, _ = self._try(self.stable_url)
            if canary_now is None:
                failed_scrapes += 1
            else:
                failed_scrapes = 0
                base_canary = base_canary or canary_now
            if stable_now is not None:
                base_stable = base_stable or stable_now
            canary = (
                None
                if canary_now is None or base_canary is None
                else window(base_canary, canary_now)
            )
            stable = (
                None
                if stable_now is None or base_stable is None
                else window(base_stable, stable_now)
            )
            verdict = judge(canary, stable, elapsed, failed_scrapes, cfg)
            if canary_now is None and verdict.action == "continue":
                verdict = Verdict("continue", f"no sample of the canary: {why}")
            self._note(checks, elapsed, canary, stable, verdict)
            if verdict.action != "continue":
                return verdict

    def _note(
        self,
        n: int,
        elapsed: float,
        canary: WindowStats | None,
        stable: WindowStats | None,
        verdict: Verdict,
    ) -> None:
        line = self.line(n, elapsed, canary, stable, verdict)
        self.log(line)
        checks = [*self.state.get("checks", []), {"n": n, "at": now_iso(), "line": line}]
        self.state["checks"] = checks[-RECORDED_CHECKS:]
        self.state["checks_total"] = n
        self.state["last"] = {
            "canary": None if canary is None else canary.to_dict(),
            "stable": None if stable is None else stable.to_dict(),
        }
        if verdict.action != "continue":
            self.state.update(
                {"state": "decided", "decision": verdict.action, "reason": verdict.reason,
                 "decided_at": now_iso()}
            )  # fmt: skip
        self.record(self.state)

    def line(
        self,
        n: int,
        elapsed: float,
        canary: WindowStats | None,
        stable: WindowStats | None,
        verdict: Verdict,
    ) -> str:
        counts = ", ".join(
            f"{name} {'-' if stats is None else f'{stats.requests:.0f}'} requests"
            for name, stats in ((self.canary_name, canary), (self.stable_name, stable))
        )
        rules = "".join(f"; {r.name} {r.mark}: {r.detail}" for r in verdict.rules)
        if verdict.action != "continue":
            tail = f"{verdict.action.upper()}: {verdict.reason}"
        else:
            tail = "continue" if verdict.rules else f"continue ({verdict.reason})"
        return (
            f"{self.prefix}canary check {n} at {elapsed:.0f}/{self.cfg.window_s:.0f} s: "
            f"{counts}{rules} -> {tail}"
        )
