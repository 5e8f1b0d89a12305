"""The HTTP layer: the app factory, its lifespan, and the module-level ``app`` for uvicorn.

``uvicorn modelserve.main:app`` serves the store named by ``MODELSERVE_STORE``; models are
loaded in the lifespan, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from modelserve import __version__
from modelserve.problems import BodyLimitMiddleware, install_error_handlers
from modelserve.registry import ModelRegistry
from modelserve.routes import router
from modelserve.schemas import PredictRequest
from modelserve.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (from the environment when None)."""
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(settings)
        # Verifying and deserializing is blocking file and CPU work: keep it off the loop.
        await anyio.to_thread.run_sync(registry.load_all)
        app.state.registry = registry
        loaded = registry.loaded_versions()
        if loaded:
            logger.info("serving %s from %s", loaded, settings.store)
        else:
            logger.warning("no verified model in %s: the server is not ready", settings.store)
        yield

    app = FastAPI(
        title="modelserve",
        version=__version__,
        description="A fast, safe prediction API for scikit-learn models.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    _document_predict_request(app)
    return app


def _document_predict_request(app: FastAPI) -> None:
    """Add PredictRequest to the OpenAPI components: predict routes read the raw body.

    Each model validates its body against a schema built from its own manifest, so the routes
    take the bytes; the generic request model is what the document shows.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {})["PredictRequest"] = (
                PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


app = create_app()
