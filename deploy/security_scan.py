"""`make security-scan` (scripts/security_scan.sh): three checks before an image ships.

- bandit on the sources with scripts/bandit.yaml: fails on any medium or high finding, and on
  a `# nosec` that names no test or has no comment saying why;
- pip-audit on the pinned dependencies (`pip freeze` of this environment, without the
  editable project itself). Its advisory service is out of reach on machines without internet:
  that is one line, and a pass only with SECURITY_SCAN_OFFLINE_OK=1;
- the built image's user (`docker image inspect`) is not root. Without a Docker engine or the
  image that is one line, and a failure only with SECURITY_SCAN_REQUIRE_IMAGE=1.

Writes into --out (results/security/): bandit.json, requirements.txt (what pip-audit was given),
pip_audit.json (its answer, when there was one) and summary.txt (the lines printed). Exits 0
only when every check that ran passed.

`image_user` and `is_root_user` are also what a container test can assert with.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (
    "service.py",
    "sentiment",
    "serving",
    "monitoring",
    "ui",
    "training",
    "evaluation",
    "deploy",
    "loadtests",
)
BANDIT_CONFIG = ROOT / "scripts" / "bandit.yaml"
FAIL_SEVERITIES = ("MEDIUM", "HIGH")
DEFAULT_IMAGE = "sentiment-api:latest"
CHECKS = ("bandit", "pip-audit", "image")
OFFLINE_OK_ENV = "SECURITY_SCAN_OFFLINE_OK"
REQUIRE_IMAGE_ENV = "SECURITY_SCAN_REQUIRE_IMAGE"

# What a traceback of pip-audit's HTTP client says when the advisory service cannot be reached.
_UNREACHABLE_MARKERS = (
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
    "NameResolutionError",
    "Max retries exceeded",
    "Failed to resolve",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "timed out",
)
_NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)", re.IGNORECASE)
_NOSEC_IDS = re.compile(r"^[\s:]*B\d{3}(\s*,\s*B\d{3})*(?P<after>.*)$")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    line: str


# --- bandit -----------------------------------------------------------------------------------


def severity_counts(report: Mapping[str, Any]) -> dict[str, int]:
    """Findings by severity from bandit's JSON report (every level, also those not failing)."""
    totals = report.get("metrics", {}).get("_totals", {})
    return {
        level: int(totals.get(f"SEVERITY.{level.upper()}", 0))
        for level in ("high", "medium", "low")
    }


def failing_findings(report: Mapping[str, Any]) -> list[str]:
    """'path:line test_id severity' for each finding at a failing severity."""
    return [
        f"{_shown(Path(r['filename']))}:{r['line_number']} {r['test_id']} "
        f"{r['issue_severity'].lower()}"
        for r in report.get("results", [])
        if r.get("issue_severity") in FAIL_SEVERITIES
    ]


