"""Hardening of the Gradio app that BentoML mounts on the API port.

Gradio's routes answer anyone who can reach the API. `harden` configures the mounted Gradio app
(upload size limit, error details off, file access, no routes in /docs.json) and adds
`GradioGuard`, an ASGI middleware inside it that:

- refuses, before any work, what this UI never needs: `pwa_icon` sizes other than the ones the
  manifest lists (Gradio resizes to any size asked, in the event loop), `proxy=` URLs, remote
  URLs through `file=`, pages the app does not have, oversized request bodies;
- turns every error answer of a Gradio route into a one-line JSON `{"error": "..."}` without
  server paths or tracebacks, and a 5xx caused by a malformed request into a 400 (503, "busy",
  is kept). The full exception still goes to the server log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Collection, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("sentiment.ui")

# The sizes of /pwa_icon/{size} that Gradio's manifest.json lists for a PNG favicon (BentoML's).
PWA_ICON_SIZES: tuple[int, ...] = (192, 512)
# Room for the multipart framing around one uploaded file.
MULTIPART_SLACK_BYTES = 64 * 1024
# Other request bodies are JSON: an event's inputs. Never less than this.
MIN_JSON_BODY_BYTES = 1_000_000
# Only so much of an error body is read to find its message.
ERROR_BODY_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 300
UPLOAD_ROUTE = "/gradio_api/upload"
FAILED = "the request could not be processed"

_TRACEBACK = "Traceback (most recent call last)"
# Two or more path segments (/a/b, /tmp/gradio/x.csv), not preceded by a word character, a dot,
# a colon or a slash, so that URLs (http://host/a/b) and words (and/or) are left alone.
_SEGMENT = r"[^\s/'\"`<>|,;()\[\]{}\\]+"
_PATH = re.compile(rf"(?<![\w.:/~-])~?/(?:{_SEGMENT}/)+(?:{_SEGMENT})?")


def pwa_icon_allowed(size: str, sizes: Collection[int] = PWA_ICON_SIZES) -> bool:
    """True for exactly the decimal sizes the manifest lists ('192', not '0192' or '192.0')."""
    return size in {str(s) for s in sizes}


def server_paths() -> list[str]:
    """Folders of this server that an error message must never show."""
    from ui.uploads import upload_roots

    found = [os.getcwd(), tempfile.gettempdir(), sys.prefix, str(Path.home())]
    found += [str(root) for root in upload_roots()]
    for raw in list(found):
        try:
            found.append(str(Path(raw).resolve()))
        except (OSError, RuntimeError):
            continue
    return sorted({p for p in found if len(p) > 1}, key=len, reverse=True)


def scrub(text: str, hidden: Iterable[str] = ()) -> str:
    """One line of `text` fit for a client: the traceback cut off, then the first non-empty
    line, with absolute paths and the `hidden` folders replaced by '<path>', shortened."""
    text = text.split(_TRACEBACK, 1)[0]
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = _PATH.sub("<path>", line)
    for folder in hidden:
        if len(folder) > 1:
            line = re.sub(rf"(?<![\w/]){re.escape(folder)}(?![\w])", "<path>", line)
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    return line


def error_text(body: bytes) -> str:
    """The message in a Gradio or FastAPI error body ('error'/'detail' in JSON, else the text);
    '' when there is none. Input that a validation error echoes back is not repeated."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            value = data.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, list) and value and isinstance(value[0], dict):
                first = value[0]
                where = ".".join(str(part) for part in first.get("loc", ()))
                return f"invalid request: {where}: {first.get('msg', 'invalid value')}"
    if isinstance(data, str):
        return data
    return ""


def public_error(status: int, body: bytes, hidden: Iterable[str] = ()) -> tuple[int, str]:
    """The status and one-line message a client gets for an error answer of a Gradio route.

    A 5xx other than 503 comes from a request Gradio could not handle (an unknown event, a
    malformed body): it becomes a 400. Messages lose paths and tracebacks."""
    if status >= 500 and status != HTTPStatus.SERVICE_UNAVAILABLE:
        status = HTTPStatus.BAD_REQUEST
    message = scrub(error_text(body), hidden)
    if not message or message.lower() in ("none", "null", "internal server error"):
        message = FAILED if status == HTTPStatus.BAD_REQUEST else _phrase(status)
    return status, message


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return FAILED


