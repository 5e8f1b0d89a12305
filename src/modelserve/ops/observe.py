"""Request observability: a request id, one access-log line and metrics for every HTTP request.

:class:`ObservabilityMiddleware` is the outermost layer of the app, so it also sees requests
that are shed (503) or refused (413) before any route runs. It gives each request a
:class:`RequestInfo` in the ASGI scope; whichever layer answers (the fast path or a route)
notes the model, version and rows there, and the middleware turns it into one log line and
the metrics once the response is sent.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Collection
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.ops.logs import ACCESS_MESSAGE, AccessLog, AccessRecord
from modelserve.ops.metrics import Metrics

SCOPE_KEY = "modelserve.request"
ARRIVED_KEY = "modelserve.arrived"
"""perf_counter() when the fast lane began reading a request it then handed on."""
REQUEST_ID_HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


@dataclass(slots=True)
class RequestInfo:
    """What one request was about; filled in by the layer that answers it."""

    request_id: str
    model: str | None = None
    version: int | None = None
    api: str | None = None
    rows: int = 0
    route: str | None = None


def note_model(scope: Scope, name: str, version: int, api: str) -> RequestInfo | None:
    """Record which model version a request went to (``api`` is ``native`` or ``v2``)."""
    info: RequestInfo | None = scope.get(SCOPE_KEY)
    if info is not None:
        info.model, info.version, info.api = name, version, api
    return info


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a fresh one.

    A value with spaces, quotes or control characters is replaced rather than echoed, so it
    can never forge a log line or a response header.
    """
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            if _VALID_ID.fullmatch(value):
                return value.decode()
            break
    # 128 random bits, formatted like a UUID's hex: an id, not a secret, so the fast generator.
    return f"{random.getrandbits(128):032x}"


class Observer:
    """Request ids, metrics and access-log lines: shared by the middleware and the fast lane."""

    def __init__(
        self,
        metrics: Metrics,
        access_log: bool,
        log_health: bool,
        health_paths: Collection[str],
        request_id_header: bool = True,
    ) -> None:
        self.request_id_header = request_id_header
        self.metrics = metrics
        self.access_log = access_log
        self.log_health = log_health
        self.health_paths = frozenset(health_paths)
        self.access = AccessLog()

    def begin(self, scope: Scope) -> RequestInfo:
        """The request's record (with its id), placed in the scope for the answering layer."""
        info = RequestInfo(request_id_of(scope["headers"]))
        scope[SCOPE_KEY] = info
        return info

    def record(self, scope: Scope, info: RequestInfo, status: int, seconds: float) -> None:
        """The metrics and the access-log line of one answered request."""
        route = scope.get("route")  # set by FastAPI's router; the fast lane sets info.route
        template = (
            (None if route is None else getattr(route, "path", None)) or info.route or "unmatched"
        )
        method: str = scope["method"]
        model, version, api = info.model, info.version, info.api
        self.metrics.request(
            method,
            template,
            status,
            seconds,
            None
            if model is None or version is None or api is None
            else (model, version, api, info.rows),
        )
        path: str = scope["path"]
        if not self.access_log or (path in self.health_paths and not self.log_health):
            return
        access = self.access
        if not access.logger.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        access.write(
            (
                info.request_id,
                method,
                path,
                template,
                status,
                int(seconds * 1e6 + 0.5) / 1000,  # milliseconds to 3 places; round() costs 3x
                info.model,
                info.version,
                info.rows,
                None if client is None else f"{client[0]}:{client[1]}",
            )
        )


class ObservabilityMiddleware:
    """Request id in and out, one access-log record and the metrics for every request.

    A request the fast lane (:mod:`modelserve.http.fastpath`) read before handing it on carries the
    time it arrived in the scope, so its latency counts from there, not from the hand-over.
    """

    def __init__(self, app: ASGIApp, observer: Observer) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = scope.get(ARRIVED_KEY) or time.perf_counter()
        observer = self.observer
        info = observer.begin(scope)
        id_header = (b"x-request-id", info.request_id.encode())
        status = 500  # what the client sees when the app fails before starting a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if observer.request_id_header:
                    message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observer.record(scope, info, status, time.perf_counter() - start)


__all__ = [
    "ACCESS_MESSAGE",
    "ARRIVED_KEY",
    "SCOPE_KEY",
    "AccessRecord",
    "ObservabilityMiddleware",
    "Observer",
    "RequestInfo",
    "note_model",
    "request_id_of",
]
