"""HTTP connections with a deadline for their request headers.

uvicorn closes a connection that stays idle between requests (its keep-alive timeout), but once a
client has sent one byte of a request it waits for the rest of the headers for ever: a hundred
clients trickling a header line each every few seconds hold a hundred connections open as long
as they like. :class:`HeaderDeadlineProtocol` is uvicorn's own httptools protocol, whose open
connections :func:`close_slow` looks over a few times a second (the runtime's deadline task): a
connection that has been waiting for a request's headers for ``MODELSERVE_HEADER_TIMEOUT``
seconds, since it opened or since the request began, is closed. Nothing is added to the path of
a request: no timer is armed per request, no callback overridden.

Bodies have their deadline in the app and the fast lane (``MODELSERVE_REQUEST_TIMEOUT``, a
504); a server that is stopping waits at most ``MODELSERVE_DRAIN_TIMEOUT`` for the requests in
flight.

``modelserve serve`` selects the protocol by its import path (:data:`PROTOCOL`), so that each
``--workers`` process loads it too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

PROTOCOL = "modelserve.http.connections:HeaderDeadlineProtocol"
"""What ``uvicorn.Config(http=...)`` is given."""

_OPEN: set[HeaderDeadlineProtocol] = set()
"""This process's open connections (one server per process)."""


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, whose connections :func:`close_slow` can see."""

    _waiting: tuple[Any, float] | None = None
    """The request state a connection was first seen waiting for headers in, and when."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _OPEN.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        _OPEN.discard(self)
        super().connection_lost(exc)

    def waiting_for_headers(self) -> bool:
        """Whether the connection is in a request's headers (or has sent none yet).

        Not while a request is being served, nor while idle between requests (uvicorn's
        keep-alive timer is armed then, and data arriving disarms it).
        """
        cycle = self.cycle
        return (
            self.timeout_keep_alive_task is None
            and (cycle is None or cycle.response_complete)
            and not self.pipeline
            and not self.transport.is_closing()
        )


def close_slow(now: float, timeout: float) -> int:
    """Close the connections that have waited ``timeout`` seconds for request headers.

    ``now`` is any monotonic clock, the same on every call. Returns how many were closed.
    """
    closed = 0
    for connection in list(_OPEN):
        if not connection.waiting_for_headers():
            connection._waiting = None
            continue
        seen = connection._waiting
        if seen is None or seen[0] is not connection.cycle:
            connection._waiting = (connection.cycle, now)
        elif now - seen[1] >= timeout:
            client = connection.client
            logger.info(
                "closed the connection of %s: no complete request headers within %g s "
                "(MODELSERVE_HEADER_TIMEOUT)",
                f"{client[0]}:{client[1]}" if client else "a client",
                timeout,
            )
            connection.transport.close()
            closed += 1
    return closed
