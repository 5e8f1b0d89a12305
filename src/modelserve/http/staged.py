"""Listen first: serve predictions and probes while the FastAPI app is still being built.

Importing FastAPI and building the app (its routes, dependency graphs and OpenAPI models) is
most of a server's start-up work (~0.2 s of ~0.8 s measured here), and none of it is needed to
answer a well-formed prediction: the fast lane (:mod:`modelserve.http.fastpath`) does that with the
registry alone. So ``modelserve serve`` runs a :class:`StagedApp`:

1. the lifespan loads the registry (:meth:`Runtime.lifespan`), exactly as the app's own would;
2. uvicorn starts listening; the fast lane answers predict/infer requests and health probes;
3. meanwhile a worker thread imports FastAPI and builds the app over the same runtime (shared
   state, metrics, concurrency count, observer);
4. every request the lane does not answer (other routes, errors, large bodies, micro-batched
   models) waits for that build, then goes through the app, so every answer is the one the
   app gives; only when it comes changes.

If the build fails (a bug), the failure is logged, every request is answered 503 (readiness
too) and ``on_failure`` is called (``modelserve serve`` stops the server and exits 1).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from modelserve.core.lifecycle import die_with_parent
from modelserve.core.settings import Settings
from modelserve.http.problems import error_response
from modelserve.http.runtime import Runtime
from modelserve.ops.gc import paused_gc
from modelserve.ops.observe import ARRIVED_KEY

logger = logging.getLogger(__name__)

Build = Callable[[Runtime], ASGIApp]
"""Builds the full app over a runtime; returns what to call for requests the lane passes on."""

UNAVAILABLE = "the server could not build its HTTP app (see the server log)"


def build_app(runtime: Runtime) -> ASGIApp:
    """The FastAPI app over ``runtime``: its stack behind the lane (the lane is in front here)."""
    from modelserve.http.app import create_app  # noqa: PLC0415 - the point: after listening

    return create_app(runtime=runtime).stack


def create_staged_app() -> StagedApp:
    """uvicorn's factory for ``serve --workers N``: each worker, from ``MODELSERVE_*``.

    A worker whose build fails answers 503 to everything (readiness too) rather than exiting,
    which its supervisor would answer by starting it again, failing the same way.
    """
    die_with_parent()
    logging.captureWarnings(True)  # uvicorn configured this worker's logging, not serve
    settings = Settings()
    return StagedApp(Runtime(settings))


class StagedApp:
    """The ASGI app ``modelserve serve`` listens with: the lane at once, the app once built."""

    def __init__(
        self,
        runtime: Runtime,
        build: Build | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.state = runtime.state
        self.build = build if build is not None else build_app
        self.on_failure = on_failure
        self.app: ASGIApp | None = None
        """The full app once built."""
        self.failed = False
        self._built: anyio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        lane = self.runtime.lane
        if lane is None or self.failed:
            await self._full(scope, receive, send)
        else:
            await lane.serve(self, scope, receive, send, self._full)

    async def _full(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The full app, once it is built; a 503 if building it failed."""
        if self.app is None and not self.failed:
            # The wait counts in the request's latency (metrics, access line), as queueing does.
            scope.setdefault(ARRIVED_KEY, time.perf_counter())
            if self._built is None:  # run without the lifespan protocol: build it here
                self._build_now()
            else:
                await self._built.wait()
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            response = error_response(scope["path"], 503, UNAVAILABLE, code="unavailable")
            await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol around :meth:`Runtime.lifespan`, as Starlette runs it."""
        self._built = built = anyio.Event()
        started = False
        await receive()  # lifespan.startup
        try:
            async with self.runtime.lifespan():
                await send({"type": "lifespan.startup.complete"})
                started = True
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._build_in_background, built)
                    await receive()  # lifespan.shutdown; a build under way is awaited
        except BaseException:
            message = traceback.format_exc()
            kind = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": kind, "message": message})
            raise
        await send({"type": "lifespan.shutdown.complete"})

    async def _build_in_background(self, built: anyio.Event) -> None:
        """Build the app in a worker thread, so the loop keeps answering what the lane can."""
        try:
            await anyio.to_thread.run_sync(self._build_now)
        finally:
            built.set()

    def _build_now(self) -> None:
        try:
            with paused_gc():  # see modelserve.ops.gc
                self.app = self.build(self.runtime)
        except Exception:
            logger.exception("building the HTTP app failed")
            self.failed = True
            if self.on_failure is not None:
                self.on_failure()
