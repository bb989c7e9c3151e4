"""The validation loop for real: evaluate, report, promote, reject, rollback, as the make
targets run them (`python -m ...`), on a copy of the tiny trained registry."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry(
    trained_registry: dict[str, str], sst2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A private copy of the session's registry: promoting here disturbs no other test.

    The copied database still finds the artifacts: their paths in it are absolute.
    """
    work = tmp_path_factory.mktemp("promote")
    source = trained_registry["tracking_uri"].removeprefix("sqlite:///")
    shutil.copy(source, work / "mlflow.db")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "SENTIMENT_DATA_DIR": str(sst2_dir),
        "RESULTS_DIR": str(work / "results"),
        # A sample keeps each evaluation to seconds; the tiny model needs low bars.
        "EVAL_MAX_SAMPLES": "160",
        "PROMOTION_MIN_F1": "0",
        "PROMOTION_MIN_BEHAVIOUR_PASS_RATE": "0",
        "PROMOTION_MAX_LATENCY_MS": "100000",
        "PROMOTION_MAX_LATENCY_FACTOR": "100",
        "REPORT_PDF": "auto",
    }
    return {**env, "WORK": str(work)}


def run(env: dict[str, str], *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=env["WORK"],
        env={**env, **overrides},
        capture_output=True,
        text=True,
        timeout=900,
    )


def client(env: dict[str, str]):
    import mlflow
    from mlflow import MlflowClient

    # create_model_version resolves a `models:/m-...` source through the global URI.
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    return MlflowClient(env["MLFLOW_TRACKING_URI"])


def production(env: dict[str, str]) -> str:
    return str(client(env).get_model_version_by_alias("sentiment", "production").version)


def history(env: dict[str, str]) -> list[str]:
    tags = client(env).get_registered_model("sentiment").tags
    return json.loads(tags.get("production.history", "[]"))


def test_validation_loop(registry: dict[str, str]) -> None:
    env = registry
    results = Path(env["RESULTS_DIR"])

    # --- evaluate -------------------------------------------------------------------------
    done = run(env, "evaluation")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| accuracy |" in done.stdout and "| ROC AUC |" in done.stdout
    errors = list(csv.DictReader((results / "error_analysis.csv").open()))
    assert errors and all(e["label"] != e["prediction"] for e in errors)
    perf = list(csv.DictReader((results / "performance_analysis.csv").open()))
    assert len(perf) == 1 and perf[0]["model_version"] == "1" and perf[0]["n"] == "160"
    # The figures went to the model's MLflow run too.
    c = client(env)
    run_id = c.get_model_version("sentiment", "1").run_id
    metrics = c.get_run(run_id).data.metrics
    assert metrics["eval.sst2_validation.accuracy"] == pytest.approx(float(perf[0]["accuracy"]))
    assert "eval.sst2_validation.ece_calibrated" in metrics
    assert c.list_artifacts(run_id, "evaluation/sst2_validation")

    # --- report (no production yet) -------------------------------------------------------
    done = run(env, "evaluation.report")
    assert done.returncode == 0, done.stderr[-3000:]
    page = (results / "report.html").read_text()
    assert "No production model is registered" in page
    assert page.count("data:image/png;base64,") == 4
    if shutil.which("chromium"):
        assert (results / "report.pdf").read_bytes().startswith(b"%PDF")

    # --- first promotion: production is empty ---------------------------------------------
    done = run(env, "evaluation.promote")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "promoted v1 to @production" in done.stdout
    assert production(env) == "1" and history(env) == ["1"]
    tags = c.get_model_version("sentiment", "1").tags
    assert tags["promotion.decision"] == "promoted"
    assert "no production model to beat" in tags["promotion.reasons"]
    assert 0 <= float(tags["promotion.behaviour_pass_rate"]) <= 1

    # --- a second version with the same weights gains nothing: rejected -------------------
    v1 = c.get_model_version("sentiment", "1")
    keep = {k: v for k, v in v1.tags.items() if not k.startswith(("promotion.", "production."))}
    v2 = str(
        c.create_model_version("sentiment", source=v1.source, run_id=v1.run_id, tags=keep).version
    )
    c.set_registered_model_alias("sentiment", "candidate", v2)
    done = run(env, "evaluation.promote", PROMOTION_MIN_F1_MARGIN="0.01")
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "[FAIL] f1_vs_production" in done.stdout
    assert production(env) == "1"
    rejected = c.get_model_version("sentiment", v2).tags
    assert rejected["promotion.decision"] == "rejected"
    assert rejected["promotion.reasons"].startswith("f1_vs_production:")
    assert rejected["promotion.compared_to"] == "1"

    # --- a looser margin lets it through -------------------------------------------------
    done = run(env, "evaluation.promote", PROMOTION_MIN_F1_MARGIN="-0.05")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert production(env) == v2 and history(env) == ["1", v2]

    # --- rollback, then a report of v2 beside production v1 ----------------------------
    done = run(env, "evaluation.promote", "rollback")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"v{v2} -> v1" in done.stdout
    assert production(env) == "1" and history(env) == ["1"]
    assert "production.rolled_back_at" in c.get_model_version("sentiment", v2).tags
    log = json.loads(c.get_registered_model("sentiment").tags["production.log"])
    assert [e["event"] for e in log] == ["promote", "promote", "rollback"]

    done = run(env, "evaluation.report", "--model", v2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "production v1" in (results / "report.html").read_text()

    # Nothing before v1: a clear one-line refusal.
    done = run(env, "evaluation.promote", "rollback")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: no production version before v1 is recorded in the 'production.history' tag"
    )
    assert production(env) == "1"


def test_bad_model_argument_is_one_line(registry: dict[str, str]) -> None:
    done = run(registry, "evaluation", "--model", "runs:/x/model")
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot read MODEL='runs:/x/model'")
    done = run(registry, "evaluation", "--model", "champion")
    assert done.returncode == 2
    assert "no model version models:/sentiment@champion" in done.stderr
    assert "Traceback" not in done.stderr
