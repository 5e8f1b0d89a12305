"""The limits the app and the fast lane enforce alike: concurrent requests and body size."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.core.errors import OverloadedError, PayloadTooLargeError
from modelserve.http.problems import ERROR_HEADERS, error_response


class InFlight:
    """How many requests are being served, against the limit; shared with the fast lane."""

    __slots__ = ("active", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @property
    def full(self) -> bool:
        return self.active >= self.limit


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | None) -> PayloadTooLargeError:
        got = f" ({size} bytes)" if size is not None else ""
        return PayloadTooLargeError(
            f"request body is larger than the limit of {self.max_bytes} bytes{got} "
            "(MODELSERVE_MAX_BODY_BYTES); send fewer rows per request",
            limit=self.max_bytes,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    error = self._too_large(declared)
                    response = error_response(scope["path"], 413, error.message, code=error.code)
                    await response(scope, receive, send)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(None)
            return message

        await self.app(scope, limited_receive, send)


class ConcurrencyLimitMiddleware:
    """Answer 503 with Retry-After at once when ``limit`` requests are already being served.

    Excess load is shed in microseconds instead of queueing without bound; paths in ``exempt``
    (health probes) always pass. Requests the fast lane answers count in the same ``in_flight``.
    """

    def __init__(self, app: ASGIApp, in_flight: InFlight, exempt: frozenset[str]) -> None:
        self.app = app
        self.in_flight = in_flight
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        in_flight = self.in_flight
        if in_flight.full:
            error = OverloadedError(
                f"the server is busy with {in_flight.limit} requests "
                "(MODELSERVE_MAX_CONCURRENT_REQUESTS); retry shortly"
            )
            response = error_response(
                scope["path"],
                503,
                error.message,
                code=error.code,
                headers=ERROR_HEADERS[OverloadedError],
            )
            await response(scope, receive, send)
            return
        in_flight.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            in_flight.active -= 1
