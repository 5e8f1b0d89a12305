"""A short road for small, well-formed prediction requests, in front of the whole app.

FastAPI's routing, dependency injection and its middleware stack cost more than validating and
predicting a one-row batch. The app (:class:`modelserve.http.app.ModelServeApp`) hands each
``POST`` to :class:`FastLane` first. The lane answers small predict and infer requests itself,
completely: with the same calls the routes make (registry, then the data plane's decode ->
check -> predict -> encode, so the same encoders), the same error table for what
fails (``problems.exception_response``; ``problems.unexpected_response``, logged with its
traceback, for what nobody foresaw), and the same observability (request id, metrics, access
line) and concurrency limit as the middleware. It hands a request to the app untouched, before
doing any work on it, when the lane is not the place: other routes, large bodies (which the
routes offload to a thread under the deadline), servers with an inference key or tracing,
requests arriving while the server is at its concurrency limit, models whose requests are
micro-batched. So the fast lane changes how fast an answer comes, never what any answer is (the
replay corpus sends every request both ways).

A body that has not arrived within ``MODELSERVE_REQUEST_TIMEOUT`` gets the table's 504, and a
client that disconnects before its body ends is recorded as 499 with nothing sent, as the app
records it.

The lane also answers the health probes (``GET``) of a server that is up and ready, from the
same schema models the routes return: orchestrators probe every few seconds, even at full load,
and the first probe after start-up would otherwise wait for FastAPI to finish building its
routes on first use (20-30 ms measured on a loaded machine). A server that is not ready is
answered by the app (a 503).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Protocol

import orjson
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.core.batching import Batchers, MicroBatcher
from modelserve.core.errors import DeadlineExceededError, ModelServeError
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from modelserve.dataplane.plane import (
    Answer,
    Prepared,
    answer_merged,
    answer_native,
    answer_v2,
    prepare_native,
    prepare_v2,
)
from modelserve.http import paths
from modelserve.http.limits import InFlight
from modelserve.http.problems import CLIENT_CLOSED, exception_response, unexpected_response
from modelserve.ops.observe import ARRIVED_KEY, Observer, RequestInfo, request_id_of
from modelserve.protocol.native import Liveness, Readiness
from modelserve.protocol.v2.types import HEADER_LENGTH

# Versions are ASCII digits, as everywhere (store.parse_version); \d takes other scripts' too.
# /v1 refuses version 0 before looking for it (a 422, from the route's ge=1): the app says so.
_NATIVE = re.compile(r"^/v1/models/([^/]+)/(?:versions/(0*[1-9][0-9]*)/)?predict$")
_V2 = re.compile(r"^/v2/models/([^/]+)/(?:versions/([0-9]+)/)?infer$")
_JSON = (b"content-type", b"application/json")
_BINARY = (b"content-type", b"application/octet-stream")
_TEMPLATES = {
    (False, False): paths.PREDICT,
    (False, True): paths.PREDICT_VERSION,
    (True, False): paths.INFER,
    (True, True): paths.INFER_VERSION,
}
_Target = tuple[str, str | None, bool, str]
_Answer = tuple[bytes, int | None]


class _Merged:
    """A checked request that joins its model's next merged call on the loop (``answer``)."""

    __slots__ = ("batcher", "form", "prepared")

    def __init__(self, batcher: MicroBatcher, prepared: Prepared, form: Answer) -> None:
        self.batcher = batcher
        self.prepared = prepared
        self.form = form

    async def answer(self) -> _Answer:
        encoded = await answer_merged(self.batcher, self.prepared, form=self.form)
        return encoded.body, encoded.header_length


"""A response body, and the length of its JSON header when binary tensors follow it."""
_HEADER_LENGTH = HEADER_LENGTH.lower().encode()
# The probes' bodies when the server is up (and, for readiness, ready): what the routes return.
_LIVE = Liveness().model_dump_json().encode()
_V2_LIVE = orjson.dumps({"live": True})
_V2_READY = orjson.dumps({"ready": True})


class Owner(Protocol):
    """The app a request is addressed to (``scope["app"]``, which the app's routes read)."""

    state: State


