"""A TCP router for one environment, run inside its own container (standard library only).

    python router.py serve --listen 0.0.0.0:3000 --upstream-file /tmp/upstream
    python router.py set HOST:PORT [--upstream-file F]                  (atomic switch)
    python router.py set LIVE --canary HOST:PORT --share PCT            (a canary split)
    python router.py get [--upstream-file F]                            (the live upstream)
    python router.py state [--upstream-file F]                          (everything, as JSON)
    python router.py record JSON [--upstream-file F]                    (the canary's record)
    python router.py version

Every new connection goes to the upstream the file names at that moment, so switching is a
rename: connections already open finish on the old container, new ones reach the new one.

The file holds one of two formats. A plain switch writes the original one, a single line
`HOST:PORT`; a canary split writes JSON, `{"live": "HOST:PORT", "canary": "HOST:PORT",
"share": 10.0}`, and then each new connection goes to the canary with probability share/100
(a weighted choice per connection). Both are read; a router of the first version reads only
the first, which is why a plain switch keeps writing it. The canary controller's record (its
checks and its decision, for `make deploy-status`) lives beside the file, in `F.canary`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from dataclasses import dataclass

# A fixed path, not tempfile: `serve` and every later `set`/`get` (separate `docker exec`
# processes) must agree on it, and it lives in the router's own single-purpose container,
# where no other user or process can plant or read it.
DEFAULT_FILE = "/tmp/upstream"  # nosec B108
# What `version` prints; bluegreen.py replaces a running router that answers anything else.
VERSION = "2"
_RNG = random.Random()  # nosec B311 - traffic splitting, not security


@dataclass(frozen=True)
class RouteState:
    """Where new connections go: `live`, and `share` % of them to `canary` when one is set."""

    live: tuple[str, int]
    canary: tuple[str, int] | None = None
    share: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "live": join(self.live),
            "canary": None if self.canary is None else join(self.canary),
            "share": self.share if self.canary is not None else 0.0,
        }


def join(target: tuple[str, int]) -> str:
    return f"{target[0]}:{target[1]}"


def parse_upstream(text: str) -> tuple[str, int] | None:
    """'host:port' -> (host, port); None for anything else (an empty or half-written file)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def parse_share(value: object) -> float | None:
    """A percentage in [0, 100], else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        share = float(value)
    except ValueError:
        return None
    return share if 0.0 <= share <= 100.0 else None


def parse_state(text: str) -> RouteState | None:
    """Either format of the file; None for anything unusable (then the router refuses)."""
    text = text.strip()
    if not text.startswith("{"):
        live = parse_upstream(text)
        return None if live is None else RouteState(live)
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    live = parse_upstream(str(data.get("live") or ""))
    if live is None:
        return None
    canary_text = data.get("canary")
    if not canary_text:
        return RouteState(live)
    canary = parse_upstream(str(canary_text))
    share = parse_share(data.get("share", 0))
    if canary is None or share is None:
        return None
    return RouteState(live, canary, share)


def choose(state: RouteState, rng: random.Random) -> tuple[str, int]:
    """The upstream of one new connection: the canary with probability share/100."""
    if state.canary is not None and rng.random() * 100.0 < state.share:
        return state.canary
    return state.live


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_upstream(path: str, value: str) -> None:
    """All new connections to `value` (the original one-line format)."""
    if parse_upstream(value) is None:
        raise ValueError(f"not HOST:PORT: {value!r}")
    _write(path, value.strip() + "\n")


def write_state(path: str, state: RouteState) -> None:
    if state.canary is None:
        write_upstream(path, join(state.live))
        return
    _write(path, json.dumps(state.to_dict()) + "\n")


def read_state(path: str) -> RouteState | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_state(handle.read())
    except OSError:
        return None


def read_upstream(path: str) -> tuple[str, int] | None:
    """The live upstream, whichever format the file holds."""
    state = read_state(path)
    return None if state is None else state.live


def record_path(path: str) -> str:
    return f"{path}.canary"


def write_record(path: str, text: str) -> None:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the canary record must be a JSON object")
    _write(record_path(path), json.dumps(data) + "\n")


def read_record(path: str) -> dict[str, object] | None:
    try:
        with open(record_path(path), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


async def _handle(
    path: str,
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    rng: random.Random | None = None,
) -> None:
    state = read_state(path)
    if state is None:
        client_w.close()
        return
    target = choose(state, rng or _RNG)
    try:
        up_r, up_w = await asyncio.open_connection(*target)
    except OSError:
        if target == state.live:
            # Nothing answers: closing at once makes the client fail fast instead of hanging.
            client_w.close()
            return
        # A canary that refuses connections costs its clients nothing: the live colour
        # takes them (the controller sees the canary's /metrics fail and rolls back).
        try:
            up_r, up_w = await asyncio.open_connection(*state.live)
        except OSError:
            client_w.close()
            return
    await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))


async def serve(listen: str, path: str) -> None:
    parsed = parse_upstream(listen)
    if parsed is None:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    server = await asyncio.start_server(lambda r, w: _handle(path, r, w), *parsed)
    stop = asyncio.Event()
    # As PID 1 in its container, without a handler SIGTERM would be ignored until the kill.
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await server.start_serving()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="blue-green and canary TCP router")
    parser.add_argument("action", choices=("serve", "set", "get", "state", "record", "version"))
    parser.add_argument("value", nargs="?")
    parser.add_argument("--listen", default="0.0.0.0:3000")  # nosec B104 - inside its container
    parser.add_argument("--upstream-file", default=DEFAULT_FILE)
    parser.add_argument("--canary", help="set: send --share %% of new connections here")
    parser.add_argument("--share", default="0", help="set: the canary's %% of new connections")
    args = parser.parse_args(argv)
    path = args.upstream_file
    if args.action == "version":
        print(VERSION)
        return 0
    if args.action == "set":
        try:
            live = parse_upstream(args.value or "")
            if live is None:
                raise ValueError(f"not HOST:PORT: {args.value!r}")
            if args.canary:
                canary = parse_upstream(args.canary)
                share = parse_share(args.share)
                if canary is None:
                    raise ValueError(f"--canary is not HOST:PORT: {args.canary!r}")
                if share is None:
                    raise ValueError(f"--share must be a percentage 0-100: {args.share!r}")
                write_state(path, RouteState(live, canary, share))
            else:
                write_upstream(path, args.value)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.action == "record":
        try:
            write_record(path, args.value or "")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.action == "get":
        target = read_upstream(path)
        if target is None:
            return 1
        print(join(target))
        return 0
    if args.action == "state":
        state = read_state(path)
        if state is None:
            return 1
        print(json.dumps({**state.to_dict(), "canary_run": read_record(path)}))
        return 0
    if args.value:
        write_upstream(path, args.value)
    asyncio.run(serve(args.listen, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
