"""Sorting a drain run's requests around the signal."""

from __future__ import annotations

import errno

import aiohttp

from loadtests.drain import outcome, sort_requests


def test_requests_are_sorted_into_in_flight_next_and_later() -> None:
    log = [
        (0, 0.0, 1.0, "200"),  # answered before the signal: not counted
        (0, 1.0, 3.0, "200"),  # in flight
        (1, 1.5, 2.5, "200"),  # in flight
        (-1, 2.0, 0.0, "SIGTERM"),
        (0, 3.0, 3.1, "503"),  # client 0's next
        (1, 2.6, 2.7, "ClientOSError:104"),  # client 1's next
        (1, 3.7, 3.8, "ClientConnectorError:111"),  # later
        (0, 4.1, 4.2, "ClientConnectorError:111"),  # later
    ]
    result = sort_requests(log)
    assert result.in_flight == {"200": 2}
    assert result.next_request == {"503": 1, "ClientOSError:104": 1}
    assert result.later == {"ClientConnectorError:111": 2}


def test_an_outcome_is_a_status_or_an_error_with_its_errno() -> None:
    assert outcome(503, None) == "503"
    reset = aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer")
    assert outcome(None, reset) == "ClientOSError:104"
    assert outcome(None, aiohttp.ServerDisconnectedError()) == "ServerDisconnectedError"
