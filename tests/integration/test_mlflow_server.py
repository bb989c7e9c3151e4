"""Training logs and registers against a real `mlflow server` over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from loadtests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--artifacts-destination",
            str(work / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (work / "server.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("mlflow server did not come up in 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_train_registers_over_http(mlflow_server: str, sst2_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"max_length": 32},
                "training": {"epochs": 1, "max_train_samples": 64, "max_eval_samples": 64},
                "data": {"data_dir": str(sst2_dir)},
                "mlflow": {"experiment_name": "over-http", "alias": "staging"},
            }
        )
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered sentiment version 1 as @staging" in result.stdout

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    version = client.get_model_version_by_alias("sentiment", "staging")
    assert version.version == "1"
    assert float(version.tags["val_accuracy"]) > 0
    run = client.get_run(version.run_id)
    assert run.data.params["data.train_sentences"] == "64"
    assert "eval_f1" in run.data.metrics
    history = client.get_metric_history(version.run_id, "eval_accuracy")
    assert [m.step for m in history] == [1]
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "config")}
    assert artifacts == {"config/tiny.yaml"}
