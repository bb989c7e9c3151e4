"""Distributed training: `torchrun --nproc-per-node 2` runs the training loop as two CPU
processes (DistributedDataParallel over gloo); both train, only rank 0 logs and registers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

TRAIN_ROWS = 256


def test_two_processes_train_one_model_and_rank_0_registers_it(
    sst2_dir: Path, tmp_path: Path
) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"max_length": 32},
                "training": {
                    "epochs": 1,
                    "batch_size": 16,
                    "learning_rate": 1.5e-4,
                    "max_train_samples": TRAIN_ROWS,
                    "max_eval_samples": 128,
                },
                "data": {"data_dir": str(sst2_dir)},
                "mlflow": {"tracking_uri": tracking_uri, "experiment_name": "ddp"},
            }
        )
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "torchrun"),
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "training.train",
            "--config",
            str(config),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    print(f"torchrun, 2 processes: {time.monotonic() - started:.0f} s")

    ranks = dict(
        (int(m[1]), (int(m[2]), int(m[3]), m[4]))
        for m in re.finditer(
            r"rank (\d)/2: (\d+) sentences per epoch, (\d+) steps of 16, weights (\w+)",
            result.stdout,
        )
    )
    assert set(ranks) == {0, 1}, result.stdout[-2000:]
    assert ranks[0][:2] == ranks[1][:2] == (TRAIN_ROWS // 2, TRAIN_ROWS // 2 // 16)
    # DDP averaged the gradients: both ranks end with the same weights.
    assert ranks[0][2] == ranks[1][2]
    assert result.stdout.count("registered sentiment version") == 1
    assert "registered sentiment version 1 as @candidate" in result.stdout

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name("ddp")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "only rank 0 logs a run"
    assert runs[0].data.params["training.processes"] == "2"
    assert runs[0].data.params["data.train_sentences"] == str(TRAIN_ROWS)
    versions = client.search_model_versions("name='sentiment'")
    assert [str(v.version) for v in versions] == ["1"], "only rank 0 registers"
