"""The HTTP contract of `/predict` and `/feedback`: request checks, the ASGI guard, and the
response shape.

The guard reads and checks the body before BentoML sees it, so every malformed body gets a
one-line 4xx at once. Python's own JSON parser has two ways to fail that are not a
JSONDecodeError: nesting deeper than the interpreter's recursion limit (RecursionError, after
seconds of work at 100k levels) and integers over 4,300 digits (ValueError). The guard measures
the nesting itself first, in one linear pass, and turns both into a 400.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from sentiment.config import ServingConfig
from sentiment.labels import LABEL_NAMES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# Health probes (ours and BentoML's) and the Prometheus scrape: never refused for load, and the
# probes never need a key.
PROBE_PATHS = frozenset({"/health", "/healthz", "/livez", "/readyz"})
METRICS_PATH = "/metrics"

# A /predict body is an object holding a list of strings: 2 levels. Anything deeper than this
# is not a request the API could accept, and it is refused before the parser recurses into it.
MAX_JSON_DEPTH = 16


class RequestError(ValueError):
    """A request the API refuses; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def service_options(cfg: ServingConfig) -> dict[str, Any]:
    """The `@bentoml.service` settings that the serving config decides."""
    api = cfg.api
    return {
        "workers": api.workers,
        # The admission gate (serving/admission.py) enforces max_concurrency with Retry-After;
        # BentoML's own limiter stays, at twice that, as a backstop only.
        "traffic": {"timeout": api.timeout_s, "max_concurrency": 2 * api.max_concurrency},
        "logging": {"access": {"enabled": api.access_log}},
        # Excluded URLs get no span at all; "" excludes nothing.
        "tracing": {"excluded_urls": "" if api.trace_predict else "/predict"},
    }


@dataclass(frozen=True)
class Limits:
    max_texts: int
    max_text_chars: int
    max_request_bytes: int
    # The whole body must arrive within this; a slow or unterminated body is answered 408.
    read_timeout_s: float = 10.0
    # Labels in one /feedback body.
    max_feedback_items: int = 2048
    # Texts in one /explain body.
    max_explain_texts: int = 8


