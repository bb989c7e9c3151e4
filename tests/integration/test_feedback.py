"""Prediction ids, POST /feedback and the two accuracies against a real `bentoml serve`: the
realized accuracy is the one this test computes from its own labels, and what was accepted is
still counted after a restart and after `kill -9` of the whole server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from loadtests.postgres import PostgresServer
from loadtests.servers import ServerProcess, own_bentoml_home
from tests.integration.conftest import running_postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

TEXTS = [
    "a wonderful, moving film",
    "dull and far too long",
    "the best thing I have seen this year",
    "a tedious mess",
    "charming and funny",
    "I hated every minute",
    "an instant classic",
    "boring, predictable, forgettable",
]
OTHER = {"positive": "negative", "negative": "positive"}


def predict(url: str, texts: list[str]) -> list[dict[str, Any]]:
    answer = httpx.post(f"{url}/predict", json={"texts": texts}, timeout=30)
    assert answer.status_code == 200, answer.text
    predictions: list[dict[str, Any]] = answer.json()["predictions"]
    return predictions


def feedback(url: str, items: list[dict[str, str]]) -> httpx.Response:
    return httpx.post(f"{url}/feedback", json={"feedback": items}, timeout=30)


def performance(url: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/monitoring", timeout=30)
    assert answer.status_code == 200, answer.text
    block: dict[str, Any] = answer.json()["performance"]
    return block


def start(env: dict[str, str], log: Path) -> ServerProcess:
    server = ServerProcess.bentoml(env, log)
    try:
        server.wait_ready()
    except BaseException:  # pytest's timeout is not an Exception
        server.stop()
        raise
    return server


@pytest.fixture
def env(bento_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A BENTOML_HOME of its own: its feedback database starts empty. An estimate from 10
    predictions, so that a few requests show one."""
    return {**own_bentoml_home(bento_env, tmp_path), "ACCURACY_MIN_WINDOW": "10"}


def test_feedback_counts_survive_restart_and_kill_9(env: dict[str, str], tmp_path: Path) -> None:
    server = start(env, tmp_path / "first.log")
    try:
        shown = predict(server.url, TEXTS)
        ids = [p["id"] for p in shown]
        assert len(set(ids)) == len(TEXTS) and all(isinstance(i, str) and i for i in ids)
        assert set(shown[0]) == {"id", "sentiment", "confidence"}  # nothing else changed
        # Three right, two wrong by id; one right by text; one id the server never gave.
        items = [{"id": ids[i], "label": shown[i]["sentiment"]} for i in range(3)]
        items += [{"id": ids[i], "label": OTHER[shown[i]["sentiment"]]} for i in (3, 4)]
        items.append({"text": TEXTS[5], "label": shown[5]["sentiment"]})
        items.append({"id": "f" * 32, "label": "positive"})
        answer = feedback(server.url, items)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 6, "unknown": 1}

        predict(server.url, TEXTS)  # 16 predictions: over the estimate's minimum of 10
        block = performance(server.url)
        assert block["labelled_count"] == 6
        assert block["realized_accuracy"] == round(4 / 6, 4)
        assert block["window"] == 500
        assert block["estimator"] is not None, "the import step stored no estimator"
        assert 0.5 <= block["estimated_accuracy"] <= 1.0
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        assert "model_realized_accuracy" in metrics and "model_estimated_accuracy" in metrics

        bad = feedback(server.url, [{"id": ids[0], "label": "meh"}])
        assert bad.status_code == 400 and "label must be one of" in bad.json()["error"]
    finally:
        server.stop()  # SIGTERM: a clean stop

    server = start(env, tmp_path / "second.log")
    try:
        block = performance(server.url)
        assert (block["labelled_count"], block["realized_accuracy"]) == (6, round(4 / 6, 4))
        later = predict(server.url, TEXTS[:3])
        time.sleep(2.5)  # over the 1-s flush interval: these predictions are on disk now
        answer = feedback(server.url, [{"id": later[0]["id"], "label": later[0]["sentiment"]}])
        assert answer.json() == {"accepted": 1, "unknown": 0}
        workers = psutil.Process(server.proc.pid).children(recursive=True)
        server.kill()  # kill -9 of every process, right after the answer: no clean stop
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)
    finally:
        server.stop()

    server = start(env, tmp_path / "third.log")
    try:
        block = performance(server.url)
        assert (block["labelled_count"], block["realized_accuracy"]) == (7, round(5 / 7, 4))
        # A prediction made more than a flush interval before the kill is still known.
        wrong = OTHER[later[1]["sentiment"]]
        answer = feedback(server.url, [{"id": later[1]["id"], "label": wrong}])
        assert answer.json() == {"accepted": 1, "unknown": 0}
        block = performance(server.url)
        assert (block["labelled_count"], block["realized_accuracy"]) == (8, round(5 / 8, 4))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres("feedback", "feedback") as server:
        yield server


