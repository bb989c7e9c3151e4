"""POST /explain against a real `bentoml serve`: the contract, the 4xx discipline of /predict, and
an explanation whose prediction is the one /predict gives for the same text."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TEXT = (
    "The acting is wonderful and the story moves along nicely , "
    "but the ending felt rushed and rather dull to me"
)


def test_explain_matches_predict_and_covers_every_word(served_url: str) -> None:
    # The first explanation starts the explaining process: a longer timeout.
    answer = httpx.post(f"{served_url}/explain", json={"texts": [TEXT, "great"]}, timeout=180)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"explanations", "model_version", "timestamp"}
    first, second = body["explanations"]
    assert [w["word"] for w in first["words"]] == TEXT.split()
    assert [w["word"] for w in second["words"]] == ["great"]
    assert all(isinstance(w["attribution"], float) for w in first["words"])
    assert any(w["attribution"] != 0 for w in first["words"])
    predicted = httpx.post(
        f"{served_url}/predict", json={"texts": [TEXT], "return_probabilities": True}, timeout=30
    ).json()
    assert first["sentiment"] == predicted["predictions"][0]["sentiment"]
    assert first["confidence"] == pytest.approx(predicted["predictions"][0]["confidence"], abs=1e-4)
    assert body["model_version"] == predicted["model_version"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"texts": ["a"] * 9}, 413, "9 texts is more than the limit of 8"),
        ({"texts": []}, 400, "'texts' is empty"),
        ({"texts": [5]}, 400, "texts[0] is int"),
        ({"texts": ["a"], "return_probabilities": True}, 400, "unknown field"),
        ({"text": "a"}, 400, "unknown field(s): text"),
    ],
)
def test_bad_explain_bodies_get_one_line_4xx(
    served_url: str, body: object, status: int, message: str
) -> None:
    answer = httpx.post(f"{served_url}/explain", json=body, timeout=30)
    assert answer.status_code == status
    assert message in answer.json()["error"] and "\n" not in answer.json()["error"]


def test_explain_refuses_other_methods_and_media(served_url: str) -> None:
    assert httpx.get(f"{served_url}/explain", timeout=30).status_code == 405
    form = httpx.post(f"{served_url}/explain", data={"texts": "a"}, timeout=30)
    assert form.status_code == 415
    paths = httpx.get(f"{served_url}/docs.json", timeout=30).json()["paths"]
    assert "/explain" in paths and "/feedback" in paths
