"""Shared fixtures: SST-2 files, a tiny model trained into a temporary MLflow, imported into a
temporary BentoML store, and a real `bentoml serve` over it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from loadtests.servers import ServerProcess
from sentiment.data import resolve_reviews_file, resolve_sst2_dir

# Enough to learn the direction of obvious sentences in about 30 s on 2 cores.
TINY_TRAINING = {
    "model": {"max_length": 64},
    "training": {
        "epochs": 1,
        "batch_size": 16,
        "learning_rate": 1.5e-4,
        "max_train_samples": 600,
        "max_eval_samples": 300,
    },
}


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    folder = resolve_sst2_dir(os.environ.get("SENTIMENT_DATA_DIR"))
    if folder is None:
        pytest.fail("SST-2 TSV files not found: set SENTIMENT_DATA_DIR or provide ../shared/data")
    return folder


@pytest.fixture(scope="session")
def reviews_file() -> Path:
    return resolve_reviews_file()


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory, sst2_dir: Path) -> dict[str, str]:
    """A tiny model trained on a few hundred SST-2 sentences, registered as sentiment@candidate."""
    work = tmp_path_factory.mktemp("mlflow")
    config = work / "tiny.yaml"
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    config.write_text(
        yaml.safe_dump(
            {
                **TINY_TRAINING,
                "data": {"data_dir": str(sst2_dir)},
                "mlflow": {"tracking_uri": tracking_uri, "experiment_name": "tests"},
            }
        )
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "SENTIMENT_DATA_DIR": str(sst2_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", str(config)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        "tracking_uri": tracking_uri,
        "model_name": "sentiment",
        "alias": "candidate",
        "config": str(config),
        "workdir": str(work),
        "train_stdout": result.stdout,
    }


@pytest.fixture(scope="session")
def bento_env(
    tmp_path_factory: pytest.TempPathFactory, trained_registry: dict[str, str], sst2_dir: Path
) -> dict[str, str]:
    """Environment for subprocesses: a temporary BENTOML_HOME holding the imported model."""
    home = tmp_path_factory.mktemp("bentoml_home")
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "MLFLOW_TRACKING_URI": trained_registry["tracking_uri"],
        "SENTIMENT_DATA_DIR": str(sst2_dir),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    result = subprocess.run(
        [sys.executable, "-m", "training.import_model"],
        cwd=trained_registry["workdir"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tag = next(word for word in result.stdout.split() if word.startswith("sentiment:"))
    return {**env, "SENTIMENT_MODEL_TAG": tag}


@pytest.fixture(scope="session")
def server(
    bento_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real `bentoml serve service:SentimentAPI` on a free port (a 2-s body read timeout, so
    the slow-body test is quick)."""
    env = {**bento_env, "SENTIMENT_READ_TIMEOUT_S": "2"}
    proc = ServerProcess.bentoml(env, tmp_path_factory.mktemp("serve") / "bentoml.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def served_url(server: ServerProcess) -> str:
    return server.url