def route_path(scope: Scope) -> str:
    """The path inside the mounted app (Starlette keeps the mount prefix in root_path)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def check_request(
    method: str,
    path: str,
    query: str,
    *,
    pages: Collection[str] = ("",),
    icon_sizes: Collection[int] = PWA_ICON_SIZES,
) -> tuple[int, str] | None:
    """(status, message) for a request refused before it reaches Gradio, else None."""
    params = parse_qs(query, keep_blank_values=True)
    if path == "/pwa_icon" or path.startswith("/pwa_icon/"):
        # Gradio takes the size from the path (/pwa_icon/512) or the query (/pwa_icon?size=512).
        asked = params.get("size", [])
        if path.startswith("/pwa_icon/"):
            asked = [*asked, path[len("/pwa_icon/") :]]
        if not all(pwa_icon_allowed(size, icon_sizes) for size in asked):
            sizes = ", ".join(str(s) for s in icon_sizes)
            return HTTPStatus.NOT_FOUND, f"no such icon size (the sizes are {sizes})"
        return None
    if path.startswith("/gradio_api/proxy="):
        return HTTPStatus.NOT_FOUND, "this UI proxies nothing"
    for prefix in ("/gradio_api/file=", "/gradio_api/file/"):
        if path.startswith(prefix):
            target = unquote(path[len(prefix) :])
            if "://" in target or target.startswith("//"):
                return HTTPStatus.NOT_FOUND, "only files of this UI are served"
    if path == "/" and any(page not in pages for page in params.get("page", [])):
        return HTTPStatus.NOT_FOUND, "no such page"
    hashes = params.get("session_hash", [])
    if path == "/gradio_api/queue/data" and method == "GET" and not any(h.strip() for h in hashes):
        return HTTPStatus.BAD_REQUEST, "session_hash is required"
    return None


def body_limit(path: str, max_upload_bytes: int, max_body_bytes: int) -> int:
    return max_upload_bytes + MULTIPART_SLACK_BYTES if path == UPLOAD_ROUTE else max_body_bytes


class BodyTooLarge(Exception):
    """Raised to the app by the bounded `receive` once a body passes its limit."""


class GradioGuard:
    """ASGI middleware for the mounted Gradio app (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_upload_bytes: int,
        max_body_bytes: int = MIN_JSON_BODY_BYTES,
        pages: Collection[str] = ("",),
        icon_sizes: Collection[int] = PWA_ICON_SIZES,
        hidden: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_body_bytes
        self.pages = frozenset(pages)
        self.icon_sizes = tuple(icon_sizes)
        self.hidden = list(server_paths() if hidden is None else hidden)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        path = route_path(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        refused = check_request(method, path, query, pages=self.pages, icon_sizes=self.icon_sizes)
        if refused is not None:
            await reply(send, *refused)
            return
        limit = body_limit(path, self.max_upload_bytes, self.max_body_bytes)
        length = _content_length(scope)
        if length is not None and length > limit:
            await reply(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(path, limit))
            return
        if length is None and path == UPLOAD_ROUTE and method == "POST":
            await reply(send, HTTPStatus.LENGTH_REQUIRED, "an upload needs a Content-Length")
            return
        await _Exchange(self, scope, path, limit).run(receive, send)


def _too_large(path: str, limit: int) -> str:
    if path == UPLOAD_ROUTE:
        return f"the file is over the upload limit of {limit - MULTIPART_SLACK_BYTES:,} bytes"
    return f"request body over {limit:,} bytes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return max(int(value), 0)
            except ValueError:
                return None
    return None


class _Exchange:
    """One request through the guard: bounded body in, error answers rewritten out."""

    def __init__(self, guard: GradioGuard, scope: Scope, path: str, limit: int) -> None:
        self.guard = guard
        self.scope = scope
        self.path = path
        self.limit = limit
        self.received = 0
        self.too_large = False
        self.started = False  # a response start went to the client
        self.finished = False  # its last body message too
        self.error_start: Message | None = None  # an error answer being collected
        self.error_body = bytearray()

    async def run(self, receive: Receive, send: Send) -> None:
        async def bounded_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            await self._send(message, send)

        try:
            await self.guard.app(self.scope, bounded_receive, guarded_send)
        except Exception as exc:
            if not isinstance(exc, BodyTooLarge):
                logger.exception("Gradio route %s failed", self.path)
            await self._after_failure(send)
            return
        if not self.started and self.too_large:
            message = _too_large(self.path, self.limit)
            await reply(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)

    async def _send(self, message: Message, send: Send) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            status = int(message["status"])
            if status >= 400 and self.scope.get("method") != "HEAD":
                self.error_start = message
                return
            if status >= 500:
                status = public_error(status, b"")[0]
                message = {**message, "status": status}
            self.started = True
            await send(message)
            return
        if kind == "http.response.body" and self.error_start is not None:
            if len(self.error_body) < ERROR_BODY_BYTES:
                self.error_body.extend(message.get("body", b"")[:ERROR_BODY_BYTES])
            if not message.get("more_body", False):
                await self._send_error(send)
            return
        if kind == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await send(message)

    async def _send_error(self, send: Send) -> None:
        start = self.error_start
        if start is None:
            return
        self.error_start = None
        headers = dict(start.get("headers", []))
        body = bytes(self.error_body)
        if headers.get(b"content-encoding", b"identity") != b"identity":
            body = b""  # compressed: its message cannot be read, the status phrase stands in
        status, text = public_error(int(start["status"]), body, self.guard.hidden)
        if self.too_large:  # the app saw the body cut short: the body was the problem
            status, text = HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(self.path, self.limit)
        keep = [
            (name, value)
            for name, value in start.get("headers", [])
            if not name.startswith(b"content-") and name != b"transfer-encoding"
        ]
        self.started = True
        await reply(send, status, text, keep)
        self.finished = True

    async def _after_failure(self, send: Send) -> None:
        """The app raised: answer if nothing was sent, else end the body cleanly."""
        try:
            if self.error_start is not None:
                await self._send_error(send)
            elif not self.started:
                if self.too_large:
                    message = _too_large(self.path, self.limit)
                    await reply(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)
                else:
                    await reply(send, HTTPStatus.BAD_REQUEST, FAILED)
            elif not self.finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:  # the client is gone
            logger.debug("could not finish the answer to %s", self.path, exc_info=True)


async def reply(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": int(status),
            "headers": [
                *(headers or []),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


# --- configuring the mounted app ---------------------------------------------------------------


def mounted_gradio_app(obj: Any, blocks: Any) -> Any:
    """The Gradio App that `bentoml.gradio.mount_gradio_app` created for `blocks` on `obj` (the
    service, or the class it decorates)."""
    from gradio.routes import App

    mounted = getattr(obj, "mount_apps", None) or getattr(obj, "__bentoml_mounted_apps__", [])
    for app, *_ in mounted:
        if isinstance(app, App) and app.blocks is blocks:
            return app
    raise RuntimeError("the Gradio app is not among the service's mounted apps: check mount_ui")


def blocked_paths(upload_folders: Iterable[Path], extra: Iterable[str | Path] = ()) -> list[str]:
    """Folders Gradio must never serve: the working directory (the service's code and configs)
    and `extra`, less any that holds an upload folder (uploads must stay reachable)."""
    from ui.uploads import is_confined

    candidates = [Path(os.getcwd()), *(Path(p) for p in extra)]
    uploads = [Path(u).resolve() for u in upload_folders]
    out = []
    for folder in candidates:
        resolved = folder.resolve()
        if any(u == resolved or is_confined(str(u), [resolved]) for u in uploads):
            continue
        out.append(str(resolved))
    return out


def hide_from_schema(routes: Iterable[Any]) -> int:
    """Mark every route, and those of included routers (which FastAPI keeps as one route each
    in recent versions, the router's own routes inside), as not part of an OpenAPI schema.
    Returns how many routes were marked."""
    marked = 0
    for route in routes:
        if hasattr(route, "include_in_schema"):
            route.include_in_schema = False
            marked += 1
        included = getattr(route, "original_router", None)
        if included is not None:
            marked += hide_from_schema(included.routes)
    return marked


def json_body_limit(max_text_chars: int) -> int:
    """Largest JSON body of a Gradio request: room for the longest accepted text, escaped."""
    return max(MIN_JSON_BODY_BYTES, 8 * max_text_chars + MULTIPART_SLACK_BYTES)


def harden(
    app: Any, max_upload_bytes: int, max_body_bytes: int, extra_blocked: Iterable[Path] = ()
) -> Any:
    """Configure a mounted (unlaunched) Gradio App and put `GradioGuard` in front of its routes.

    Must run before the app serves its first request (Starlette builds its middleware then).
    BentoML's mount sets `max_file_size=None` and `show_error=True`; both are replaced here.
    """
    from ui.uploads import upload_roots

    blocks = app.get_blocks()
    blocks.max_file_size = max_upload_bytes
    # Only messages of gr.Error reach the page; other exceptions show a generic error there and
    # go to the server log in full.
    blocks.show_error = False
    blocks.allowed_paths = []
    blocks.blocked_paths = blocked_paths(upload_roots(), extra_blocked)
    # The page reads max_file_size from its config (and refuses a larger file in the browser).
    blocks.config = blocks.get_config_file()
    # Out of the service's /docs.json: BentoML adds the schema routes of mounted FastAPI apps.
    hide_from_schema(app.routes)
    pages = [page[0] for page in getattr(blocks, "pages", [("",)])] or [""]
    app.add_middleware(
        GradioGuard,
        max_upload_bytes=max_upload_bytes,
        max_body_bytes=max_body_bytes,
        pages=pages,
    )
    return app
