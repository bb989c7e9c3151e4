import asyncio
import json
from typing import Any

import pytest

from serving.http import (
    MAX_JSON_DEPTH,
    FeedbackLabel,
    JsonMetrics,
    Limits,
    PredictGuard,
    RequestError,
    TaskControl,
    UploadLimit,
    explain_response,
    format_prediction,
    health_payload,
    is_json_content_type,
    json_depth,
    model_info_payload,
    parse_predict_body,
    predict_response,
    prediction_ids,
    validate_explain_payload,
    validate_feedback_payload,
    wants_json,
)

LIMITS = Limits(max_texts=3, max_text_chars=10, max_request_bytes=200)


def test_valid_body() -> None:
    req = parse_predict_body(b'{"texts": ["good"], "return_probabilities": true}', LIMITS)
    assert req.texts == ["good"] and req.return_probabilities is True


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"nope", 400, "body is not valid JSON"),
        (b'"x"', 400, "must be a JSON object"),
        (b'{"text": ["a"]}', 400, "unknown field(s): text"),
        (b"{}", 400, "missing field 'texts'"),
        (b'{"texts": []}', 400, "'texts' is empty"),
        (b'{"texts": [null]}', 400, "texts[0] is NoneType, not a string"),
        (b'{"texts": [""]}', 400, "texts[0] is empty"),
        (b'{"texts": ["a","b","c","d"]}', 413, "4 texts is more than the limit of 3"),
        (b'{"texts": ["01234567890"]}', 413, "texts[0] has 11 characters"),
        (b'{"texts": ["a"], "return_probabilities": 1}', 400, "must be true or false"),
        (b" " * 201, 413, "request body over 200 bytes"),
    ],
)
def test_rejections(body: bytes, status: int, message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_predict_body(body, LIMITS)
    assert info.value.status == status
    assert message in str(info.value)


def test_format_prediction_rounds_and_hides_probabilities() -> None:
    raw = {
        "label": "positive",
        "confidence": 0.91234567,
        "probabilities": {"positive": 0.91234567, "negative": 0.08765433},
    }
    assert format_prediction(raw, False, "a1") == {
        "id": "a1",
        "sentiment": "positive",
        "confidence": 0.912346,
    }
    assert format_prediction(raw, True, "a1")["probabilities"] == {
        "positive": 0.912346,
        "negative": 0.087654,
    }
    body = predict_response([raw, raw], False, "v1", ["a1", "b2"])
    assert [p["id"] for p in body["predictions"]] == ["a1", "b2"]
    assert body["model_version"] == "v1" and body["timestamp"].endswith("+00:00")


def test_prediction_ids_are_unique_hex_strings() -> None:
    ids = prediction_ids(1000)
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert prediction_ids(0) == []


def test_valid_feedback_body() -> None:
    body = {
        "feedback": [
            {"id": "abc", "label": "Positive"},
            {"text": "a film", "label": "negative"},
            {"id": "x", "text": "t", "label": "negative"},
        ]
    }
    assert validate_feedback_payload(body, LIMITS) == [
        FeedbackLabel("positive", "abc", None),
        FeedbackLabel("negative", None, "a film"),
        FeedbackLabel("negative", "x", "t"),
    ]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ([], 400, "must be a JSON object"),
        ({"feedback": []}, 400, "'feedback' is empty"),
        ({"feedback": {"id": "a"}}, 400, "'feedback' must be a list"),
        ({"feedback": [], "x": 1}, 400, "unknown field(s): x"),
        ({"feedback": [{"id": "a", "label": "meh"}]}, 400, "feedback[0].label must be one of"),
        ({"feedback": [{"id": "a"}]}, 400, "feedback[0].label must be one of"),
        ({"feedback": [{"label": "positive"}]}, 400, "feedback[0] needs 'id'"),
        ({"feedback": [{"id": 5, "label": "positive"}]}, 400, "feedback[0].id must be"),
        ({"feedback": [{"id": "a" * 65, "label": "positive"}]}, 400, "feedback[0].id must be"),
        ({"feedback": [{"text": " ", "label": "positive"}]}, 400, "feedback[0].text must be"),
        ({"feedback": [{"text": "x" * 11, "label": "positive"}]}, 413, "over the limit of 10"),
        ({"feedback": ["a"]}, 400, "feedback[0] must be an object"),
        ({"feedback": [{"id": "a", "label": "positive", "why": 1}]}, 400, "unknown field(s): why"),
        ({"feedback": [{"id": "a", "label": "positive"}] * 4}, 413, "4 labels is more than"),
    ],
)
def test_feedback_rejections(payload: Any, status: int, message: str) -> None:
    limits = Limits(max_texts=3, max_text_chars=10, max_request_bytes=200, max_feedback_items=3)
    with pytest.raises(RequestError) as info:
        validate_feedback_payload(payload, limits)
    assert info.value.status == status
    assert message in str(info.value)


