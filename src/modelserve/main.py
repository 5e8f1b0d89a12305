"""The HTTP layer: the app factory, its lifespan, and the module-level ``app`` for uvicorn.

``uvicorn modelserve.main:app`` serves the store named by ``MODELSERVE_STORE``; models are
loaded in the lifespan, never at import time.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from modelserve import __version__
from modelserve.batching import Batchers
from modelserve.errors import StoreError
from modelserve.fastpath import PROBES, FastLane
from modelserve.logs import flush_handlers
from modelserve.metrics import Metrics
from modelserve.observe import ObservabilityMiddleware, Observer
from modelserve.oip import ErrorBody, InferenceRequest
from modelserve.problems import (
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    InFlight,
    install_error_handlers,
)
from modelserve.registry import ModelRegistry
from modelserve.routes import metrics_router, router
from modelserve.schemas import PredictRequest, ProblemDetails
from modelserve.settings import Settings
from modelserve.v2 import router as v2_router

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0

# Probed by orchestrators and scrapers: never shed under load, not logged unless asked.
PROBE_PATHS = frozenset(
    {"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/metrics"}
)


class ModelServeApp(FastAPI):
    """The FastAPI app, with the fast lane (if any) in front of its whole middleware stack."""

    fast_lane: FastLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.fast_lane
        if lane is not None and scope["type"] == "http":
            method = scope["method"]
            if method == "POST":
                scope["app"] = self
                await lane(scope, receive, send, super().__call__)
                return
            if method == "GET" and scope["path"] in PROBES:
                scope["app"] = self
                await lane.probe(scope, receive, send, super().__call__)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> ModelServeApp:
    """Build the app for ``settings`` (from the environment when None)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(settings, events=metrics, defer_estimators=True)
        problem = registry.store.problem()
        if problem is not None:
            raise StoreError(problem)
        # Verifying and deserializing is blocking file and CPU work: keep it off the loop.
        await anyio.to_thread.run_sync(registry.load_all)
        app.state.registry = registry
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
            tasks.start_soon(_freeze_when_confirmed, registry)
            yield
            tasks.cancel_scope.cancel()
        metrics.flush()
        flush_handlers()

    app = ModelServeApp(
        title="modelserve",
        version=__version__,
        description="A fast, safe prediction API for scikit-learn models.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
        # FastAPI's native OpenTelemetry checks its providers on every request (~15 µs here
        # once opentelemetry is installed); metrics are ours (Prometheus), tracing is opt-in.
        telemetry={"tracing": settings.tracing, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.batchers = Batchers(
        enabled=settings.micro_batching,
        max_rows=settings.batch_max_rows,
        max_wait=settings.batch_max_wait_ms / 1000,
        observe=lambda predictor, requests, rows: metrics.batch(
            predictor.name, predictor.version, requests, rows
        ),
    )
    app.include_router(router)
    if settings.metrics:
        app.include_router(metrics_router)
    app.include_router(v2_router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    in_flight = InFlight(settings.max_concurrent_requests)
    # Added last, so outermost: excess load is shed before any body is read.
    app.add_middleware(ConcurrencyLimitMiddleware, in_flight=in_flight, exempt=PROBE_PATHS)
    observer = Observer(
        metrics,
        access_log=settings.access_log,
        log_health=settings.log_health,
        health_paths=PROBE_PATHS,
        request_id_header=settings.request_id_header,
    )
    # Outermost of all: every request gets an id, a log line and its metrics, shed ones too.
    app.add_middleware(ObservabilityMiddleware, observer=observer)
    if settings.inference_api_key is None and not settings.tracing:
        # In front of everything, with the same observer and concurrency count (fastpath.py).
        app.fast_lane = FastLane(settings, observer, in_flight)
    _complete_openapi(app)
    return app


async def _watch_store(registry: ModelRegistry, interval: float) -> None:
    """Poll the store and bring the registry in step; a failed scan is logged, never fatal."""
    while True:
        await anyio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(registry.sync)
        except Exception:
            logger.exception("scanning the store failed; retrying in %.1f s", interval)


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


def _complete_openapi(app: FastAPI) -> None:
    """Add the schemas that routes reference but FastAPI cannot see to the OpenAPI components.

    Predict and infer routes read the raw body (each model validates it against a schema built
    from its own manifest; /v2 bodies may carry binary tensors), so the generic PredictRequest
    and InferenceRequest are added here; so are ProblemDetails and the /v2 ErrorBody, which
    error responses reference (declared by reference, so no route builds a validator for them).
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi  # noqa: PLC0415 - on first request

            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictRequest, ProblemDetails, InferenceRequest, ErrorBody):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def __getattr__(name: str) -> ModelServeApp:
    """``modelserve.main:app`` for uvicorn, built from the environment on first use.

    Built lazily, so importing this module for :func:`create_app` (as ``modelserve serve``
    does) does not build and throw away a second app.
    """
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = create_app()
    globals()["app"] = built
    return built
