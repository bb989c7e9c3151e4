"""Ray Serve peer: what a user would pick instead of the platform, on the same model.

One Ray Serve application on a local Ray instance started by this process: a FastAPI ingress
deployment with two replicas of one CPU each (this machine has two cores, like the platform's
two model processes), each holding the platform's own model code
(`serving.replica.Replica` on `cfg.with_model(num_threads=1, processes=0, engine=...)`), the
same Bento model version for both.

Settings, the ones a Ray Serve user would pick for this model:
- `@serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)`: 16 is the platform's largest
  forward pass (`model.forward_chunk_size`), 0.01 s Ray's default wait.
- `max_ongoing_requests=32` per replica: Ray warns below `max_batch_size`, and its default (5)
  would cap a batch of single texts at 5; 32 lets all 32 benchmark clients reach one replica.
- The forward pass runs in a thread (`asyncio.to_thread`), so the replica's event loop keeps
  taking requests into the next batch meanwhile.
- Every text of a request is submitted to the batched method on its own, so batches merge
  texts across requests, as the platform's batcher does.

HTTP (same contract as loadtests/baselines.py): `POST /predict` with
`{"texts": [...], "return_probabilities": bool}` answers `{"predictions": [{"sentiment",
"confidence"}]}`; `GET /readyz` is 200 once every replica of the application is running.

Run: `python -m loadtests.peers.ray_serve --engine torch --port 8002`; it serves until SIGTERM
or SIGINT, then shuts Serve and Ray down (no raylet or worker left behind).
"""

# No `from __future__ import annotations`: FastAPI must see the routes' real types (under Ray
# Serve's ingress a string annotation is not resolved, and `body` became a query parameter).
import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from typing import Any

import ray
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray import serve

from loadtests.peers.common import ENGINES, peer_config, prediction
from sentiment.config import ServingConfig

APP_NAME = "sentiment_peer"
REPLICAS = 2
MAX_BATCH_SIZE = 16
BATCH_WAIT_TIMEOUT_S = 0.01
MAX_ONGOING_REQUESTS = 32
# Only a few small objects travel through the object store: bound it (Ray's minimum is 75 MiB).
OBJECT_STORE_BYTES = 128 * 1024**2


class Body(BaseModel):
    texts: list[str]
    return_probabilities: bool = False


api = FastAPI()


@serve.deployment(
    num_replicas=REPLICAS,
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
)
@serve.ingress(api)
class RaySentiment:
    def __init__(self, cfg_json: str) -> None:
        from serving.replica import Replica

        self.replica = Replica.load(ServingConfig.model_validate_json(cfg_json))

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
    async def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.replica.classify, texts, False)

    @api.post("/predict")
    async def predict(self, body: Body) -> dict[str, Any]:
        raw = await asyncio.gather(*(self.classify(text) for text in body.texts))
        return {"predictions": [prediction(r, body.return_probabilities) for r in raw]}

    @api.get("/readyz")
    def ready(self) -> JSONResponse:
        # A sync route (FastAPI's thread pool): asking the controller blocks.
        app = serve.status().applications.get(APP_NAME)
        running = app is not None and app.status == "RUNNING"
        return JSONResponse({"running": running}, status_code=200 if running else 503)


def serve_until_stopped(engine: str, port: int) -> None:
    """Start Ray and the application on 127.0.0.1:`port`, serve until SIGTERM or SIGINT, then
    shut both down."""
    from serving.store import get_bento_model

    cfg = peer_config(engine)
    # Resolved once here: both replicas load the same version ("latest" could move).
    cfg = cfg.with_model(tag=str(get_bento_model(cfg.model.tag).tag))
    started = time.perf_counter()
    # No usage reports: these machines reach no internet.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local",
        num_cpus=REPLICAS,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        log_to_driver=False,
    )
    # After ray.init, which installs a SIGTERM handler of its own that exits at once.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # serve.deployment returns a Deployment; its stubs still type the name as the class.
        app = RaySentiment.bind(cfg.model_dump_json())  # type: ignore[attr-defined]
        serve.run(app, name=APP_NAME, route_prefix="/")
        print(
            f"ray serve peer ({engine}) on http://127.0.0.1:{port}, "
            f"ready in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        stop.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
        print("ray serve peer stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, default="torch")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve_until_stopped(args.engine, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
