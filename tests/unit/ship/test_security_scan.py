"""`make security-scan` (deploy/security_scan.py): bandit keeps the tree free of medium and high
findings and really fails on one, pip-audit without its advisory service passes only when told
to, and the image check reads Docker's user."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from deploy.security_scan import (
    ROOT,
    SOURCES,
    ImageUnavailable,
    check_image,
    classify_audit,
    failing_findings,
    image_user,
    is_root_user,
    main,
    pinned_requirements,
    run_bandit,
    severity_counts,
    unexplained_nosec,
)

# --- bandit -----------------------------------------------------------------------------------


def test_the_sources_have_no_medium_or_high_finding(tmp_path: Path) -> None:
    result = run_bandit([ROOT / name for name in SOURCES], tmp_path)
    report = json.loads((tmp_path / "bandit.json").read_text())
    counts = severity_counts(report)
    assert (counts["high"], counts["medium"]) == (0, 0), failing_findings(report)
    assert report["errors"] == []
    assert result.ok, result.line


MEDIUM = (
    "import yaml\n\n\ndef read(path):\n    with open(path) as f:\n        return yaml.load(f)\n"
)


def test_a_medium_finding_fails_the_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "unsafe.py"
    source.write_text(MEDIUM)
    code = main(["--only", "bandit", "--target", str(source), "--out", str(tmp_path / "out")])
    assert code != 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "1 medium" in line
    assert "B506 medium" in line  # yaml.load without a safe loader


def test_a_high_finding_fails_the_scan(tmp_path: Path) -> None:
    source = tmp_path / "shell.py"
    source.write_text("import subprocess\n\n\ndef run(cmd):\n    subprocess.run(cmd, shell=True)\n")
    assert main(["--only", "bandit", "--target", str(source), "--out", str(tmp_path)]) != 0


def test_a_nosec_without_a_reason_fails_the_scan(tmp_path: Path) -> None:
    source = tmp_path / "silenced.py"
    source.write_text(MEDIUM.replace("yaml.load(f)", "yaml.load(f)  # nosec B506"))
    result = run_bandit([source], tmp_path)
    assert not result.ok
    assert "nosec without a test id or a reason" in result.line
    assert "0 medium" in result.line  # bandit itself honoured the nosec

    explained = MEDIUM.replace(
        "        return yaml.load(f)",
        "        # B506: this file is our own, written by the line above.\n"
        "        return yaml.load(f)  # nosec B506",
    )
    source.write_text(explained)
    assert run_bandit([source], tmp_path).ok


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("x = 1  # nosec\n", [1]),
        ("x = 1  # nosec B108\n", [1]),
        ("x = 1  # nosec: because\n", [1]),
        ("x = 1  # nosec B108 # fixed path inside its own container\n", []),
        ("# the reason\nx = 1  # nosec B108\n", []),
        ("# the reason\n\nx = 1  # nosec B108\n", [3]),
        ("# the reason\ny = 2\nx = f(  # nosec B615, B108\n    1)\n", []),
        ("a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nx = 1  # nosec B108\n", [6]),
        ("s = '# nosec'\n", []),
    ],
)
def test_unexplained_nosec(source: str, bad: list[int]) -> None:
    assert unexplained_nosec(source) == bad


def test_severity_counts_and_failing_findings() -> None:
    report = {
        "metrics": {"_totals": {"SEVERITY.HIGH": 1, "SEVERITY.MEDIUM": 2, "SEVERITY.LOW": 7}},
        "results": [
            {"filename": "/x/a.py", "line_number": 3, "test_id": "B602", "issue_severity": "HIGH"},
            {"filename": "/x/b.py", "line_number": 9, "test_id": "B101", "issue_severity": "LOW"},
        ],
    }
    assert severity_counts(report) == {"high": 1, "medium": 2, "low": 7}
    assert failing_findings(report) == ["/x/a.py:3 B602 high"]


# --- pip-audit --------------------------------------------------------------------------------


def test_pinned_requirements_keeps_exact_pins_only() -> None:
    freeze = (
        "Foo==1.0\n# comment\n-e git+https://x/y#egg=z\nbar @ file:///tmp/bar\ntorch==2.1+cpu\n"
    )
    assert pinned_requirements(freeze) == (
        ["Foo==1.0", "torch==2.1+cpu"],
        ["-e git+https://x/y#egg=z", "bar @ file:///tmp/bar"],
    )


def audit_json(*deps: dict[str, object]) -> str:
    return json.dumps({"dependencies": list(deps), "fixes": []})


def test_classify_audit() -> None:
    skipped = {"name": "a", "skip_reason": "Dependency not found on PyPI"}
    clean = {"name": "b", "version": "1.0", "vulns": []}
    bad = {"name": "c", "version": "2.0", "vulns": [{"id": "PYSEC-1"}, {"id": "GHSA-x"}]}

    # A service that answers 'not found' for everything audited nothing.
    outcome = classify_audit(0, audit_json(skipped, dict(skipped, name="z")), "")
    assert outcome.status == "unreachable"
    editable = {"name": "e", "skip_reason": "Dependency is editable"}
    assert classify_audit(0, audit_json(editable), "").status == "error"
    assert classify_audit(0, audit_json(clean, skipped), "").status == "clean"
    assert classify_audit(0, audit_json(clean, skipped), "").detail == (
        "1 dependencies audited, 1 not found there"
    )
    outcome = classify_audit(1, audit_json(clean, bad), "")
    assert (outcome.status, outcome.detail) == ("vulnerable", "c 2.0: PYSEC-1, GHSA-x")
    stderr = (
        "Traceback ...\nrequests.exceptions.ConnectionError: HTTPSConnectionPool("
        "host='api.osv.dev', port=443): Max retries exceeded\n"
    )
    outcome = classify_audit(1, "", stderr)
    assert (outcome.status, outcome.detail) == ("unreachable", "no connection to api.osv.dev")
    through_proxy = (
        "urllib3.exceptions.NewConnectionError: HTTPConnection(host='127.0.0.1', port=9)\n"
        "requests.exceptions.ProxyError: HTTPSConnectionPool(host='pypi.org', port=443): "
        "Max retries exceeded\n"
    )
    assert classify_audit(1, "", through_proxy).detail == "no connection to pypi.org"
    outcome = classify_audit(1, "", "ERROR: invalid requirement 'x=='\n")
    assert (outcome.status, outcome.detail) == ("error", "ERROR: invalid requirement 'x=='")


@pytest.fixture
def no_advisory_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every HTTPS request through a proxy on a closed port: the service is unreachable even on
    a machine with internet access."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("offline_ok", "expected"), [(None, 1), ("1", 0)])
def test_pip_audit_without_its_service(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_advisory_service: None,
    offline_ok: str | None,
    expected: int,
) -> None:
    if offline_ok is None:
        monkeypatch.delenv("SECURITY_SCAN_OFFLINE_OK", raising=False)
    else:
        monkeypatch.setenv("SECURITY_SCAN_OFFLINE_OK", offline_ok)
    requirements = tmp_path / "req.txt"
    requirements.write_text("requests==2.32.3\nurllib3==2.2.3\n")
    argv = ["--only", "pip-audit", "--requirements", str(requirements), "--out", str(tmp_path)]
    argv += ["--audit-timeout", "3", "--audit-cache-dir", str(tmp_path / "cache")]
    started = time.monotonic()
    assert main(argv) == expected
    assert time.monotonic() - started < 60
    lines = capsys.readouterr().out.splitlines()
    said = [line for line in lines if "advisory service unreachable" in line]
    assert len(said) == 1, lines
    assert "2 pinned dependencies not audited" in said[0]
    assert (tmp_path / "requirements.txt").read_text() == "requests==2.32.3\nurllib3==2.2.3\n"
    assert (tmp_path / "summary.txt").read_text().count("advisory service unreachable") == 1


# --- the image's user -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "root"),
    [
        ("", True),
        ("root", True),
        ("0", True),
        ("0:0", True),
        ("root:bentoml", True),
        (" bentoml ", False),
        ("bentoml:bentoml", False),
        ("1034", False),
        ("1034:0", False),
    ],
)
def test_is_root_user(user: str, root: bool) -> None:
    assert is_root_user(user) is root


def fake_docker(folder: Path, script: str) -> None:
    """A `docker` on PATH that only answers `image inspect`."""
    path = folder / "docker"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_image_user_reads_the_config_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    fake_docker(tmp_path, 'test "$1 $2 $3" = "image inspect --format" && echo bentoml')
    assert image_user("sentiment-api:latest") == "bentoml"
    assert check_image("sentiment-api:latest").ok

    fake_docker(tmp_path, "echo")
    result = check_image("sentiment-api:latest")
    assert not result.ok
    assert "runs as root" in result.line


def test_no_image_or_engine_is_one_line_and_fails_only_when_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    fake_docker(tmp_path, 'echo "Error response from daemon: No such image: x:latest" >&2; exit 1')
    with pytest.raises(ImageUnavailable, match="no image x:latest"):
        image_user("x:latest")

    fake_docker(
        tmp_path,
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1',
    )
    argv = ["--only", "image", "--image", "x:latest", "--out", str(tmp_path / "out")]
    monkeypatch.delenv("SECURITY_SCAN_REQUIRE_IMAGE", raising=False)
    assert main(argv) == 0
    monkeypatch.setenv("SECURITY_SCAN_REQUIRE_IMAGE", "1")
    assert main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    image_lines = [line for line in out if line.startswith("image:")]
    assert image_lines == [
        "image: no Docker engine answers; x:latest not checked (skipped)",
        "image: no Docker engine answers; x:latest not checked "
        "(failing because SECURITY_SCAN_REQUIRE_IMAGE=1)",
    ]

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ImageUnavailable, match="no docker CLI"):
        image_user("x:latest")
