"""The app factory: :func:`create_app` builds the FastAPI app for one :class:`Settings`.

``uvicorn modelserve.main:app`` serves the store named by ``MODELSERVE_STORE``; models are
loaded in the lifespan (:meth:`modelserve.http.runtime.Runtime.lifespan`), never at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from modelserve import __version__
from modelserve.core.settings import Settings
from modelserve.http.fastpath import FastLane
from modelserve.http.limits import BodyLimitMiddleware, ConcurrencyLimitMiddleware
from modelserve.http.paths import PROBE_PATHS
from modelserve.http.problems import install_error_handlers
from modelserve.http.routes import metrics_router, router
from modelserve.http.runtime import Runtime
from modelserve.http.scoring_routes import router as scoring_router
from modelserve.http.v2_routes import router as v2_router
from modelserve.ops.observe import ObservabilityMiddleware
from modelserve.protocol.native import PredictRequest, ProblemDetails
from modelserve.protocol.v2.types import ErrorBody, InferenceRequest


class ModelServeApp(FastAPI):
    """The FastAPI app, with the fast lane (if any) in front of its whole middleware stack."""

    fast_lane: FastLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.fast_lane
        if lane is None:
            await super().__call__(scope, receive, send)
        else:
            await lane.serve(self, scope, receive, send, self.stack)

    async def stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The whole app behind the fast lane: middleware, routes, error handlers."""
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, *, runtime: Runtime | None = None
) -> ModelServeApp:
    """Build the app for ``settings`` (from the environment when None).

    ``runtime`` is the server's state when it already has one (``modelserve serve`` listens with
    it before the app is built, :mod:`modelserve.http.staged`); the app then takes the settings from
    it, shares its state and runs no lifespan of its own.
    """
    if runtime is None:
        runtime = Runtime(settings if settings is not None else Settings())
        lifespan = _lifespan(runtime)
    else:
        lifespan = None
    settings = runtime.settings
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
    app.state = runtime.state
    # First: a path like /v1/models/iris:predict also fits /v1/models/{name}; a wrong method
    # there must be answered with the scoring route's Allow (POST), not the detail route's.
    app.include_router(scoring_router)
    app.include_router(router)
    if settings.metrics:
        app.include_router(metrics_router)
    app.include_router(v2_router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so outermost: excess load is shed before any body is read.
    app.add_middleware(ConcurrencyLimitMiddleware, in_flight=runtime.in_flight, exempt=PROBE_PATHS)
    # Outermost of all: every request gets an id, a log line and its metrics, shed ones too.
    app.add_middleware(ObservabilityMiddleware, observer=runtime.observer)
    app.fast_lane = runtime.lane
    _complete_openapi(app)
    return app


def _lifespan(runtime: Runtime) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    def lifespan(app: FastAPI) -> AbstractAsyncContextManager[None]:
        return runtime.lifespan()

    return lifespan


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
