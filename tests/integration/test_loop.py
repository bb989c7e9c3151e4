"""The retraining loop, end to end, with every component real (deploy/loop_demo.py drives it;
`make loop-demo` is the same for a person):

service + prediction store (Amazon-review traffic, labels) -> Prometheus fires
SentimentDriftDetected -> Alertmanager -> retrain listener -> `python -m training.retrain` (the
tests' tiny profile, on a copy of the session's registry) registers @candidate with the feedback
in its lineage -> imported, the service restarted with it in shadow -> the gate, asking for a
shadow result, decides and tags the version in MLflow.

Each step's outcome is asserted; the timeline is printed and written to
results/loop_timeline.json.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from deploy.loop_demo import ALERT, Loop, LoopSettings, LoopSetup, write_timeline

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
TIMELINE = ROOT / "results" / "loop_timeline.json"


@pytest.fixture
def loop(
    trained_registry: dict[str, str],
    bento_env: dict[str, str],
    sst2_dir: Path,
    reviews_file: Path,
    tmp_path: Path,
) -> Iterator[Loop]:
    """A Loop over copies: the session's registry (the retrain moves its alias) and BentoML
    store (the candidate is imported into it), so other tests see neither change."""
    shutil.copy(trained_registry["tracking_uri"].removeprefix("sqlite:///"), tmp_path / "m.db")
    home = tmp_path / "bentoml_home"
    shutil.copytree(Path(bento_env["BENTOML_HOME"]) / "models", home / "models", symlinks=True)
    setup = LoopSetup(
        workdir=tmp_path / "loop",
        tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        training_config=Path(trained_registry["config"]),
        bentoml_home=home,
        model_tag=bento_env["SENTIMENT_MODEL_TAG"],
        sst2_dir=sst2_dir,
        reviews_file=reviews_file,
    )
    running = Loop(setup, LoopSettings())
    try:
        yield running
    finally:
        running.close()


def test_drift_alert_retrains_shadows_and_gates_the_candidate(loop: Loop) -> None:
    started = time.monotonic()
    s = loop.settings
    result = loop.result

    # 1. Traffic and feedback; the service itself sees the drift.
    first = loop.step_serve_and_send()
    assert first["sent"]["predicted"] == s.first_traffic
    assert first["sent"]["accepted"] == s.first_labelled and first["sent"]["unknown"] == 0
    status = first["drift"]["drift_status"]
    assert status["drift_detected"] is True and status["window_size"] >= s.first_traffic
    assert first["drift"]["performance"]["labelled_count"] == s.first_labelled

    # 2. Prometheus fires the rule.
    alert = loop.step_alert()
    assert alert["state"] == "firing" and alert["labels"]["alertname"] == ALERT

    # 3. Alertmanager -> the listener: one run started.
    metrics = loop.step_listener()
    assert metrics['retrain_triggers_total{outcome="started"}'] == 1
    assert metrics['retrain_triggers_total{outcome="unauthorized"}'] == 0

    # 4. The run: a new version @candidate whose run holds the feedback.
    report = loop.step_retrain()
    assert int(result.candidate_version) > int(result.before_version)
    assert report["version"] == result.candidate_version and report["exit_code"] == 0
    params = result.candidate_params
    assert int(params["feedback.texts"]) > 0
    assert int(params["feedback.train"]) > 0
    assert int(params["feedback.labels_read"]) == s.first_labelled
    # The first gate asked for a shadow result that did not exist yet.
    assert report["decision"] == "rejected"
    assert result.listener['retrain_runs_total{result="succeeded"}'] == 1

    # 5. The candidate in shadow.
    shadow = loop.step_shadow()
    assert result.imported_tag.startswith(f"sentiment:v{result.candidate_version}-")
    assert shadow["tag"] == result.imported_tag
    assert shadow["compared"] >= s.shadow_traffic
    assert isinstance(shadow["agreement"], float) and 0 <= shadow["agreement"] <= 1
    assert shadow["labelled_count"] >= s.shadow_labelled

    # 6. The gate decides with the shadow result; the decision is on the version in MLflow.
    tags = loop.step_gate()
    assert tags["promotion.decision"] in ("promoted", "rejected")
    assert result.gate_exit == (0 if tags["promotion.decision"] == "promoted" else 1)
    recorded = json.loads(tags["promotion.shadow"])
    assert recorded["tag"] == result.imported_tag
    assert recorded["compared"] >= s.shadow_traffic
    checks = {c["name"]: c for c in json.loads(tags["promotion.checks"])}
    assert {"shadow_agreement", "shadow_accuracy"} <= set(checks)
    assert checks["shadow_agreement"]["passed"] == (shadow["agreement"] >= s.min_shadow_agreement)

    # Still one run started: any later call of Alertmanager met the run or its cool-down.
    assert loop.listener_started() == 1

    took = time.monotonic() - started
    write_timeline(
        loop.timeline, result, TIMELINE, {"settings": asdict(s), "test_duration_s": round(took)}
    )
    print(f"\nloop timeline ({TIMELINE}), test body {took:.0f} s:\n{loop.timeline.table()}")
