"""API keys: the guard's decisions for every kind of route, on hand-built ASGI calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import SecretStr

from sentiment.config import AccessKeys
from serving.auth import (
    SESSION_COOKIE,
    ApiKeyGuard,
    cookie_value,
    matches_any,
    presented_key,
    session_token,
)
from serving.auth import _digest as digest

KEY = "k" * 20
OTHER = "o" * 20
METRICS = "m" * 24


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.messages[0].get("headers", [])).get(name)

    @property
    def body(self) -> bytes:
        return bytes(self.messages[1]["body"])


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"passed"})


def call(
    guard: ApiKeyGuard,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes = b"",
) -> Recorder:
    scope = {
        "type": "http",
        "path": path,
        "method": method,
        "scheme": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    rec = Recorder()
    asyncio.run(guard(scope, receive, rec))
    return rec


def guard(metrics_key: str | None = None) -> ApiKeyGuard:
    keys = AccessKeys(
        api_keys=(SecretStr(KEY), SecretStr(OTHER)),
        metrics_key=SecretStr(metrics_key) if metrics_key else None,
    )
    return ApiKeyGuard(app, keys, ui_path="/ui")


@pytest.mark.parametrize("path", ["/health", "/healthz", "/livez", "/readyz", "/metrics"])
def test_probes_and_metrics_are_open_without_a_metrics_key(path: str) -> None:
    assert call(guard(), path).status == 200


@pytest.mark.parametrize(
    "path", ["/predict", "/monitoring", "/model/info", "/docs.json", "/", "/ui/gradio_api/info"]
)
def test_everything_else_needs_a_key(path: str) -> None:
    rec = call(guard(), path, {"Accept": "application/json"})
    assert rec.status == 401
    assert rec.header(b"www-authenticate") == b"Bearer"
    assert json.loads(rec.body) == {
        "error": "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {OTHER}"},
        {"X-API-Key": KEY},
    ],
)
def test_a_valid_key_in_either_header_passes(headers: dict[str, str]) -> None:
    rec = call(guard(), "/predict", headers, "POST")
    assert rec.status == 200 and rec.body == b"passed"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong-key-wrong-key"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer "},
        {"X-API-Key": KEY[:-1]},
        {"X-API-Key": KEY + "x"},
    ],
)
def test_wrong_keys_are_401_and_the_answer_never_echoes_them(headers: dict[str, str]) -> None:
    rec = call(guard(), "/predict", headers, "POST")
    assert rec.status == 401
    assert KEY.encode() not in rec.body and b"wrong-key" not in rec.body


def test_a_metrics_key_is_required_by_metrics_when_set_and_api_keys_do_not_open_it() -> None:
    g = guard(METRICS)
    assert call(g, "/metrics").status == 401
    assert call(g, "/metrics", {"Authorization": f"Bearer {KEY}"}).status == 401
    assert call(g, "/metrics", {"Authorization": f"Bearer {METRICS}"}).status == 200
    assert call(g, "/health").status == 200


def test_a_browser_visit_to_the_ui_is_sent_to_the_login_page() -> None:
    rec = call(guard(), "/ui/", {"Accept": "text/html,application/xhtml+xml"})
    assert rec.status == 303 and rec.header(b"location") == b"/ui/login"


def test_login_form_sets_a_session_cookie_that_is_not_the_key_and_opens_the_ui() -> None:
    g = guard()
    form = call(g, "/ui/login")
    assert form.status == 200 and b'name="key"' in form.body
    rec = call(g, "/ui/login", method="POST", body=f"key={KEY}".encode())
    assert rec.status == 303 and rec.header(b"location") == b"/ui/"
    cookie = (rec.header(b"set-cookie") or b"").decode()
    assert cookie.startswith(f"{SESSION_COOKIE}={session_token(KEY)};")
    assert KEY not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie
    opened = call(g, "/ui/gradio_api/info", {"Cookie": f"{SESSION_COOKIE}={session_token(KEY)}"})
    assert opened.status == 200
    forged = call(g, "/ui/gradio_api/info", {"Cookie": f"{SESSION_COOKIE}={KEY}"})
    assert forged.status == 401


def test_a_wrong_login_is_401_and_a_huge_one_is_413() -> None:
    g = guard()
    wrong = call(g, "/ui/login", method="POST", body=b"key=nope")
    assert wrong.status == 401 and b"not valid" in wrong.body
    huge = call(g, "/ui/login", method="POST", body=b"key=" + b"x" * 5000)
    assert huge.status == 413


def test_logout_clears_the_cookie() -> None:
    rec = call(guard(), "/ui/logout")
    assert rec.status == 303
    assert b"Max-Age=0" in (rec.header(b"set-cookie") or b"")


def test_a_websocket_without_a_key_is_closed() -> None:
    scope = {"type": "websocket", "path": "/ui/ws", "headers": []}
    rec = Recorder()

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    asyncio.run(guard()(scope, receive, rec))
    assert rec.messages == [{"type": "websocket.close", "code": 1008}]


def test_header_parsing() -> None:
    scope = {"headers": [(b"authorization", b"Bearer  abc "), (b"cookie", b"a=1; b=2")]}
    assert presented_key(scope) == b"abc"
    assert presented_key({"headers": [(b"x-api-key", b" xyz ")]}) == b"xyz"
    assert presented_key({"headers": []}) is None
    assert cookie_value(scope, "b") == "2" and cookie_value(scope, "c") is None


def test_matches_any_checks_whole_keys() -> None:
    digests = [digest(KEY), digest(OTHER)]
    assert matches_any(KEY, digests) and matches_any(OTHER.encode(), digests)
    assert not matches_any(KEY[:10], digests) and not matches_any("", digests)
