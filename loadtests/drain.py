"""What clients see when the server gets SIGTERM under load: a `bentoml serve` of this checkout,
closed-loop clients on keep-alive connections that honour `Retry-After`, and the signal after
a few seconds.

Each client's requests are sorted into three groups: in flight when the signal was sent, the
next one it sent (on the connection it already had), and later ones. `serving/admission.py`
explains the numbers it was written for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from loadtests.http_load import retry_after_s
from loadtests.servers import ServerProcess, own_bentoml_home


@dataclass
class DrainResult:
    in_flight: Counter[str] = field(default_factory=Counter)
    next_request: Counter[str] = field(default_factory=Counter)
    later: Counter[str] = field(default_factory=Counter)
    exit_code: int | None = None

    def summary(self) -> dict[str, object]:
        return {
            "in_flight": dict(self.in_flight),
            "next_request": dict(self.next_request),
            "later": dict(self.later),
            "exit_code": self.exit_code,
        }


def outcome(status: int | None, error: BaseException | None) -> str:
    """A status code as text, or the error's class and errno ("ClientOSError:104")."""
    if error is None:
        return str(status)
    errno = getattr(error, "errno", None)
    return type(error).__name__ + (f":{errno}" if errno else "")


async def _clients(
    url: str,
    clients: int,
    texts: int,
    seconds: float,
    signal_at: float,
    send_signal: Callable[[], None],
) -> list[tuple[int, float, float, str]]:
    """(client, start, end, outcome) of every request; `send_signal` is called at `signal_at`
    seconds and its time stands in the returned list as client -1."""
    body = {"texts": ["a gripping , beautifully acted film ."] * texts}
    log: list[tuple[int, float, float, str]] = []
    stop_at = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(index: int) -> None:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status: int | None = None
                error: BaseException | None = None
                retry_after = 0.0
                try:
                    async with session.post(url, json=body) as resp:
                        await resp.read()
                        status = resp.status
                        retry_after = retry_after_s(status, resp.headers.get("Retry-After")) or 0.0
                except (aiohttp.ClientError, OSError) as exc:
                    error = exc
                    retry_after = 0.2
                log.append((index, started, time.perf_counter(), outcome(status, error)))
                await asyncio.sleep(retry_after)

        async def signaller() -> None:
            await asyncio.sleep(signal_at)
            log.append((-1, time.perf_counter(), 0.0, "SIGTERM"))
            send_signal()

        await asyncio.gather(signaller(), *(client(i) for i in range(clients)))
    return log


def sort_requests(log: list[tuple[int, float, float, str]]) -> DrainResult:
    """Split the requests around the SIGTERM entry (client -1): in flight at the signal, each
    client's first request sent after it, and the rest."""
    result = DrainResult()
    signalled = next(start for client, start, _, _ in log if client == -1)
    seen: set[int] = set()
    for client, start, end, what in sorted(log, key=lambda row: row[1]):
        if client == -1:
            continue
        if start < signalled:
            if end > signalled:
                result.in_flight[what] += 1
        elif client not in seen:
            seen.add(client)
            result.next_request[what] += 1
        else:
            result.later[what] += 1
    return result


def run_drain(
    clients: int = 32,
    texts: int = 16,
    signal_after_s: float = 5.0,
    seconds: float = 12.0,
    env: dict[str, str] | None = None,
) -> DrainResult:
    """Serve, load, signal; `env` (default: this process's) must find the model store."""
    with tempfile.TemporaryDirectory() as folder:
        env = own_bentoml_home(dict(os.environ if env is None else env), Path(folder))
        server = ServerProcess.bentoml(env, Path(folder) / "bentoml.log")
        try:
            server.wait_ready()
            log = asyncio.run(
                _clients(
                    f"{server.url}/predict",
                    clients,
                    texts,
                    seconds,
                    signal_after_s,
                    lambda: os.kill(server.proc.pid, signal.SIGTERM),
                )
            )
            exit_code = server.proc.wait(timeout=60)
        finally:
            server.stop()
    result = sort_requests(log)
    result.exit_code = exit_code
    return result


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--signal-after", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(run_drain(args.clients, args.texts, args.signal_after).summary()))


if __name__ == "__main__":
    main()
