"""The GitHub workflows: valid against GitHub's schema (check-jsonschema, offline), and every
make target and Python module they call exists here."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = ROOT / ".github" / "workflows"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def run_lines(workflow: dict[str, Any]) -> list[str]:
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


def test_every_workflow_is_valid() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} == {"ci.yml", "cd.yml", "model_validation.yml"}
    done = validate(*files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_validator_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    # A job without runs-on, and a step that is neither `uses` nor `run`.
    broken.write_text("on: push\njobs:\n  build:\n    steps:\n      - name: nothing\n")
    done = validate(broken)
    assert done.returncode != 0
    assert "broken.yml" in done.stdout + done.stderr


def test_ci_lints_tests_and_builds_on_push_and_pull_request() -> None:
    ci = load("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    assert set(ci["jobs"]) == {"lint", "test", "bento"}
    runs = "\n".join(run_lines(ci))
    for command in ("make lint", "make test", "make build", "make validate-workflows"):
        assert command in runs


def test_cd_stages_then_waits_for_a_person_and_rolls_back_on_failure() -> None:
    cd = load("cd.yml")
    jobs = cd["jobs"]
    assert jobs["staging"]["needs"] == "image"
    assert jobs["staging"]["environment"]["name"] == "staging"
    assert jobs["production"]["environment"]["name"] == "production"
    assert "staging" in jobs["production"]["needs"]
    for job in ("staging", "production"):
        rollback = [s for s in jobs[job]["steps"] if s.get("if") == "failure()"]
        assert rollback and "rollback-deploy" in rollback[0]["run"]
    assert any("--smoke" in r for r in run_lines(cd))
    assert "docker/login-action@v3" in {s.get("uses") for s in jobs["image"]["steps"]}


def test_model_validation_is_scheduled_and_fails_loudly() -> None:
    mv = load("model_validation.yml")
    assert mv["on"]["schedule"][0]["cron"]
    steps = mv["jobs"]["validate"]["steps"]
    runs = "\n".join(run_lines(mv))
    assert "--fail-below-f1" in runs and "make drift-check" in runs and "make report" in runs
    issue = [s for s in steps if s.get("if") == "failure()"]
    assert issue and issue[0]["uses"].startswith("actions/github-script")


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text() + "".join(
        p.read_text() for p in sorted((ROOT / "mk").glob("*.mk"))
    )
    return set(re.findall(r"^([A-Za-z0-9_-]+):", text, flags=re.MULTILINE))


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml", "model_validation.yml"])
def test_workflows_call_only_what_exists(name: str) -> None:
    runs = "\n".join(run_lines(load(name)))
    targets = make_targets()
    for line in re.findall(r"\bmake ([^\n|;&]+)", runs):
        for word in line.split():
            if "=" in word or word.startswith("-"):
                continue
            assert word in targets, f"{name} calls `make {word}`, which no makefile defines"
    for module in re.findall(r"python -m ([\w.]+)", runs):
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
    for script in re.findall(r"python (\.github/scripts/\S+)", runs):
        assert (ROOT / script).is_file()
