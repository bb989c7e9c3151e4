"""ONNX Runtime and the packed torch path give the same predictions on the model
`import_model` exported (the tiny test model, all of SST-2 validation), except a few
sentences at the decision boundary; ONNX int8 stays as accurate as torch fp32; and the engine
that serves by default answers a text alike alone and in a batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A disagreement between two int8 engines is rounding only where the model hesitates.
BOUNDARY_CONFIDENCE = 0.7
# The quick model: 11 of 872 (README, Performance); the tiny model hesitates more often.
MAX_SHARE = 0.03
MAX_ACCURACY_LOSS = 0.01


def test_the_two_int8_engines_agree_except_at_the_boundary(
    bento_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "agreement.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.engine_agreement", "--out", str(out)],
        env=bento_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    flips = report["int8_engines_disagree"]
    assert len(flips) <= MAX_SHARE * report["sentences"], flips
    for flip in flips:
        assert max(flip["confidence_a"], flip["confidence_b"]) < BOUNDARY_CONFIDENCE, flip
    accuracy = report["accuracy"]
    assert accuracy["onnx_int8"] >= accuracy["torch_fp32"] - MAX_ACCURACY_LOSS, accuracy
    # Activations quantised per token: no text moves with its batch-mates (CI once saw the same
    # review at 0.5891 and 0.5968 under per-tensor scales).
    assert report["batch_independence"]["onnx_int8"]["texts_moved"] == 0, report[
        "batch_independence"
    ]
