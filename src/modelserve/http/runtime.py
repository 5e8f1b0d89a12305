"""What one serving process holds besides its routes, and its lifespan.

A :class:`Runtime` is built from the settings: the metrics, the micro-batchers, the count of
requests in flight, the observer (request ids, metrics, access lines), the fast lane, and the
shared ``state`` the routes read (``request.app.state``). Its :meth:`Runtime.lifespan` loads
the registry and runs the background tasks (store watcher, metrics flush).

Nothing here imports FastAPI: ``modelserve serve`` starts listening with a runtime and its fast
lane while the FastAPI app is still being built (:mod:`modelserve.http.staged`);
:func:`modelserve.http.app.create_app` builds the app over the same runtime.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from starlette.datastructures import State

from modelserve.core.batching import Batchers
from modelserve.core.errors import StoreError
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from modelserve.http import connections
from modelserve.http.fastpath import FastLane
from modelserve.http.limits import InFlight
from modelserve.http.paths import PROBE_PATHS
from modelserve.ops.logs import flush_handlers
from modelserve.ops.metrics import Metrics
from modelserve.ops.observe import Observer

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class Runtime:
    """The settings, metrics, batchers, concurrency count, observer and fast lane of a server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = metrics = Metrics()
        self.batchers = Batchers(
            enabled=settings.micro_batching,
            max_rows=settings.batch_max_rows,
            max_wait=settings.batch_max_wait_ms / 1000,
            observe=lambda predictor, requests, rows: metrics.batch(
                predictor.name, predictor.version, requests, rows
            ),
        )
        self.in_flight = InFlight(settings.max_concurrent_requests)
        self.observer = Observer(
            metrics,
            access_log=settings.access_log,
            log_health=settings.log_health,
            health_paths=PROBE_PATHS,
            request_id_header=settings.request_id_header,
        )
        # In front of everything, with the same observer and concurrency count (fastpath.py);
        # not with an inference key or tracing, which only the full stack applies.
        self.lane: FastLane | None = None
        if settings.inference_api_key is None and not settings.tracing:
            self.lane = FastLane(settings, self.observer, self.in_flight, self.batchers)
        # What the routes read as ``request.app.state``; ``registry`` is added by the lifespan.
        self.state = State()
        self.state.settings = settings
        self.state.metrics = metrics
        self.state.batchers = self.batchers

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Load every model in the store, then run the background tasks until shutdown."""
        settings, metrics = self.settings, self.metrics
        registry = ModelRegistry(settings, events=metrics, defer_estimators=True)
        problem = registry.store.problem()
        if problem is not None:
            raise StoreError(problem)
        # Verifying and deserializing is blocking file and CPU work: keep it off the loop.
        await anyio.to_thread.run_sync(registry.load_all)
        self.state.registry = registry
        if self.lane is not None:
            self.lane.registry = registry
        loaded = registry.loaded_versions()
        if loaded:
            logger.info("serving %s from %s", loaded, settings.store)
        if not registry.ready:
            logger.warning("not ready: %s", registry.not_ready_reason())
        # Everything alive now (libraries, models) lives as long as the server: keep it out of
        # the cyclic collector's way, so a large batch's short-lived lists do not make every
        # full collection walk the whole heap.
        gc.freeze()
        async with anyio.create_task_group() as tasks:
            if settings.poll_interval > 0:
                tasks.start_soon(_watch_store, registry, settings.poll_interval)
            tasks.start_soon(_flush_every_second, metrics)
            tasks.start_soon(_enforce_deadlines, self.lane, settings)
            tasks.start_soon(_freeze_when_confirmed, registry)
            yield
            tasks.cancel_scope.cancel()
        metrics.flush()
        flush_handlers()


async def _watch_store(registry: ModelRegistry, interval: float) -> None:
    """Poll the store and bring the registry in step; a failed scan is logged, never fatal."""
    while True:
        await anyio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(registry.sync)
        except Exception:
            logger.exception("scanning the store failed; retrying in %.1f s", interval)


async def _enforce_deadlines(lane: FastLane | None, settings: Settings) -> None:
    """Cut off what waits past its deadline: bodies the lane reads, headers on connections.

    A few looks a second, so a deadline is kept to within a quarter of itself (a second at
    most), at no cost to each request.
    """
    header_timeout = settings.header_timeout
    period = min(1.0, settings.request_timeout / 4, header_timeout / 4)
    while True:
        await anyio.sleep(period)
        now = time.perf_counter()
        if lane is not None:
            lane.expire(now)
        connections.close_slow(now, header_timeout)


async def _freeze_when_confirmed(registry: ModelRegistry) -> None:
    """Freeze again once the deferred estimators (and scikit-learn with them) are loaded."""
    while not registry.all_confirmed:
        await anyio.sleep(0.25)
    gc.freeze()


async def _flush_every_second(metrics: Metrics) -> None:
    """Publish pending request counts (other workers read them from files) and log lines."""
    while True:
        await anyio.sleep(FLUSH_SECONDS)
        metrics.flush()
        flush_handlers()