def test_two_replicas_share_one_postgresql_store(
    bento_env: dict[str, str], postgres: PostgresServer, tmp_path: Path
) -> None:
    """What one replica predicted, another takes feedback for: the multi-replica setting."""
    shared = {"SENTIMENT_FEEDBACK_DATABASE": postgres.url, "SENTIMENT_MODEL_PROCESSES": "1"}
    first = start({**own_bentoml_home(bento_env, tmp_path / "a"), **shared}, tmp_path / "a.log")
    try:
        second = start(
            {**own_bentoml_home(bento_env, tmp_path / "b"), **shared}, tmp_path / "b.log"
        )
        try:
            shown = predict(first.url, TEXTS[:4])
            # Another replica sees a prediction once its writer has flushed it (each second).
            time.sleep(2.5)
            items = [{"id": p["id"], "label": p["sentiment"]} for p in shown[:3]]
            items.append({"id": shown[3]["id"], "label": OTHER[shown[3]["sentiment"]]})
            answer = feedback(second.url, items)
            assert answer.json() == {"accepted": 4, "unknown": 0}
            for url in (first.url, second.url):
                block = performance(url)
                assert (block["labelled_count"], block["realized_accuracy"]) == (4, 0.75)
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_challenger_in_shadow_scores_every_sampled_prediction(
    env: dict[str, str], served_url: str, tmp_path: Path
) -> None:
    """The model imported from the alias `candidate` (here the served one itself) shadows every
    prediction: compared, in agreement, with the labels counted for both; the answers are those
    of a server without a shadow."""
    shadow = {**env, "SENTIMENT_SHADOW_MODEL": "alias:candidate"}
    shadow["SENTIMENT_SHADOW_SAMPLE_RATE"] = "1.0"
    server = start(shadow, tmp_path / "shadow.log")
    try:
        shown = predict(server.url, TEXTS)
        plain = predict(served_url, TEXTS)
        assert [(p["sentiment"], p["confidence"]) for p in shown] == [
            (p["sentiment"], p["confidence"]) for p in plain
        ]
        items = [{"id": p["id"], "label": p["sentiment"]} for p in shown[:3]]
        items.append({"id": shown[3]["id"], "label": OTHER[shown[3]["sentiment"]]})
        assert feedback(server.url, items).json() == {"accepted": 4, "unknown": 0}
        deadline = time.monotonic() + 60
        block: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            block = httpx.get(f"{server.url}/monitoring", timeout=30).json()["shadow"]
            if block is not None and block["compared"] == len(TEXTS):
                break
            time.sleep(0.5)
        assert block is not None and block["compared"] == len(TEXTS), block
        assert block["tag"].startswith("sentiment:") and block["agreement"] == 1.0
        assert block["labelled_count"] == 4
        assert block["champion_realized_accuracy"] == block["challenger_realized_accuracy"] == 0.75
        assert "shadow_agreement" in httpx.get(f"{server.url}/metrics", timeout=30).text
    finally:
        server.stop()