def run_guard(
    body: bytes, method: str = "POST", path: str = "/predict"
) -> tuple[int, Any, list[bytes]]:
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []
    chunks = [body[:5], body[5:]]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = PredictGuard(app, LIMITS)
    scope = {"type": "http", "path": path, "method": method}
    asyncio.run(guard(scope, receive, send))
    status = sent[0]["status"]
    payload = sent[1]["body"]
    return status, payload, seen


def test_guard_replays_a_good_body_to_the_app() -> None:
    status, payload, seen = run_guard(b'{"texts": ["good"]}')
    assert status == 200 and payload == b"ok"
    assert seen == [b'{"texts": ["good"]}']


def test_guard_answers_bad_body_itself() -> None:
    status, payload, seen = run_guard(b'{"texts": []}')
    assert status == 400 and seen == []
    assert json.loads(payload) == {"error": "'texts' is empty; send at least one text"}


def test_guard_checks_feedback_bodies_too() -> None:
    status, payload, seen = run_guard(b'{"feedback": [{"id": "a"}]}', path="/feedback")
    assert status == 400 and seen == []
    assert "feedback[0].label must be one of" in json.loads(payload)["error"]
    good = b'{"feedback": [{"id": "a", "label": "negative"}]}'
    status, payload, seen = run_guard(good, path="/feedback")
    assert status == 200 and seen == [good]


def test_explain_bodies_have_their_own_smaller_limit() -> None:
    limits = Limits(max_texts=10, max_text_chars=50, max_request_bytes=500, max_explain_texts=2)
    assert validate_explain_payload({"texts": ["a", "b"]}, limits).texts == ["a", "b"]
    with pytest.raises(RequestError) as info:
        validate_explain_payload({"texts": ["a", "b", "c"]}, limits)
    assert info.value.status == 413 and "3 texts is more than the limit of 2" in str(info.value)
    with pytest.raises(RequestError, match="unknown field"):
        validate_explain_payload({"texts": ["a"], "return_probabilities": True}, limits)
    with pytest.raises(RequestError, match="'texts' is empty"):
        validate_explain_payload({"texts": []}, limits)


def test_explain_response_rounds_and_keeps_word_order() -> None:
    raw = {
        "sentiment": "negative",
        "confidence": 0.87654321,
        "probabilities": {"negative": 0.87654321, "positive": 0.12345679},
        "words": [
            {"word": "not", "attribution": 0.3333333333},
            {"word": "good", "attribution": -0.1},
        ],
    }
    body = explain_response([raw], "v2")
    assert body["explanations"] == [
        {
            "sentiment": "negative",
            "confidence": 0.876543,
            "probabilities": {"negative": 0.876543, "positive": 0.123457},
            "words": [
                {"word": "not", "attribution": 0.333333},
                {"word": "good", "attribution": -0.1},
            ],
        }
    ]
    assert body["model_version"] == "v2"


def test_guard_refuses_get() -> None:
    status, _, seen = run_guard(b"", method="GET")
    assert status == 405 and seen == []


def test_guard_passes_other_paths() -> None:
    status, _, seen = run_guard(b"anything", path="/health")
    assert status == 200 and seen == [b"anyth"]


# --- bodies the JSON parser itself would fail on ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b'{"texts": ["a"]}', 2),
        (b"[[[]]]", 3),
        (b'{"texts": ["[[[[{{{{", "]]"]}', 2),
        (b'["\\"[[[", [[]]]', 3),
        (b"1", 0),
        (b"", 0),
    ],
)
def test_json_depth_skips_strings_and_escapes(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_json_depth_stops_once_past_the_limit() -> None:
    assert json_depth(b"[" * 1000, stop_above=16) == 17
    assert json_depth(b"[[]]" * 1000, stop_above=16) == 2


def test_deep_nesting_is_refused_before_parsing() -> None:
    with pytest.raises(RequestError, match=f"nested deeper than {MAX_JSON_DEPTH} levels") as err:
        parse_predict_body(b"[" * 100_000 + b"]" * 100_000, Limits(3, 10, 300_000))
    assert err.value.status == 400
    # At the limit the parser runs and the usual reason comes back.
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    with pytest.raises(RequestError, match="must be a JSON object"):
        parse_predict_body(at_limit, LIMITS)


def test_brackets_inside_texts_are_not_nesting() -> None:
    text = "[{" * 4
    req = parse_predict_body(json.dumps({"texts": [text, text, text]}).encode(), LIMITS)
    assert req.texts == [text, text, text]


def test_an_integer_of_5000_digits_is_a_400() -> None:
    body = b'{"texts": ["a"], "return_probabilities": ' + b"9" * 5000 + b"}"
    with pytest.raises(RequestError, match="a number in it is too long") as err:
        parse_predict_body(body, Limits(3, 10, 10_000))
    assert err.value.status == 400


def test_a_body_that_never_ends_gets_408() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not see a body that never arrived")

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = PredictGuard(app, Limits(3, 10, 200, read_timeout_s=0.05))
    asyncio.run(guard({"type": "http", "path": "/predict", "method": "POST"}, receive, send))
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"]) == {"error": "request body not received within 0.05 s"}


@pytest.mark.parametrize(
    ("alive", "total", "status", "code"),
    [
        (2, 2, "healthy", 200),
        (1, 2, "degraded", 200),
        (0, 2, "unhealthy", 503),
        (1, 1, "healthy", 200),
    ],
)
def test_health_is_200_while_any_replica_serves(
    alive: int, total: int, status: str, code: int
) -> None:
    payload, answered = health_payload(alive, total)
    assert answered == code
    assert (payload["status"], payload["model_loaded"]) == (status, alive > 0)
    assert (payload["replicas_alive"], payload["replicas"]) == (alive, total)


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        (None, True),
        (b"application/json", True),
        (b"Application/JSON; charset=utf-8", True),
        (b"application/vnd.api+json", True),
        (b"text/plain", False),
        (b"application/x-www-form-urlencoded", False),
        (b"multipart/form-data; boundary=x", False),
        (b"application/jsonx", False),
    ],
)
def test_only_json_content_types_are_accepted(content_type: bytes | None, accepted: bool) -> None:
    headers = [] if content_type is None else [(b"content-type", content_type)]
    assert is_json_content_type({"headers": headers}) is accepted