def unexplained_nosec(source: str, reach: int = 4) -> list[int]:
    """Lines whose `# nosec` names no bandit test id (B123), or has no reason: neither text after
    a second `#` on the same line, nor a comment line among the `reach` lines right above it
    with no blank line between (one comment may explain a few lines together)."""
    lines = source.splitlines()
    bad: list[int] = []
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        match = _NOSEC.search(tok.string)
        if match is None:
            continue
        row = tok.start[0]
        ids = _NOSEC_IDS.match(match.group("rest"))
        if ids is None:
            bad.append(row)
            continue
        reason_here = ids.group("after").strip(" -#:") != ""
        above: list[str] = []
        for prev in range(row - 2, max(-1, row - 2 - reach), -1):
            text = lines[prev].strip()
            if not text:
                break
            above.append(text)
        if not (reason_here or any(text.startswith("#") for text in above)):
            bad.append(row)
    return bad


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def python_files(targets: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for target in targets:
        if target.is_dir():
            out += sorted(p for p in target.rglob("*.py") if "__pycache__" not in p.parts)
        elif target.suffix == ".py":
            out.append(target)
    return out


def run_bandit(targets: Sequence[Path], out_dir: Path, config: Path = BANDIT_CONFIG) -> CheckResult:
    """bandit over `targets` into out_dir/bandit.json; fails on medium/high or a bare nosec."""
    report_path = out_dir / "bandit.json"
    argv = [sys.executable, "-m", "bandit", "-c", str(config), "-r", *map(str, targets)]
    argv += ["-f", "json", "-o", str(report_path), "-q"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        reason = (done.stderr.strip().splitlines() or ["no report"])[-1]
        return CheckResult("bandit", False, f"bandit: did not run ({reason})")
    counts = severity_counts(report)
    failing = failing_findings(report)
    errors = [f"{e.get('filename')}: {e.get('reason')}" for e in report.get("errors", [])]
    skipped = int(report.get("metrics", {}).get("_totals", {}).get("skipped_tests", 0))
    bare = [
        f"{_shown(path)}:{row}"
        for path in python_files(targets)
        for row in unexplained_nosec(path.read_text(encoding="utf-8"))
    ]
    ok = not failing and not errors and not bare
    line = (
        f"bandit: {counts['high']} high, {counts['medium']} medium, {counts['low']} low "
        f"({skipped} skipped by a justified nosec; fails on medium and high)"
    )
    if failing:
        line += "; failing: " + ", ".join(failing)
    if errors:
        line += "; could not scan: " + ", ".join(errors)
    if bare:
        line += "; nosec without a test id or a reason: " + ", ".join(bare)
    return CheckResult("bandit", ok, line)


# --- pip-audit --------------------------------------------------------------------------------


def pinned_requirements(freeze_output: str) -> tuple[list[str], list[str]]:
    """`name==version` lines of `pip freeze`, and the other lines (editables, URLs) left out."""
    pinned: list[str] = []
    other: list[str] = []
    for raw in freeze_output.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^\s;@]+", line):
            pinned.append(line)
        else:
            other.append(line)
    return pinned, other


@dataclass(frozen=True)
class AuditOutcome:
    status: str  # clean | vulnerable | unreachable | error
    detail: str


def classify_audit(returncode: int, stdout: str, stderr: str) -> AuditOutcome:
    """What pip-audit's exit code, JSON and log say (pure: unit-tested with built answers)."""
    try:
        report = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        report = None
    if isinstance(report, dict):
        deps = report.get("dependencies", [])
        vulnerable = [
            f"{d['name']} {d.get('version', '?')}: {', '.join(v['id'] for v in d['vulns'])}"
            for d in deps
            if d.get("vulns")
        ]
        if vulnerable:
            return AuditOutcome("vulnerable", "; ".join(vulnerable))
        audited = [d for d in deps if "skip_reason" not in d]
        if deps and not audited:
            # Nothing was audited, which must not read as "no known vulnerabilities".
            reasons = [str(d.get("skip_reason", "")) for d in deps]
            if all("not found" in reason for reason in reasons):
                # The service answered, but for none of them (a proxy's 404s, an empty mirror).
                return AuditOutcome("unreachable", "every answer was 'not found'")
            return AuditOutcome("error", f"no dependency audited: {reasons[0][:150]}")
        if returncode == 0:
            skipped = len(deps) - len(audited)
            extra = f", {skipped} not found there" if skipped else ""
            return AuditOutcome("clean", f"{len(audited)} dependencies audited{extra}")
    if any(marker in stderr for marker in _UNREACHABLE_MARKERS):
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        # The service's host: the last pool named (a proxy's own host comes earlier).
        hosts = re.findall(r"HTTPS?ConnectionPool\(host='([^']+)'", stderr)
        hosts = hosts or re.findall(r"host='([^']+)'", stderr)
        where = hosts[-1] if hosts else (lines[-1][:120] if lines else "no answer")
        return AuditOutcome("unreachable", f"no connection to {where}")
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return AuditOutcome("error", lines[-1][:200] if lines else f"exit code {returncode}")


def run_pip_audit(
    out_dir: Path,
    requirements: Path | None = None,
    timeout_s: float = 10,
    offline_ok: bool = False,
    cache_dir: Path | None = None,
) -> CheckResult:
    """pip-audit of `requirements` (default: this environment's `pip freeze`)."""
    req_path = out_dir / "requirements.txt"
    if requirements is None:
        freeze = subprocess.run(
            [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        pinned, _ = pinned_requirements(freeze)
    else:
        pinned, _ = pinned_requirements(requirements.read_text(encoding="utf-8"))
    req_path.write_text("".join(f"{line}\n" for line in pinned), encoding="utf-8")
    argv = [sys.executable, "-m", "pip_audit", "-r", str(req_path), "--no-deps", "--disable-pip"]
    argv += ["--timeout", str(max(1, round(timeout_s))), "--progress-spinner", "off", "-f", "json"]
    if cache_dir is not None:
        argv += ["--cache-dir", str(cache_dir)]
    # A whole run stays bounded even where every connection hangs until its timeout.
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=max(60.0, 20 * timeout_s)
        )
        outcome = classify_audit(done.returncode, done.stdout, done.stderr)
        if done.stdout.strip():
            (out_dir / "pip_audit.json").write_text(done.stdout, encoding="utf-8")
    except subprocess.TimeoutExpired:
        outcome = AuditOutcome("unreachable", "no answer before the time limit")
    n = len(pinned)
    if outcome.status == "clean":
        return CheckResult(
            "pip-audit", True, f"pip-audit: no known vulnerabilities ({outcome.detail})"
        )
    if outcome.status == "vulnerable":
        return CheckResult(
            "pip-audit", False, f"pip-audit: known vulnerabilities: {outcome.detail}"
        )
    if outcome.status == "unreachable":
        verdict = (
            f"passing because {OFFLINE_OK_ENV}=1"
            if offline_ok
            else f"failing (set {OFFLINE_OK_ENV}=1 to accept)"
        )
        return CheckResult(
            "pip-audit",
            offline_ok,
            f"pip-audit: advisory service unreachable ({outcome.detail}); {n} pinned "
            f"dependencies not audited; {verdict}",
        )
    return CheckResult("pip-audit", False, f"pip-audit: failed ({outcome.detail})")


# --- the image's user -------------------------------------------------------------------------


class ImageUnavailable(RuntimeError):
    """No docker CLI, no engine, or no such image; the message is one line."""


def is_root_user(user: str) -> bool:
    """Docker's Config.User: empty (the default), root or uid 0, with or without a group."""
    name = user.strip().split(":", 1)[0]
    return name in ("", "root", "0")


def image_user(image: str, timeout_s: float = 30) -> str:
    """The user an image runs as (`docker image inspect --format '{{.Config.User}}'`)."""
    docker = shutil.which("docker")
    if docker is None:
        raise ImageUnavailable("no docker CLI on PATH")
    try:
        done = subprocess.run(
            [docker, "image", "inspect", "--format", "{{.Config.User}}", image],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise ImageUnavailable(f"docker image inspect gave no answer in {timeout_s:g} s") from None
    if done.returncode != 0:
        err = " ".join(done.stderr.split())
        if "Cannot connect to the Docker daemon" in err or "daemon running" in err:
            raise ImageUnavailable("no Docker engine answers")
        if "No such image" in err or "No such object" in err:
            raise ImageUnavailable(f"no image {image} (make containerize builds it)")
        raise ImageUnavailable(err[:200] or f"docker exited with {done.returncode}")
    return done.stdout.strip()


def check_image(image: str, require: bool = False) -> CheckResult:
    try:
        user = image_user(image)
    except ImageUnavailable as exc:
        verdict = f"failing because {REQUIRE_IMAGE_ENV}=1" if require else "skipped"
        return CheckResult("image", not require, f"image: {exc}; {image} not checked ({verdict})")
    if is_root_user(user):
        return CheckResult("image", False, f"image: {image} runs as root (User={user!r})")
    return CheckResult("image", True, f"image: {image} runs as {user!r}, not root")


# --- command line -----------------------------------------------------------------------------


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "security")
    parser.add_argument("--only", action="append", choices=CHECKS, help="repeatable; default all")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--target", action="append", type=Path, help="bandit targets")
    parser.add_argument("--requirements", type=Path, help="default: pip freeze of this env")
    parser.add_argument("--audit-timeout", type=float, default=10, help="pip-audit's, seconds")
    parser.add_argument("--audit-cache-dir", type=Path)
    args = parser.parse_args(argv)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    checks = args.only or list(CHECKS)
    results: list[CheckResult] = []
    if "bandit" in checks:
        targets = args.target or [ROOT / name for name in SOURCES]
        results.append(run_bandit(targets, out))
        print(results[-1].line, flush=True)
    if "pip-audit" in checks:
        results.append(
            run_pip_audit(
                out,
                args.requirements,
                args.audit_timeout,
                offline_ok=_flag(OFFLINE_OK_ENV),
                cache_dir=args.audit_cache_dir,
            )
        )
        print(results[-1].line, flush=True)
    if "image" in checks:
        results.append(check_image(args.image, require=_flag(REQUIRE_IMAGE_ENV)))
        print(results[-1].line, flush=True)
    failed = [r.name for r in results if not r.ok]
    verdict = f"security scan: FAILED ({', '.join(failed)})" if failed else "security scan: passed"
    print(verdict)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    summary = [f"security scan {stamp}", *(r.line for r in results), verdict]
    (out / "summary.txt").write_text("\n".join(summary) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
