"""A shared MLflow: a real PostgreSQL backend store and a real `mlflow server` serving the
artifacts from a folder; the tiny profile trains against it over HTTP and the model is imported
into a temporary BentoML store from it (README, "Scaling out")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from loadtests.postgres import PostgresServer
from loadtests.servers import ServerProcess, free_port
from tests.conftest import TINY_TRAINING
from tests.integration.conftest import running_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres("mlflow", "mlflow") as server:
        yield server


@pytest.fixture(scope="module")
def shared_mlflow(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    work = tmp_path_factory.mktemp("shared_mlflow")
    port = free_port()
    server = ServerProcess(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            postgres.url,
            "--artifacts-destination",
            str(work / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        # No background job consumers (six more processes, about 250 MB each): not used here.
        {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        work / "server.log",
        port,
        ready_path="/health",
    )
    try:
        server.wait_ready(timeout=120)
        yield server.url
    finally:
        server.stop()


def test_train_and_import_through_a_postgres_backed_mlflow(
    shared_mlflow: str, postgres: PostgresServer, sst2_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **TINY_TRAINING,
                "data": {"data_dir": str(sst2_dir)},
                "mlflow": {"experiment_name": "shared"},
            }
        )
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": shared_mlflow,
        "SENTIMENT_DATA_DIR": str(sst2_dir),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    started = time.monotonic()
    train = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "registered sentiment version 1 as @candidate" in train.stdout
    trained = time.monotonic()

    imported = subprocess.run(
        [sys.executable, "-m", "training.import_model"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    tag = next(w for w in imported.stdout.split() if w.startswith("sentiment:v1-"))
    print(
        f"trained in {trained - started:.0f} s, imported {tag} in "
        f"{time.monotonic() - trained:.0f} s"
    )

    # The registry and the run live in PostgreSQL, not in a local file.
    import sqlalchemy as sa

    engine = sa.create_engine(postgres.url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(
                sa.text("SELECT name, version FROM model_versions ORDER BY version")
            ).all()
            aliases = conn.execute(
                sa.text("SELECT name, alias, version FROM registered_model_aliases")
            ).all()
            runs = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar()
    finally:
        engine.dispose()
    assert [tuple(v) for v in versions] == [("sentiment", 1)]
    assert [tuple(a) for a in aliases] == [("sentiment", "candidate", 1)]
    assert runs == 1
    assert not list(tmp_path.glob("*.db")), "nothing fell back to a local sqlite store"

    # The Bento model is the registered version, with its provenance.
    store = subprocess.run(
        [
            sys.executable,
            "-c",
            "import bentoml, json, sys; m = bentoml.models.get(sys.argv[1]); "
            "print(json.dumps({'labels': m.info.labels, 'run': m.info.metadata['mlflow_run_id']}))",
            tag,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert store.returncode == 0, store.stderr[-2000:]
    assert '"mlflow_version": "1"' in store.stdout