@pytest.mark.parametrize(
    ("accept", "json_wanted"),
    [
        (None, False),
        (b"*/*", False),
        (b"application/json", True),
        (b"application/json, text/javascript;q=0.9", True),
        (b"application/json, text/plain;q=0.5", False),
        (
            b"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            False,
        ),
    ],
)
def test_only_a_json_accept_gets_json_metrics(accept: bytes | None, json_wanted: bool) -> None:
    headers = [] if accept is None else [(b"accept", accept)]
    assert wants_json({"headers": headers}) is json_wanted


def test_json_metrics_answers_the_summary_and_passes_everything_else() -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])

    def summary() -> dict[str, Any]:
        return {"total_predictions": 3, "drift_status": {"drift_detected": False}}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = JsonMetrics(app, summary)
    asked = {"type": "http", "path": "/metrics", "method": "GET"}
    asyncio.run(middleware({**asked, "headers": [(b"accept", b"application/json")]}, None, send))
    asyncio.run(middleware({**asked, "headers": []}, None, send))
    assert json.loads(sent[1]["body"]) == summary()
    assert calls == ["/metrics"]


def test_model_info_has_the_original_keys_too() -> None:
    info = {"name": "sentiment", "version": "v1", "labels": ["negative", "positive"]}
    payload = model_info_payload({**info, "max_length": 128})
    assert payload["model_name"] == "sentiment" and payload["model_version"] == "v1"
    assert payload["name"] == "sentiment" and payload["max_length"] == 128


def test_uploads_must_state_a_length_within_the_limit() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    part = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="r.csv"\r\n\r\n'
        b"text\nhi\n\r\n--x--\r\n"
    )

    def status(
        headers: list[tuple[bytes, bytes]],
        method: str = "POST",
        path: str = "/f",
        body: bytes = part,
    ) -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "path": path, "method": method, "headers": headers}
        asyncio.run(UploadLimit(app, max_bytes=100, paths=("/f",))(scope, receive, send))
        return int(sent[0]["status"])

    form = (b"content-type", b"multipart/form-data; boundary=x")
    assert status([(b"content-length", b"100"), form]) == 200
    # A part without headers: BentoML's parser answered it with a 500 (schemathesis).
    garbage = b"--x\r\n\xf3\xbd\x86\xb7--x--\r\n"
    assert status([(b"content-length", b"20"), form], body=garbage) == 400
    assert status([(b"content-length", b"101"), form]) == 413
    assert status([form]) == 411
    assert status([(b"content-length", b"-1"), form]) == 411
    assert status([(b"content-length", b"9"), (b"content-type", b"multipart/form-data")]) == 400
    assert status([(b"content-length", b"9"), (b"content-type", b"text/csv")]) == 415
    assert status([(b"content-length", b"9")]) == 415
    assert status([], method="GET") == 200
    assert status([], path="/other") == 200


def test_task_cancel_and_retry_are_refused_and_the_rest_passes() -> None:
    passed: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        passed.append(scope["path"])

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = TaskControl(app, task_routes=("/predict_file",))
    for path in ("/predict_file/cancel", "/predict_file/retry", "/predict_file/get"):
        asyncio.run(guard({"type": "http", "path": path, "method": "PUT"}, None, send))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [400, 400]
    assert json.loads(sent[1]["body"])["error"].startswith("a file task cannot cancel here")
    assert passed == ["/predict_file/get"]
