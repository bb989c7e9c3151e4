"""The benchmark's peers (loadtests/peers/) answer what the platform's own model code answers:
the Ray Serve peer (torch engine) and the BentoML batchable peer, started for real on the tiny
test model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from loadtests.servers import ServerProcess, free_port, own_bentoml_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = [
    "a gorgeous, witty and moving film",
    "dull, lifeless and far too long",
    "the acting is superb",
    "i would not recommend it to anyone",
]

# The platform's replica on the peers' config, in a process of its own (the test process
# reads another model store).
REFERENCE = """
import json, sys
from loadtests.peers.common import peer_config
from sentiment.config import load_serving_config
from serving.replica import Replica
# "torch": the Ray Serve peer's copy; "served": the platform's own settings (the batchable peer).
cfg = peer_config("torch") if sys.argv[2] == "torch" else load_serving_config()
replica = Replica.load(cfg.with_model(processes=0))
texts = json.loads(sys.argv[1])
print(json.dumps([replica.classify([t], with_embeddings=False)[0] for t in texts]))
"""


# How far batch-mates may move a confidence: the torch int8 path scales activations per token
# (float rounding only). The served ONNX graph scales them per token too and answers to the bit
# whatever the batch (README, Performance); its bound still dates from the per-pass export.
TOLERANCE = {"torch": 2e-3, "served": 3e-2}


def ray_processes_of(pid: int) -> list[psutil.Process]:
    """Ray's processes that belong to the peer `pid` started (raylet, GCS, workers): those
    whose ancestry leads to it."""
    found = []
    for process in psutil.process_iter():
        try:
            if any(parent.pid == pid for parent in process.parents()):
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def reference(which: str, env: dict[str, str]) -> list[dict]:
    """The platform's replica's answers to TEXTS on `which` settings, in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-c", REFERENCE, json.dumps(TEXTS), which],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers: list[dict] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


def test_peers_answer_as_the_platforms_replica(bento_env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    ray_port, bento_port = free_port(), free_port()
    ray_argv = [sys.executable, "-m", "loadtests.peers.ray_serve"]
    ray_argv += ["--engine", "torch", "--port", str(ray_port)]
    bento_argv = [sys.executable, "-m", "bentoml", "serve"]
    bento_argv += ["loadtests.peers.bento_batchable:BatchableSentiment"]
    bento_argv += ["--host", "127.0.0.1", "--port", str(bento_port)]
    ray_peer = ServerProcess(ray_argv, bento_env, tmp_path / "ray.log", ray_port)
    bento_peer = ServerProcess(
        bento_argv, own_bentoml_home(bento_env, tmp_path), tmp_path / "bento.log", bento_port
    )
    ray_pid = ray_peer.proc.pid
    try:
        expected = {which: reference(which, bento_env) for which in ("torch", "served")}
        ray_peer.wait_ready(timeout=85)
        bento_peer.wait_ready(timeout=85)
        ray_children = ray_processes_of(ray_pid)
        assert any("raylet" in " ".join(p.cmdline()) for p in ray_children)

        with httpx.Client(timeout=30) as client:

            def ray_predict(texts: list[str]) -> list[dict]:
                body = {"texts": texts, "return_probabilities": True}
                resp = client.post(f"{ray_peer.url}/predict", json=body)
                assert resp.status_code == 200, resp.text
                predictions: list[dict] = resp.json()["predictions"]
                return predictions

            def bento_predict(texts: list[str]) -> list[dict]:
                resp = client.post(f"{bento_peer.url}/predict", json={"texts": texts})
                assert resp.status_code == 200, resp.text
                predictions: list[dict] = resp.json()
                return predictions

            requests = [TEXTS[:1], TEXTS[1:4], TEXTS[3:4]]
            # Sent at once, so the batched methods can merge texts across requests.
            with ThreadPoolExecutor(len(requests)) as threads:
                ray_answers = list(threads.map(ray_predict, requests))
                bento_answers = list(threads.map(bento_predict, requests))
    finally:
        ray_peer.stop()
        bento_peer.stop()

    indices = [[0], [1, 2, 3], [3]]
    for answers, which in ((ray_answers, "torch"), (bento_answers, "served")):
        assert [len(a) for a in answers] == [1, 3, 1]
        for answer, wanted in zip(answers, indices, strict=True):
            for got, i in zip(answer, wanted, strict=True):
                want = expected[which][i]
                assert got["sentiment"] == want["label"], (got, want)
                assert got["confidence"] == pytest.approx(want["confidence"], abs=TOLERANCE[which])
    assert set(ray_answers[0][0]["probabilities"]) == set(expected["torch"][0]["probabilities"])
    # SIGTERM shut Ray down: nothing it started is left running.
    deadline = time.monotonic() + 10
    while (left := [p for p in ray_children if p.is_running()]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE], left
    assert time.monotonic() - started < 150