def json_depth(body: bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in a JSON text, strings skipped.

    Linear in the body and without recursion, so it is safe on any input; it does not
    validate the JSON (the parser does that once the depth is known to be small). With
    `stop_above`, it returns as soon as the depth passes that (a 1 MB run of "[" costs 17
    steps, not a million)."""
    limit = len(body) if stop_above is None else stop_above
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


@dataclass(frozen=True)
class PredictRequest:
    texts: list[str]
    return_probabilities: bool


def parse_predict_body(body: bytes, limits: Limits) -> PredictRequest:
    """Check a raw /predict body; raise RequestError with a one-line reason."""
    return validate_predict_payload(parse_json_body(body, limits), limits)


def parse_json_body(body: bytes, limits: Limits) -> Any:
    """A raw JSON body, bounded in size and nesting; RequestError with a one-line reason."""
    if len(body) > limits.max_request_bytes:
        raise RequestError(f"request body over {limits.max_request_bytes} bytes", 413)
    # Counting brackets runs at C speed; the byte-by-byte scan only when there are enough of
    # them to nest too deep (a normal body has one of each).
    brackets = body.count(b"[") + body.count(b"{")
    if brackets > MAX_JSON_DEPTH and json_depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise RequestError(f"body is not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from None
    except (ValueError, RecursionError):
        # int() refuses more than sys.get_int_max_str_digits() digits with a plain ValueError.
        raise RequestError("body is not valid JSON: a number in it is too long") from None
    return payload


def validate_explain_payload(payload: Any, limits: Limits) -> PredictRequest:
    """An /explain body: {"texts": [...]} as for /predict, with the (smaller) explain limit."""
    if isinstance(payload, dict) and "return_probabilities" in payload:
        raise RequestError("unknown field(s): return_probabilities")
    return validate_predict_payload(
        payload, dataclasses.replace(limits, max_texts=limits.max_explain_texts)
    )


def validate_predict_payload(payload: Any, limits: Limits) -> PredictRequest:
    if not isinstance(payload, dict):
        raise RequestError('body must be a JSON object like {"texts": ["..."]}')
    unknown = sorted(set(payload) - {"texts", "return_probabilities"})
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}")
    if "texts" not in payload:
        raise RequestError("missing field 'texts' (a list of strings)")
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise RequestError("'texts' must be a list of strings")
    if not texts:
        raise RequestError("'texts' is empty; send at least one text")
    if len(texts) > limits.max_texts:
        raise RequestError(f"{len(texts)} texts is more than the limit of {limits.max_texts}", 413)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(f"texts[{i}] is {type(text).__name__}, not a string")
        if not text.strip():
            raise RequestError(f"texts[{i}] is empty")
        if len(text) > limits.max_text_chars:
            raise RequestError(
                f"texts[{i}] has {len(text)} characters, over the limit of {limits.max_text_chars}",
                413,
            )
    flag = payload.get("return_probabilities", False)
    if not isinstance(flag, bool):
        raise RequestError("'return_probabilities' must be true or false")
    return PredictRequest(texts, flag)


# A prediction id as /predict hands it out: 32 hex digits. /feedback takes nothing longer.
MAX_ID_CHARS = 64
FEEDBACK_FIELDS = frozenset({"id", "text", "label"})


@dataclass(frozen=True)
class FeedbackLabel:
    """One label of a /feedback body: for the prediction `prediction_id`, or else for the latest
    prediction of `text`."""

    label: str
    prediction_id: str | None = None
    text: str | None = None


def validate_feedback_payload(payload: Any, limits: Limits) -> list[FeedbackLabel]:
    if not isinstance(payload, dict):
        raise RequestError(
            'body must be a JSON object like {"feedback": [{"id": "...", "label": "positive"}]}'
        )
    unknown = sorted(set(payload) - {"feedback"})
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}")
    items = payload.get("feedback")
    if not isinstance(items, list):
        raise RequestError("'feedback' must be a list of {id or text, label} objects")
    if not items:
        raise RequestError("'feedback' is empty; send at least one label")
    if len(items) > limits.max_feedback_items:
        raise RequestError(
            f"{len(items)} labels is more than the limit of {limits.max_feedback_items}", 413
        )
    return [feedback_label(i, item, limits) for i, item in enumerate(items)]


def feedback_label(i: int, item: Any, limits: Limits) -> FeedbackLabel:
    where = f"feedback[{i}]"
    if not isinstance(item, dict):
        raise RequestError(f"{where} must be an object with 'label' and 'id' or 'text'")
    unknown = sorted(set(item) - FEEDBACK_FIELDS)
    if unknown:
        raise RequestError(f"{where}: unknown field(s): {', '.join(unknown)}")
    label = item.get("label")
    if not isinstance(label, str) or label.strip().lower() not in LABEL_NAMES:
        raise RequestError(f"{where}.label must be one of {', '.join(LABEL_NAMES)}")
    prediction_id, text = item.get("id"), item.get("text")
    if prediction_id is None and text is None:
        raise RequestError(f"{where} needs 'id' (from /predict) or 'text'")
    if prediction_id is not None and (
        not isinstance(prediction_id, str) or not 0 < len(prediction_id) <= MAX_ID_CHARS
    ):
        raise RequestError(f"{where}.id must be a prediction id from /predict")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise RequestError(f"{where}.text must be a non-empty string")
        if len(text) > limits.max_text_chars:
            raise RequestError(f"{where}.text is over the limit of {limits.max_text_chars}", 413)
    return FeedbackLabel(label.strip().lower(), prediction_id, text)


class FeedbackIn(BaseModel):
    id: str | None = None
    text: str | None = None
    label: str


class FeedbackResponse(BaseModel):
    """`/feedback`'s answer: labels stored (committed), and those whose id or text matched no
    stored prediction."""

    accepted: int
    unknown: int


class PredictionOut(BaseModel):
    id: str
    sentiment: Literal["positive", "negative"]
    confidence: float
    # Present only when the request asked for return_probabilities.
    probabilities: dict[str, float] | None = None


class PredictResponse(BaseModel):
    """`/predict`'s answer, for the OpenAPI document (the service writes the JSON itself)."""

    predictions: list[PredictionOut]
    model_version: str
    timestamp: str


class WordOut(BaseModel):
    word: str
    # Towards the predicted label: + made it more confident, - pulled towards the other label.
    attribution: float


class ExplanationOut(BaseModel):
    sentiment: Literal["positive", "negative"]
    confidence: float
    probabilities: dict[str, float]
    words: list[WordOut]


class ExplainResponse(BaseModel):
    """`/explain`'s answer: per text the prediction and its words, in text order."""

    explanations: list[ExplanationOut]
    model_version: str
    timestamp: str


def explain_response(raw: Sequence[dict[str, Any]], model_version: str) -> dict[str, Any]:
    return {
        "explanations": [
            {
                "sentiment": r["sentiment"],
                "confidence": round(r["confidence"], 6),
                "probabilities": {k: round(v, 6) for k, v in r["probabilities"].items()},
                "words": [
                    {"word": w["word"], "attribution": round(w["attribution"], 6)}
                    for w in r["words"]
                ],
            }
            for r in raw
        ],
        "model_version": model_version,
        "timestamp": now_iso(),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def prediction_ids(count: int) -> list[str]:
    """Fresh ids for `count` predictions: random, so workers and replicas need no coordination."""
    return [uuid.uuid4().hex for _ in range(count)]


def format_prediction(
    raw: dict[str, Any], return_probabilities: bool, prediction_id: str
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": prediction_id,
        "sentiment": raw["label"],
        "confidence": round(raw["confidence"], 6),
    }
    if return_probabilities:
        probs = raw["probabilities"]
        item["probabilities"] = {
            "positive": round(probs["positive"], 6),
            "negative": round(probs["negative"], 6),
        }
    return item


def predict_response(
    raw: Sequence[dict[str, Any]],
    return_probabilities: bool,
    model_version: str,
    ids: Sequence[str],
) -> dict[str, Any]:
    return {
        "predictions": [
            format_prediction(r, return_probabilities, i) for r, i in zip(raw, ids, strict=True)
        ],
        "model_version": model_version,
        "timestamp": now_iso(),
    }


async def read_body(receive: Receive, max_bytes: int, timeout_s: float) -> bytes | None:
    """The whole request body, or None when the client disconnects first. RequestError 413
    once it passes `max_bytes` (nothing more is read), 408 when it takes over `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    body = bytearray()
    more = True
    while more:
        try:
            message = await asyncio.wait_for(receive(), deadline - loop.time())
        except TimeoutError:
            raise RequestError(f"request body not received within {timeout_s:g} s", 408) from None
        if message["type"] == "http.disconnect":
            return None
        body.extend(message.get("body", b""))
        more = message.get("more_body", False)
        if len(body) > max_bytes:
            raise RequestError(f"request body over {max_bytes} bytes", 413)
    return bytes(body)


def header_value(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def multipart_problem(content_type: bytes | None) -> tuple[int, str] | None:
    """Why a file upload's Content-Type cannot be parsed, or None: it must be
    multipart/form-data with a boundary (the multipart parser fails on anything else)."""
    if content_type is None:
        return 415, "send the file as multipart/form-data (curl -F file=@reviews.csv)"
    media, _, params = content_type.partition(b";")
    if media.strip().lower() != b"multipart/form-data":
        return 415, "send the file as multipart/form-data (curl -F file=@reviews.csv)"
    boundary = [
        p.partition(b"=")[2].strip(b' "')
        for p in params.split(b";")
        if p.strip().lower().startswith(b"boundary=")
    ]
    if not boundary or not boundary[0]:
        return 400, "multipart/form-data without a boundary"
    return None


class UploadLimit:
    """ASGI middleware for file uploads to `paths`: multipart/form-data with a boundary, and a
    stated length of at most `max_bytes`; refused (415/400, 411/413) before a byte of the body
    is read. uvicorn never lets a body run past its Content-Length, so the stated length
    bounds what is stored."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: Sequence[str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = tuple(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] == "GET":
            await self.app(scope, receive, send)
            return
        length = header_value(scope, b"content-length")
        problem = multipart_problem(header_value(scope, b"content-type"))
        if length is None or not length.isdigit():
            await reply_json(send, 411, "send the file with a Content-Length header")
        elif int(length) > self.max_bytes:
            await reply_json(send, 413, f"file upload over {self.max_bytes} bytes")
        elif problem is not None:
            await reply_json(send, *problem)
        else:
            await self._checked(scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body (at most `max_bytes`), check it parses as multipart, then replay it:
        BentoML's own parser answers 500 to a malformed part."""
        try:
            body = await read_body(receive, self.max_bytes, UPLOAD_READ_TIMEOUT_S)
        except RequestError as exc:
            await reply_json(send, exc.status, str(exc))
            return
        if body is None:
            return
        if not await parses_as_multipart(scope, body):
            await reply_json(send, 400, "the upload is not valid multipart/form-data")
            return
        await self.app(scope, replaying(body, receive), send)


# A 20-MB upload at 1 MB/s still arrives; a client that stalls is cut off.
UPLOAD_READ_TIMEOUT_S = 60.0


async def parses_as_multipart(scope: Scope, body: bytes) -> bool:
    """Whether Starlette's multipart parser (the one BentoML uses) reads `body` cleanly."""
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(Headers(scope=scope), stream(), max_files=4, max_fields=16)
    try:
        form = await parser.parse()
    except Exception:  # any failure of the parser is a malformed upload, not a server error
        return False
    await form.close()
    return True


class TaskControl:
    """ASGI middleware: BentoML's `<task>/cancel` and `<task>/retry` answered here with a 400.
    The local server cannot stop a running task: its cancel only marks the stored row, which
    then holds no result and makes `<task>/get` fail with a 500 (schemathesis found it). Retry
    replays a stored upload that the task has already removed. Submit the file again instead."""

    def __init__(self, app: ASGIApp, task_routes: Sequence[str]) -> None:
        self.app = app
        self.refused = {
            f"{route}/{action}": action for route in task_routes for action in ("cancel", "retry")
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        action = self.refused.get(scope["path"]) if scope["type"] == "http" else None
        if action is None:
            await self.app(scope, receive, send)
            return
        await reply_json(
            send, 400, f"a file task cannot {action} here: wait for it, or submit the file again"
        )


def is_json_content_type(scope: Scope) -> bool:
    """No Content-Type, or a JSON one (`application/json`, `application/*+json`, any
    parameters): a form or plain text is refused rather than guessed at."""
    content_type = header_value(scope, b"content-type")
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


# Path -> the check of its decoded JSON body (raises RequestError).
BODY_CHECKS: dict[str, Callable[[Any, Limits], object]] = {
    "/predict": validate_predict_payload,
    "/feedback": validate_feedback_payload,
    "/explain": validate_explain_payload,
}


class PredictGuard:
    """ASGI middleware: refuses a bad /predict or /feedback body with a 4xx before BentoML
    parses it.

    The checked body is replayed to the app, so BentoML's own parsing still runs.
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: Limits,
        checks: Mapping[str, Callable[[Any, Limits], object]] = BODY_CHECKS,
    ):
        self.app = app
        self.limits = limits
        self.checks = dict(checks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        check = self.checks.get(scope["path"]) if scope["type"] == "http" else None
        if check is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await reply_json(send, 405, "use POST with a JSON body")
            return
        if not is_json_content_type(scope):
            await reply_json(send, 415, "Content-Type must be application/json")
            return
        try:
            body = await read_body(
                receive, self.limits.max_request_bytes, self.limits.read_timeout_s
            )
        except RequestError as exc:
            await reply_json(send, exc.status, str(exc))
            return
        if body is None:  # the client went away
            return
        try:
            check(parse_json_body(body, self.limits), self.limits)
        except RequestError as exc:
            await reply_json(send, exc.status, str(exc))
            return
        await self.app(scope, replaying(body, receive), send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that first hands the app the body already read, then the real channel."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def reply_json(
    send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A one-line JSON error, `{"error": message}`, written straight to the ASGI channel."""
    data = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


PROMETHEUS_MEDIA = frozenset({"text/plain", "application/openmetrics-text"})


def wants_json(scope: Scope) -> bool:
    """The client's Accept names application/json and no Prometheus exposition format (a
    scrape, or `*/*`, gets the exposition format as before)."""
    accept = header_value(scope, b"accept")
    if accept is None:
        return False
    media = {part.split(";", 1)[0].strip().lower() for part in accept.decode("latin-1").split(",")}
    return "application/json" in media and not media & PROMETHEUS_MEDIA


class JsonMetrics:
    """ASGI middleware: `GET /metrics` with `Accept: application/json` answers the monitoring
    summary as JSON (the original project's `/metrics`: total_predictions, average_confidence,
    positive_ratio, drift_status); every other request goes on to BentoML's Prometheus route."""

    def __init__(
        self, app: ASGIApp, summary: Callable[[], dict[str, Any]], path: str = "/metrics"
    ) -> None:
        self.app = app
        self.summary = summary
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] != "GET"
            or not wants_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        # The summary may run the drift tests: off the event loop.
        data = json.dumps(await asyncio.to_thread(self.summary)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"vary", b"Accept"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


def model_info_payload(info: dict[str, Any]) -> dict[str, Any]:
    """`/model/info`: the replica's description, plus the original project's key names
    (`model_name`, `model_version`; `labels` and `max_length` are already there)."""
    return {**info, "model_name": info["name"], "model_version": info["version"]}


def health_payload(replicas_alive: int, replicas: int) -> tuple[dict[str, Any], int]:
    """`/health`'s answer and status code: 200 while any replica serves (degraded when some
    are down: they are restarted on their next batch), 503 only when none does."""
    if replicas_alive >= replicas:
        status = "healthy"
    elif replicas_alive > 0:
        status = "degraded"
    else:
        status = "unhealthy"
    payload = {
        "status": status,
        "model_loaded": replicas_alive > 0,
        "replicas_alive": replicas_alive,
        "replicas": replicas,
        "timestamp": now_iso(),
    }
    return payload, 200 if replicas_alive > 0 else 503
