"""A TCP router for one environment, run inside its own container (standard library only).

    python router.py serve --listen 0.0.0.0:3000 --upstream-file /tmp/upstream
    python router.py set HOST:PORT [--upstream-file F]     (atomic switch)
    python router.py get [--upstream-file F]

Every new connection goes to the upstream named in the file at that moment, so switching is a
rename: connections already open finish on the old container, new ones reach the new one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

# A fixed path, not tempfile: `serve` and every later `set`/`get` (separate `docker exec`
# processes) must agree on it, and it lives in the router's own single-purpose container,
# where no other user or process can plant or read it.
DEFAULT_FILE = "/tmp/upstream"  # nosec B108


def parse_upstream(text: str) -> tuple[str, int] | None:
    """'host:port' -> (host, port); None for anything else (an empty or half-written file)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def write_upstream(path: str, value: str) -> None:
    if parse_upstream(value) is None:
        raise ValueError(f"not HOST:PORT: {value!r}")
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(value.strip() + "\n")
    os.replace(tmp, path)


def read_upstream(path: str) -> tuple[str, int] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_upstream(handle.read())
    except OSError:
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _handle(path: str, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
    target = read_upstream(path)
    if target is None:
        client_w.close()
        return
    try:
        up_r, up_w = await asyncio.open_connection(*target)
    except OSError:
        # Nothing answers: closing at once makes the client fail fast instead of hanging.
        client_w.close()
        return
    await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))


async def serve(listen: str, path: str) -> None:
    parsed = parse_upstream(listen)
    if parsed is None:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    server = await asyncio.start_server(lambda r, w: _handle(path, r, w), *parsed)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="blue-green TCP router")
    parser.add_argument("action", choices=("serve", "set", "get"))
    parser.add_argument("value", nargs="?")
    parser.add_argument("--listen", default="0.0.0.0:3000")
    parser.add_argument("--upstream-file", default=DEFAULT_FILE)
    args = parser.parse_args(argv)
    if args.action == "set":
        try:
            write_upstream(args.upstream_file, args.value or "")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.action == "get":
        target = read_upstream(args.upstream_file)
        if target is None:
            return 1
        print(f"{target[0]}:{target[1]}")
        return 0
    if args.value:
        write_upstream(args.upstream_file, args.value)
    asyncio.run(serve(args.listen, args.upstream_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
