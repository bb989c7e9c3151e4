"""Optional API keys: who may use the service, checked before anything else reads a request.

Off unless SENTIMENT_API_KEYS or SENTIMENT_API_KEYS_FILE is set (sentiment/config.py,
`load_access_keys`): the default is for a trusted network. When on, every route needs a key
(deny by default, so a route added later, or one of Gradio's, is never open by accident)
except the probes (`/health`, `/healthz`, `/livez`, `/readyz`), the UI's login page and
`/metrics`; `/metrics` needs SENTIMENT_METRICS_KEY as a bearer token when that is set.

A key arrives as `Authorization: Bearer <key>` or `X-API-Key: <key>`; the browser UI logs in
once at `<ui>/login` and then sends a session cookie holding an HMAC of the key (not the key).
Comparisons hash both sides first and check every key, so the time taken says nothing about
which key, or how much of one, matched. Keys are never logged; refusals are one-line 401s.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qs

from sentiment.config import AccessKeys
from serving.http import (
    METRICS_PATH,
    PROBE_PATHS,
    ASGIApp,
    Receive,
    RequestError,
    Scope,
    Send,
    read_body,
    reply_json,
)
from serving.http import header_value as header

SESSION_COOKIE = "sentiment_session"
SESSION_CONTEXT = b"sentiment-ui-session"
LOGIN_BODY_BYTES = 4096
LOGIN_TIMEOUT_S = 10.0
UNAUTHORIZED = "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"


def _digest(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(raw).digest()


def session_token(key: str) -> str:
    """The UI cookie for `key`: an HMAC, so the cookie never carries the key itself."""
    return hmac.new(key.encode(), SESSION_CONTEXT, hashlib.sha256).hexdigest()


def matches_any(candidate: str | bytes, digests: Sequence[bytes]) -> bool:
    """Constant-time membership: every digest is compared, equal lengths throughout."""
    probe = _digest(candidate)
    found = False
    for digest in digests:
        found |= hmac.compare_digest(probe, digest)
    return found


def presented_key(scope: Scope) -> bytes | None:
    """The key a client sent, from `Authorization: Bearer` or `X-API-Key`."""
    auth = header(scope, b"authorization")
    if auth is not None:
        scheme, _, value = auth.partition(b" ")
        if scheme.lower() == b"bearer" and value.strip():
            return value.strip()
    api_key = header(scope, b"x-api-key")
    return api_key.strip() if api_key else None


def cookie_value(scope: Scope, name: str) -> str | None:
    raw = header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def login_page(ui_path: str, message: str = "") -> bytes:
    note = f'<p role="alert" class="error">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Sentiment</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}}
.error{{color:#b00020}}</style></head>
<body><h1>Sentiment analysis</h1>{note}
<form method="post" action="{html.escape(ui_path)}/login">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></body></html>""".encode()


class ApiKeyGuard:
    """ASGI middleware: the first to see a request when keys are configured."""

    def __init__(self, app: ASGIApp, keys: AccessKeys, ui_path: str = "/ui") -> None:
        self.app = app
        self.ui_path = ui_path.rstrip("/")
        self.login_path = f"{self.ui_path}/login"
        self.logout_path = f"{self.ui_path}/logout"
        secrets = [k.get_secret_value() for k in keys.api_keys]
        self.key_digests = [_digest(k) for k in secrets]
        self.session_digests = [_digest(session_token(k)) for k in secrets]
        self.metrics_digests = (
            [_digest(keys.metrics_key.get_secret_value())] if keys.metrics_key else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in PROBE_PATHS:
            await self.app(scope, receive, send)
        elif path == METRICS_PATH:
            await self._metrics(scope, receive, send)
        elif path == self.login_path:
            await self._login(scope, receive, send)
        elif path == self.logout_path:
            await self._redirect(send, self.login_path, clear_cookie=True)
        elif self.authorised(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        elif self._is_page_visit(scope):
            await self._redirect(send, self.login_path)
        else:
            await self._unauthorised(send)

    def authorised(self, scope: Scope) -> bool:
        key = presented_key(scope)
        if key is not None:
            return matches_any(key, self.key_digests)
        cookie = cookie_value(scope, SESSION_COOKIE)
        return cookie is not None and matches_any(cookie, self.session_digests)

    def _is_page_visit(self, scope: Scope) -> bool:
        """A browser opening a UI page: sent to the login form rather than given JSON."""
        accept = header(scope, b"accept") or b""
        return (
            scope["method"] == "GET"
            and (scope["path"] == self.ui_path or scope["path"].startswith(self.ui_path + "/"))
            and b"text/html" in accept
        )

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = presented_key(scope)
        if self.metrics_digests is None or (
            key is not None and matches_any(key, self.metrics_digests)
        ):
            await self.app(scope, receive, send)
        else:
            await self._unauthorised(send, "missing or invalid metrics key (bearer token)")

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET":
            await _html(send, 200, login_page(self.ui_path))
            return
        if scope["method"] != "POST":
            await reply_json(send, 405, "use GET for the form or POST a key")
            return
        try:
            body = await read_body(receive, LOGIN_BODY_BYTES, LOGIN_TIMEOUT_S)
        except RequestError as exc:
            await reply_json(send, exc.status, str(exc))
            return
        if body is None:
            return
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        key = (fields.get("key") or [""])[0].strip()
        if key and matches_any(key, self.key_digests):
            await self._redirect(send, self.ui_path + "/", cookie=session_token(key), scope=scope)
        else:
            await _html(send, 401, login_page(self.ui_path, "That key is not valid."))

    async def _redirect(
        self,
        send: Send,
        location: str,
        cookie: str | None = None,
        clear_cookie: bool = False,
        scope: Scope | None = None,
    ) -> None:
        headers = [(b"location", location.encode()), (b"content-length", b"0")]
        if cookie is not None or clear_cookie:
            secure = "; Secure" if scope is not None and scope.get("scheme") == "https" else ""
            value = cookie if cookie is not None else ""
            expiry = "; Max-Age=0" if clear_cookie else ""
            attrs = f"Path={self.ui_path}; HttpOnly; SameSite=Strict{secure}{expiry}"
            headers.append((b"set-cookie", f"{SESSION_COOKIE}={value}; {attrs}".encode()))
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _unauthorised(send: Send, message: str = UNAUTHORIZED) -> None:
        await reply_json(send, 401, message, [(b"www-authenticate", b"Bearer")])


async def _html(
    send: Send, status: int, page: bytes, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(page)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": page})
