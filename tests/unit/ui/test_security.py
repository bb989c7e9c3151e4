"""The UI's hardening (ui/guard.py, ui/uploads.py) with hand-built inputs: icon sizes, path
confinement, the error sanitiser, the ASGI guard around small apps, and a hardened Gradio app
driven in-process. The same probes against a real `bentoml serve` are in
tests/integration/test_ui_security.py."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from ui import guard, uploads
from ui.app import UIHandlers, build_ui, prepare_for_mount
from ui.config import UIConfig

REPO = str(Path(__file__).resolve().parents[3])


# --- pwa_icon sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["192", "512"])
def test_manifest_icon_sizes_are_allowed(size: str) -> None:
    assert guard.pwa_icon_allowed(size)


@pytest.mark.parametrize(
    "size", ["6000", "72327", "0192", "192.0", "+192", " 192", "-5", "0", "", "abc", "192/x"]
)
def test_other_icon_sizes_are_not(size: str) -> None:
    assert not guard.pwa_icon_allowed(size)


def test_check_request_refuses_before_any_work() -> None:
    check = guard.check_request
    assert check("GET", "/pwa_icon/72327", "")[0] == 404  # type: ignore[index]
    assert check("GET", "/pwa_icon/192", "") is None
    assert check("GET", "/pwa_icon", "") is None  # the favicon itself, no resizing
    assert check("GET", "/pwa_icon", "size=512") is None
    assert check("GET", "/pwa_icon", "size=72327")[0] == 404  # type: ignore[index]
    assert check("GET", "/pwa_icon", "size=192&size=6000")[0] == 404  # type: ignore[index]
    assert check("GET", "/pwa_icon/192", "size=6000")[0] == 404  # type: ignore[index]
    assert check("GET", "/pwa_icon/", "")[0] == 404  # type: ignore[index]
    assert check("GET", "/gradio_api/proxy=http://127.0.0.1:1/x", "")[0] == 404  # type: ignore[index]
    assert check("GET", "/gradio_api/file=http://example.com/a.csv", "")[0] == 404  # type: ignore[index]
    assert check("GET", "/gradio_api/file=https%3A//example.com/a", "")[0] == 404  # type: ignore[index]
    assert check("GET", "/gradio_api/file=/tmp/gradio/x/a.csv", "") is None  # Gradio decides
    assert check("GET", "/", "page=nope")[0] == 404  # type: ignore[index]
    assert check("GET", "/", "page=") is None
    assert check("GET", "/", "") is None
    assert check("GET", "/gradio_api/queue/data", "session_hash=")[0] == 400  # type: ignore[index]
    assert check("GET", "/gradio_api/queue/data", "session_hash=abc") is None


def test_upload_body_limit_is_the_file_limit_plus_framing() -> None:
    assert guard.body_limit("/gradio_api/upload", 1000, 50) == 1000 + guard.MULTIPART_SLACK_BYTES
    assert guard.body_limit("/gradio_api/queue/join", 1000, 50) == 50
    assert guard.json_body_limit(5000) == guard.MIN_JSON_BODY_BYTES
    assert guard.json_body_limit(1_000_000) > 8_000_000


# --- path confinement ---------------------------------------------------------------------------


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "uploads"
    (root / "abc").mkdir(parents=True)
    inside = root / "abc" / "a.csv"
    inside.write_text("text\ngood\n")
    outside = tmp_path / "secret.csv"
    outside.write_text("text\nsecret\n")
    (root / "abc" / "link_out.csv").symlink_to(outside)
    (root / "abc" / "link_in.csv").symlink_to(inside)
    (root / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    return {"root": root, "inside": inside, "outside": outside, "alias": alias}


def test_a_file_inside_the_upload_folder_is_confined(tree: dict[str, Path]) -> None:
    assert uploads.is_confined(str(tree["inside"]), [tree["root"]])
    assert uploads.is_confined(tree["inside"], [str(tree["root"])])
    assert uploads.is_confined(str(tree["root"] / "abc" / "link_in.csv"), [tree["root"]])


def test_paths_outside_are_not(tree: dict[str, Path]) -> None:
    root = tree["root"]
    assert not uploads.is_confined(str(tree["outside"]), [root])
    assert not uploads.is_confined(str(root / ".." / "secret.csv"), [root])  # `..` out
    assert not uploads.is_confined(f"{root}/abc/../../secret.csv", [root])
    assert not uploads.is_confined(str(root / "abc" / "link_out.csv"), [root])  # symlink out
    assert not uploads.is_confined(str(root / "dirlink" / "secret.csv"), [root])  # folder link out
    assert not uploads.is_confined("/etc/passwd", [root])
    assert not uploads.is_confined(str(root), [root])  # the folder itself
    assert not uploads.is_confined(str(root) + "-other/a.csv", [root])  # a sibling prefix


def test_relative_urls_and_empty_paths_are_not(tree: dict[str, Path]) -> None:
    root = tree["root"]
    for path in ["abc/a.csv", "./a.csv", "", "http://127.0.0.1/a.csv", "file:///etc/passwd"]:
        assert not uploads.is_confined(path, [root]), path
    assert not uploads.is_confined(None, [root])
    assert not uploads.is_confined(f"{root}/abc/a.csv\x00.txt", [root])
    assert not uploads.is_confined(str(tree["inside"]), [])


def test_a_root_reached_through_a_symlink_still_confines(tree: dict[str, Path]) -> None:
    assert uploads.is_confined(str(tree["inside"]), [tree["alias"]])
    assert uploads.is_confined(str(tree["alias"] / "abc" / "a.csv"), [tree["root"]])


def test_handlers_refuse_a_foreign_file_without_reading_it(
    tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the file was read")

    monkeypatch.setattr("ui.tables.read_upload", never)
    handlers = UIHandlers(FakeBackend(), UIConfig(), upload_roots=[tree["root"]])
    for path in (str(tree["outside"]), str(tree["root"] / ".." / "secret.csv")):
        _, status, button, *_ = handlers.inspect_upload(path)
        assert "not uploaded through this page" in status
        assert button["interactive"] is False
        message, *_ = asyncio.run(handlers.analyze_file(path, "text", False))
        assert "not uploaded through this page" in message
        assert "secret" not in message


def test_handlers_read_a_file_inside_the_upload_folder(tree: dict[str, Path]) -> None:
    handlers = UIHandlers(FakeBackend(), UIConfig(), upload_roots=[tree["root"]])
    column, status, *_ = handlers.inspect_upload(str(tree["inside"]))
    assert column["value"] == "text"
    assert "1 row" in status


def test_the_file_input_refuses_before_gradio_copies(
    tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tree["root"]))
    component = uploads.accept_only_uploads(gr.File(type="filepath"))
    with pytest.raises(gr.Error, match="not uploaded through this page"):
        asyncio.run(component.async_move_resource_to_block_cache(str(tree["outside"])))
    with pytest.raises(gr.Error):
        component.move_resource_to_block_cache("https://example.com/a.csv")
    with pytest.raises(gr.Error):
        component.move_resource_to_block_cache(str(tree["root"] / "abc" / "link_out.csv"))
    kept = asyncio.run(component.async_move_resource_to_block_cache(str(tree["inside"])))
    assert kept == str(tree["inside"])  # already in Gradio's folder: neither copied nor refused
    assert component.move_resource_to_block_cache(None) is None


def test_the_service_page_uses_the_confined_input() -> None:
    blocks = build_ui(FakeBackend(), UIConfig(), upload_roots=uploads.upload_roots())
    files = [b for b in blocks.blocks.values() if isinstance(b, gr.File)]
    assert len(files) == 1
    assert "async_move_resource_to_block_cache" in vars(files[0])
    assert files[0].get_block_name() == "file"


# --- error sanitiser ----------------------------------------------------------------------------


def test_scrub_cuts_tracebacks_and_keeps_one_line() -> None:
    text = 'Traceback (most recent call last):\n  File "/work/main/ui/app.py", line 3\nKeyError'
    assert guard.scrub("bad input\n" + text) == "bad input"
    assert guard.scrub(text) == ""
    assert guard.scrub("\n\n  first  \nsecond") == "first"


def test_scrub_hides_server_paths() -> None:
    cwd = os.getcwd()
    message = (
        "Cannot move /tmp/gradio/ab12/x.csv to the cache: not in "
        f"{cwd} or {tempfile.gettempdir()} ('/home/u/.cache/a b.csv')"
    )
    out = guard.scrub(message, guard.server_paths())
    assert "/tmp" not in out and cwd not in out and "/home/u" not in out
    assert out.startswith("Cannot move <path> to the cache")
    assert guard.scrub(f"in {REPO}/ui", [REPO]) == "in <path>"


def test_scrub_keeps_urls_words_and_short_text() -> None:
    assert guard.scrub("see http://host:3000/ui/a/b and/or c") == (
        "see http://host:3000/ui/a/b and/or c"
    )
    long = guard.scrub("x" * 1000)
    assert len(long) == guard.MAX_MESSAGE_CHARS and long.endswith("…")


def test_public_error_maps_5xx_to_400_and_keeps_503() -> None:
    assert guard.public_error(500, b"Internal Server Error") == (400, guard.FAILED)
    assert guard.public_error(500, b'{"error": null}') == (400, guard.FAILED)
    assert guard.public_error(502, b"") == (400, guard.FAILED)
    assert guard.public_error(503, b'{"detail": "Queue is stopped."}') == (503, "Queue is stopped.")
    status, message = guard.public_error(500, b'{"error": "KeyError at /work/main/x/y.py"}')
    assert status == 400 and message == "KeyError at <path>"


def test_public_error_does_not_echo_validation_input() -> None:
    body = json.dumps(
        {"detail": [{"loc": ["body", "data"], "msg": "Input should be a valid list", "input": 5}]}
    ).encode()
    assert guard.public_error(422, body) == (
        422,
        "invalid request: body.data: Input should be a valid list",
    )
    assert guard.public_error(404, b"") == (404, "not found")
    assert guard.public_error(403, b'{"detail": "File not allowed: /etc/passwd."}') == (
        403,
        "File not allowed: <path>",
    )


# --- the guard around small ASGI apps -----------------------------------------------------------


async def _boom(request: Request) -> Response:
    raise KeyError(f"{os.getcwd()}/missing")


async def _five_hundred(request: Request) -> Response:
    return PlainTextResponse(f"failed in {tempfile.gettempdir()}/gradio/x", status_code=500)


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


async def _stream_then_fail(request: Request) -> Response:
    async def chunks() -> Any:
        yield b"data: 1\n\n"
        raise RuntimeError("gone")

    from starlette.responses import StreamingResponse

    return StreamingResponse(chunks(), media_type="text/event-stream")


def _guarded(**kwargs: Any) -> TestClient:
    app = Starlette(
        routes=[
            Route("/boom", _boom),
            Route("/500", _five_hundred),
            Route("/echo", _echo, methods=["POST"]),
            Route("/gradio_api/upload", _echo, methods=["POST"]),
            Route("/stream", _stream_then_fail),
        ]
    )
    options = {"max_upload_bytes": 1000, "max_body_bytes": 100, **kwargs}
    return TestClient(guard.GradioGuard(app, **options), raise_server_exceptions=False)


def test_guard_answers_an_exception_with_a_400_without_paths() -> None:
    response = _guarded().get("/boom")
    assert response.status_code == 400
    assert response.json() == {"error": guard.FAILED}


def test_guard_rewrites_a_500_body() -> None:
    response = _guarded(hidden=[tempfile.gettempdir()]).get("/500")
    assert response.status_code == 400
    assert response.json() == {"error": "failed in <path>"}
    assert response.text.count("\n") == 0


def test_guard_rewrites_a_404_as_json() -> None:
    response = _guarded().get("/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


def test_guard_passes_good_answers_unchanged() -> None:
    response = _guarded().post("/echo", content=b"x" * 100)
    assert response.status_code == 200 and response.json() == {"bytes": 100}


def test_guard_refuses_large_bodies_by_length_and_by_count() -> None:
    client = _guarded()
    assert client.post("/echo", content=b"x" * 101).status_code == 413
    assert client.post("/gradio_api/upload", content=b"x" * 1000).status_code == 200

    def chunked() -> Any:
        for _ in range(5):
            yield b"x" * 50

    response = client.post("/echo", content=chunked())  # no Content-Length
    assert response.status_code == 413
    assert "over 100 bytes" in response.json()["error"]
    assert client.post("/gradio_api/upload", content=chunked()).status_code == 411


def test_guard_ends_a_failing_stream_cleanly() -> None:
    response = _guarded().get("/stream")
    assert response.status_code == 200
    assert response.text == "data: 1\n\n"


def test_guard_refuses_icon_sizes_with_no_work() -> None:
    client = _guarded()
    response = client.get("/pwa_icon/72327")
    assert response.status_code == 404
    assert "192, 512" in response.json()["error"]


# --- a hardened Gradio app, in-process ----------------------------------------------------------


class FakeBackend:
    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "label": "positive",
                "confidence": 0.9,
                "probabilities": {"negative": 0.1, "positive": 0.9},
            }
            for _ in texts
        ]

    async def score_file(
        self, job_id: str, data: bytes, suffix: str, text_column: str | None, on_progress: Any
    ) -> dict[str, Any]:
        raise ValueError("the file is not scored in these tests")

    async def model_info(self) -> dict[str, Any]:
        return {"name": "sentiment", "version": "1"}

    async def monitoring_summary(self) -> dict[str, Any] | None:
        return None

    async def log_predictions(self, texts: list[str], raw: Any, latency_s: float) -> bool:
        return False

    async def remember(self, texts: list[str], raw: Any) -> list[str]:
        return [f"id-{i}" for i in range(len(texts))]

    def feedback_enabled(self) -> bool:
        return False

    async def send_feedback(self, prediction_id: str, label: str) -> dict[str, int]:
        return {"accepted": 0, "unknown": 1}


@pytest.fixture()
def hardened(tmp_path: Path) -> Any:
    from PIL import Image

    cfg = UIConfig()
    blocks = prepare_for_mount(build_ui(FakeBackend(), cfg, upload_roots=uploads.upload_roots()))
    blocks.favicon_path = str(tmp_path / "favicon.png")  # BentoML's mount sets a PNG favicon
    Image.new("RGB", (32, 32)).save(blocks.favicon_path)
    app = gr.routes.App.create_app(blocks)
    guard.harden(app, max_upload_bytes=2000, max_body_bytes=guard.json_body_limit(5000))
    return app


def test_harden_sets_limits_and_turns_error_details_off(hardened: Any) -> None:
    blocks = hardened.get_blocks()
    assert blocks.max_file_size == 2000
    assert blocks.config["max_file_size"] == 2000  # the page refuses larger files itself
    assert blocks.show_error is False
    assert blocks.allowed_paths == []
    assert os.path.realpath(os.getcwd()) in blocks.blocked_paths


def test_hardened_app_has_no_openapi_operations(hardened: Any) -> None:
    from fastapi.openapi.utils import get_openapi

    # What BentoML's /docs.json merges from a mounted FastAPI app.
    spec = get_openapi(title=hardened.title, version=hardened.version, routes=hardened.routes)
    assert spec["paths"] == {}


def test_hardened_app_answers_hostile_requests_with_4xx(hardened: Any) -> None:
    with TestClient(hardened, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 200
        assert client.get("/pwa_icon/192").status_code == 200
        assert client.get("/pwa_icon/6000").status_code == 404
        assert client.get("/pwa_icon?size=6000").status_code == 404
        assert client.get("/?page=nope").status_code == 404
        big = {"files": ("big.csv", b"text\n" + b"x" * 3000, "text/csv")}
        assert client.post("/gradio_api/upload", files=big).status_code == 413
        small = {"files": ("s.csv", b"text\ngood\n", "text/csv")}
        stored = client.post("/gradio_api/upload", files=small)
        assert stored.status_code == 200
        assert uploads.is_confined(stored.json()[0], uploads.upload_roots())
        for method, path, body in [
            ("POST", "/gradio_api/run/nope", {"data": []}),
            ("POST", "/gradio_api/call/v2/nope", {}),
            ("POST", "/gradio_api/queue/join", {"data": [], "fn_index": 999, "session_hash": "x"}),
            ("GET", "/gradio_api/proxy=http://127.0.0.1:1/x", None),
        ]:
            response = client.request(method, path, json=body)
            assert 400 <= response.status_code < 500, (path, response.status_code)
            assert set(response.json()) == {"error"}
            for secret in (REPO, tempfile.gettempdir(), "Traceback"):
                assert secret not in response.text


def test_mounted_gradio_app_is_found_on_the_service_or_class(hardened: Any) -> None:
    blocks = hardened.get_blocks()

    from types import SimpleNamespace

    service = SimpleNamespace(mount_apps=[(object(), "/", "api"), (hardened, "/ui", "gradio_ui")])
    decorated = type("Decorated", (), {"__bentoml_mounted_apps__": [(hardened, "/ui", "ui")]})

    assert guard.mounted_gradio_app(service, blocks) is hardened
    assert guard.mounted_gradio_app(decorated, blocks) is hardened
    with pytest.raises(RuntimeError, match="mount_ui"):
        guard.mounted_gradio_app(service, object())


def test_blocked_paths_never_hide_the_upload_folder(tmp_path: Path) -> None:
    uploads_dir = tmp_path / "gradio"
    uploads_dir.mkdir()
    other = tmp_path / "downloads"
    other.mkdir()
    blocked = guard.blocked_paths([uploads_dir], [other, tmp_path])
    assert str(other.resolve()) in blocked
    assert str(tmp_path.resolve()) not in blocked  # it holds the upload folder
