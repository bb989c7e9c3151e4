"""setting_overhead: the summary's arithmetic, and which tree each side is served from."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loadtests import setting_overhead
from loadtests.servers import PROJECT_ROOT


def run(store: str, p50: float, rate: float, cpu: float = 1.0) -> dict[str, Any]:
    return {
        "store": store,
        "p50_one_client_ms": p50,
        "texts_per_s_32_clients": rate,
        "worker_cpu_ms_per_request": cpu,
    }


def test_summary_compares_the_means_of_both_sides() -> None:
    runs = [run("off", 10.0, 300.0, 1.2), run("on", 6.0, 390.0, 0.9), run("on", 8.0, 410.0, 1.1)]
    runs.append(run("off", 12.0, 340.0, 1.3))
    summary = setting_overhead.summarize(runs, max_change=None, max_p50_ms=None)
    assert summary["p50_change"] == pytest.approx(-0.3636, abs=1e-4)  # 7 / 11 - 1
    assert summary["p50_added_ms"] == -4.0
    assert summary["throughput_change"] == 0.25  # 400 / 320 - 1
    assert summary["within_target"] is True
    assert summary["worker_cpu_ms_per_request"] == {"off": [1.2, 1.3], "on": [0.9, 1.1]}
    assert summary["worker_cpu_change"] == -0.2  # 1.0 / 1.25 - 1
    bounded = setting_overhead.summarize(runs, max_change=0.2, max_p50_ms=None)
    assert bounded["within_target"] is True  # p50 fell, throughput rose
    assert setting_overhead.summarize(runs, None, max_p50_ms=-5.0)["within_target"] is False


def test_the_off_side_runs_from_the_other_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[tuple[str, Path]] = []

    def fake_measure(
        env: dict[str, str], log: Path, texts: list[str], d: float, w: float, project: Path
    ) -> dict[str, Any]:
        served.append((env["SENTIMENT_ENGINE"], project))
        return {
            "p50_one_client_ms": 5.0,
            "texts_per_s_32_clients": 100.0,
            "worker_cpu_ms_per_request": 1.0,
            "statuses": {},
        }

    monkeypatch.setattr(setting_overhead, "measure", fake_measure)
    monkeypatch.setattr(setting_overhead, "own_bentoml_home", lambda env, folder: dict(env))
    data = tmp_path / "sst2"
    data.mkdir()
    (data / "validation.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    monkeypatch.setenv("SENTIMENT_DATA_DIR", str(data))
    other = tmp_path / "old-tree"
    other.mkdir()
    out = tmp_path / "out.json"
    argv = ["--env", "SENTIMENT_ENGINE", "--off", "torch", "--on", "auto", "--rounds", "2"]
    assert setting_overhead.main([*argv, "--off-tree", str(other), "--out", str(out)]) == 0
    assert served == [
        ("torch", other),
        ("auto", PROJECT_ROOT),
        ("auto", PROJECT_ROOT),
        ("torch", other),
    ]
    # Not a git checkout: the report names the folder.
    assert json.loads(out.read_text())["setting"]["off_tree"] == str(other)


def test_a_checkout_is_named_by_its_commit(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        command = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "the release before")
    head = git("log", "-1", "--format=%h")
    assert setting_overhead._describe_tree(tmp_path) == f"{head} the release before"