class FastLane:
    """Answer small good predict/infer requests directly; pass everything else to the app."""

    def __init__(
        self,
        settings: Settings,
        observer: Observer,
        in_flight: InFlight,
        batchers: Batchers | None = None,
    ) -> None:
        self.default_model = settings.default_model
        # Larger bodies are offloaded to a thread by the routes; none may pass the body limit.
        self.max_inline = min(settings.offload_body_bytes, settings.max_body_bytes)
        self.micro_batching = settings.micro_batching
        self.batchers = batchers
        self.request_timeout = settings.request_timeout
        self.observer = observer
        self.in_flight = in_flight
        # The models, once the runtime's lifespan has loaded them (the app reads the same
        # registry from its state, where each read costs a caught AttributeError: State
        # keeps its attributes in a dict behind __getattr__).
        self.registry: ModelRegistry | None = None
        # The requests whose bodies are being read, with their deadlines; those cut off.
        # A dictionary entry per request, where a timer per request would cost several times
        # as much: one task of the runtime's (expire) looks a few times a second.
        self._reading: dict[asyncio.Task[Any] | None, float] = {}
        self._expired: set[asyncio.Task[Any]] = set()

    async def serve(
        self, owner: Owner, scope: Scope, receive: Receive, send: Send, app: ASGIApp
    ) -> None:
        """Answer a request to ``owner`` in the lane, or hand it to ``app``.

        ``POST`` requests and ``GET`` probes come to the lane; everything else, and whatever the
        lane does not answer, goes to ``app``.
        """
        if scope["type"] == "http":
            method = scope["method"]
            if method == "POST":
                scope["app"] = owner
                await self(scope, receive, send, app)
                return
            if method == "GET" and scope["path"] in paths.HEALTH_PROBES:
                scope["app"] = owner
                await self.probe(scope, receive, send, app)
                return
        await app(scope, receive, send)

    def target(self, path: str) -> _Target | None:
        """Model name, version, whether it is /v2, and the route template; None: not ours."""
        if path == paths.DEFAULT_PREDICT:
            return self.default_model, None, False, paths.DEFAULT_PREDICT
        v2 = path.startswith(paths.V2_PREFIX)
        match = (_V2 if v2 else _NATIVE).match(path)
        if match is None:
            return None
        return match[1], match[2], v2, _TEMPLATES[v2, match[2] is not None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Serve one ``POST`` request; ``app`` is the whole app, for everything not answered."""
        target = self.target(scope["path"])
        in_flight = self.in_flight
        registry = self.registry
        if (
            target is None
            or registry is None  # no lifespan (yet): the app says what is wrong
            or in_flight.full
            or not _small(scope["headers"], self.max_inline)
        ):
            await app(scope, receive, send)
            return
        arrived = time.perf_counter()
        in_flight.active += 1
        try:
            chunks: list[bytes] = []
            read = await self._read(receive, chunks, arrived + self.request_timeout)
            body = b"".join(chunks)
            if read is _GONE or read is _SLOW:
                # The client went away, or is too slow: answered here, as the app would.
                await self._refuse(scope, send, target, read, arrived)
                return
            if read is _COMPLETE:
                info = RequestInfo("")
                try:
                    answered = self.answer(registry, body, target, info)
                    if isinstance(answered, _Merged):
                        answered = await answered.answer()
                except Exception as exc:  # rendered as the app renders it, from the one table
                    info.request_id = request_id_of(scope["headers"])
                    await self._fail(scope, send, info, exc, arrived)
                    return
                if answered is not None:
                    info.request_id = request_id_of(scope["headers"])
                    await self._send(scope, send, info, *answered, arrived)
                    return
        finally:
            in_flight.active -= 1
        scope[ARRIVED_KEY] = arrived
        await app(scope, _replay(body, read is not _LARGE, receive), send)

    async def probe(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Answer a ``GET`` of a health probe; the app answers it when not ready."""
        arrived = time.perf_counter()
        path: str = scope["path"]
        registry = self.registry
        if registry is None:  # no lifespan (yet): the app says what is wrong
            await app(scope, receive, send)
            return
        if path == paths.LIVE:
            answer = _LIVE
        elif path == paths.V2_LIVE:
            answer = _V2_LIVE
        elif not registry.ready:
            await app(scope, receive, send)
            return
        elif path == paths.READY:
            answer = Readiness(models=registry.loaded_versions()).model_dump_json().encode()
        else:
            answer = _V2_READY
        info = RequestInfo(request_id_of(scope["headers"]), route=path)
        await self._send(scope, send, info, answer, None, arrived)

    async def _send(
        self,
        scope: Scope,
        send: Send,
        info: RequestInfo,
        answer: bytes,
        header_length: int | None,
        arrived: float,
    ) -> None:
        """Send a 200 with ``answer``, then record the request as the middleware would."""
        headers = [
            _JSON if header_length is None else _BINARY,
            (b"content-length", str(len(answer)).encode()),
        ]
        if header_length is not None:  # /v2 binary tensors after a JSON header
            headers.append((_HEADER_LENGTH, str(header_length).encode()))
        await self._respond(scope, send, info, 200, headers, answer, arrived)

    async def _respond(
        self,
        scope: Scope,
        send: Send,
        info: RequestInfo,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        arrived: float,
    ) -> None:
        """Send one response (with the request id), then record the request."""
        observer = self.observer
        if observer.request_id_header:
            headers.append((b"x-request-id", info.request_id.encode()))
        sent = 500
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            sent = status
            await send({"type": "http.response.body", "body": body})
        finally:
            observer.record(scope, info, sent, time.perf_counter() - arrived)

    async def _fail(
        self, scope: Scope, send: Send, info: RequestInfo, exc: Exception, arrived: float
    ) -> None:
        """Answer a request that failed in the lane exactly as the app would."""
        method, path = scope["method"], scope["path"]
        response = (
            exception_response(method, path, exc)
            if isinstance(exc, ModelServeError)
            else unexpected_response(method, path, exc)
        )
        headers, body = list(response.raw_headers), bytes(response.body)
        await self._respond(scope, send, info, response.status_code, headers, body, arrived)

    async def _refuse(
        self, scope: Scope, send: Send, target: _Target, read: str, arrived: float
    ) -> None:
        """Record a client that went away (499, nothing sent), or answer one too slow (504)."""
        info = RequestInfo(request_id_of(scope["headers"]), route=target[3])
        if read is _GONE:
            self.observer.record(scope, info, CLIENT_CLOSED, time.perf_counter() - arrived)
            return
        error = DeadlineExceededError.after(self.request_timeout)
        response = exception_response(scope["method"], scope["path"], error)
        headers, body = list(response.raw_headers), bytes(response.body)
        await self._respond(scope, send, info, response.status_code, headers, body, arrived)

    async def _read(self, receive: Receive, chunks: list[bytes], deadline: float) -> str:
        """Read the body into ``chunks`` until it ends or passes the lane's limit; say how it
        ended: :data:`_SLOW` when :meth:`expire` found it past ``deadline`` (perf_counter).

        The chunks are the caller's, so what was read is kept when the reading is cut off.
        """
        task = asyncio.current_task()
        reading, limit = self._reading, self.max_inline
        reading[task] = deadline
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return _GONE
                chunk = message.get("body", b"")
                chunks.append(chunk)
                size += len(chunk)
                if not message.get("more_body", False):
                    return _COMPLETE if size <= limit else _LARGE_WHOLE
                if size > limit:
                    return _LARGE
        except asyncio.CancelledError:
            if task is None or task not in self._expired:
                raise  # not the deadline's: the server is stopping
            self._expired.discard(task)
            task.uncancel()
            return _SLOW
        finally:
            del reading[task]

    def expire(self, now: float) -> int:
        """Cut off the bodies still being read past their deadline; how many (the runtime's
        deadline task calls this a few times a second)."""
        late = [task for task, deadline in self._reading.items() if deadline <= now]
        for task in late:
            if task is not None and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        return len(late)

    def answer(
        self, registry: ModelRegistry, body: bytes, target: _Target, info: RequestInfo
    ) -> _Answer | _Merged | None:
        """The answer to a request, or None, before any work, when the app is to answer it; a
        request merged with others on the loop is checked here and answered by awaiting it.

        Raises what the core raises; :meth:`__call__` renders it through the error table.
        ``info`` (the request's observability record) learns the model, version and rows.
        """
        name, version, v2, info.route = target
        predictor = registry.get(name, None if version is None else int(version))
        if self.micro_batching and predictor.batchable:
            batcher = self.batchers.get(predictor) if self.batchers is not None else None
            if batcher is None or not predictor.merges_inline:
                return None  # the route merges it with other requests to the same model
            info.model, info.version = predictor.name, predictor.version
            info.api = "v2" if v2 else "native"
            prepared = prepare_v2(predictor, body, None) if v2 else prepare_native(predictor, body)
            info.rows = len(prepared.batch)
            return _Merged(batcher, prepared, "v2" if v2 else "native")
        info.model, info.version = predictor.name, predictor.version
        if v2:
            info.api = "v2"
            encoded = answer_v2(predictor, body, None)
        else:
            info.api = "native"
            encoded = answer_native(predictor, body)
        info.rows = encoded.rows
        return encoded.body, encoded.header_length


def _small(headers: list[tuple[bytes, bytes]], limit: int) -> bool:
    """A body declared no larger than ``limit``, and no binary tensors (they are large)."""
    for key, value in headers:
        if key == b"content-length":
            if not value.isdigit() or int(value) > limit:
                return False
        elif key == _HEADER_LENGTH:
            return False
    return True


_COMPLETE = "complete"  # the whole body was read
_LARGE = "large"  # the body passed the lane's limit; the rest is still to be read
_LARGE_WHOLE = "large-whole"  # all of the body was read, and it is over the lane's limit
_GONE = "gone"  # the client disconnected
_SLOW = "slow"  # the deadline passed first


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A receive that first gives back what the fast path read, then the rest of the stream."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replayed
