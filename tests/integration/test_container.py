"""The shipped image: `bentoml build` + `bentoml containerize` on a real Docker engine, then the
container serves /predict, /ui, /metrics and /monitoring with the model baked in.

Uses the local Debian base image (scripts/build_base_image.sh), built once and kept by the
engine. Without a Docker engine this test fails with a one-line reason: CI must provide one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from deploy.security_scan import image_user, is_root_user
from loadtests.servers import free_port
from tests.integration.conftest import docker

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def container(image: dict[str, object]) -> Iterator[dict[str, str]]:
    port = free_port()
    name = f"sentiment-test-{uuid.uuid4().hex[:8]}"
    started = docker(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:3000", str(image["name"])
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 300
        status = "starting"
        while time.monotonic() < deadline:
            status = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
            if status in {"healthy", "unhealthy"} or not status:
                break
            time.sleep(3)
        logs = docker("logs", "--tail", "40", name)
        assert status == "healthy", (
            f"container is {status!r}: {logs.stdout[-3000:]}{logs.stderr[-3000:]}"
        )
        yield {"name": name, "url": f"http://127.0.0.1:{port}"}
    finally:
        docker("rm", "-f", name)
        assert docker("inspect", name).returncode != 0, f"container {name} was not removed"


def test_image_runs_as_non_root_with_a_health_check(image: dict[str, object]) -> None:
    config = json.loads(docker("image", "inspect", str(image["name"])).stdout)[0]["Config"]
    # The same check `make security-scan` runs on the built image.
    user = image_user(str(image["name"]))
    assert user == config["User"] and not is_root_user(user), f"image runs as root ({user!r})"
    assert config["Healthcheck"]["Test"][0] == "CMD-SHELL"
    assert "/health" in config["Healthcheck"]["Test"][1]
    uid = docker("run", "--rm", "--entrypoint", "id", str(image["name"]), "-u").stdout.strip()
    assert uid not in ("", "0")


def test_image_has_cpu_torch_only(image: dict[str, object]) -> None:
    """The CPU wheel from the base image, not PyPI's CUDA build with its nvidia-* wheels."""
    probe = docker(
        "run",
        "--rm",
        "--entrypoint",
        "python",
        str(image["name"]),
        "-c",
        "import importlib.metadata as m, torch; "
        "cuda = [d for d in m.distributions() if d.metadata['Name'].startswith('nvidia-cu')]; "
        "print(torch.__version__, len(cuda))",
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    version, cuda_wheels = probe.stdout.split()
    assert version.endswith("+cpu")
    assert cuda_wheels == "0"


def test_container_serves_predictions_with_the_baked_model(
    container: dict[str, str], bento_env: dict[str, str]
) -> None:
    url = container["url"]
    resp = httpx.post(
        f"{url}/predict",
        json={"texts": ["a wonderful, moving film", "dull, lifeless and far too long"]},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    labels = [p["sentiment"] for p in resp.json()["predictions"]]
    assert labels == ["positive", "negative"]
    info = httpx.get(f"{url}/model/info", timeout=30).json()
    assert info["tag"] == bento_env["SENTIMENT_MODEL_TAG"]
    bad = httpx.post(f"{url}/predict", json={"texts": []}, timeout=30)
    assert bad.status_code == 400


def test_container_serves_ui_metrics_and_monitoring(container: dict[str, str]) -> None:
    url = container["url"]
    httpx.post(f"{url}/predict", json={"texts": ["a fine film"]}, timeout=60).raise_for_status()
    ui = httpx.get(f"{url}/ui/", timeout=60, follow_redirects=True)
    assert ui.status_code == 200
    assert "gradio" in ui.text.lower()
    metrics = httpx.get(f"{url}/metrics", timeout=30)
    assert metrics.status_code == 200
    assert "bentoml_service_request_total" in metrics.text
    deadline = time.monotonic() + 60
    while "prediction_total" not in metrics.text and time.monotonic() < deadline:
        time.sleep(2)  # the monitor publishes from its background thread
        metrics = httpx.get(f"{url}/metrics", timeout=30)
    assert "prediction_total" in metrics.text
    monitoring = httpx.get(f"{url}/monitoring", timeout=30)
    assert monitoring.status_code == 200
    assert "drift_status" in monitoring.json()
