"""The native JSON API: thin routes over the registry and predictors.

Each route takes HTTP in, calls the data plane or the core, and turns the answer into HTTP.
Errors are raised as core exceptions and mapped to problem+json by
:mod:`modelserve.http.problems`.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Path, Request
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError
from starlette.responses import Response

from modelserve.core.errors import ModelUnavailableError
from modelserve.core.manifest import PLOT_FILE, REPORT_FILES, SUMMARY_FILE
from modelserve.core.predictor import Predictor
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from modelserve.core.store import parse_version
from modelserve.dataplane.plane import answer_native, prepare_native
from modelserve.http import paths
from modelserve.http.deps import (
    InferenceAccess,
    RegistryDep,
    SettingsDep,
    predict_request,
)
from modelserve.http.problems import error_responses
from modelserve.ops.metrics import Metrics
from modelserve.protocol.native import (
    Engine,
    FailedVersion,
    Liveness,
    ModelDetail,
    ModelList,
    ModelSummary,
    PredictResponse,
    Readiness,
    ReportLinks,
    VersionSummary,
)

ModelName = Annotated[str, Path(description="Model name, as in the store.")]


def _ascii_digits(value: object) -> object:
    if isinstance(value, str) and parse_version(value) is None:
        raise PydanticCustomError(
            "int_parsing", "Input should be a valid integer, written in ASCII digits"
        )
    return value


Version = Annotated[
    int,
    Path(ge=1, description="Model version, as assigned by the store."),
    BeforeValidator(_ascii_digits),  # after Path: the OpenAPI schema keeps its minimum
]

JSON = "application/json"

_PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
    }
}
_PREDICT_ERRORS = error_responses(401, 403, 404, 413, 422, 503, 504)

router = APIRouter()
metrics_router = APIRouter()
"""Included by the app factory unless MODELSERVE_METRICS=false."""


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type=JSON,
    )


async def _predict(predictor: Predictor, request: Request, settings: Settings) -> Response:
    encoded = await predict_request(
        request,
        settings,
        predictor,
        partial(answer_native, predictor),
        partial(prepare_native, predictor),
        "native",
    )
    return Response(encoded.body, media_type=JSON)


@router.post(
    paths.PREDICT,
    response_model=PredictResponse,
    responses=_PREDICT_ERRORS,
    dependencies=[InferenceAccess],
    openapi_extra=_PREDICT_BODY,
    summary="Predict with the newest loaded version of a model",
    tags=["predict"],
)
async def predict(
    name: ModelName, request: Request, registry: RegistryDep, settings: SettingsDep
) -> Response:
    return await _predict(registry.get(name), request, settings)


@router.post(
    paths.PREDICT_VERSION,
    response_model=PredictResponse,
    responses=_PREDICT_ERRORS,
    dependencies=[InferenceAccess],
    openapi_extra=_PREDICT_BODY,
    summary="Predict with one version of a model",
    tags=["predict"],
)
async def predict_version(
    name: ModelName,
    version: Version,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
) -> Response:
    return await _predict(registry.get(name, version), request, settings)


@router.post(
    paths.DEFAULT_PREDICT,
    response_model=PredictResponse,
    responses=_PREDICT_ERRORS,
    dependencies=[InferenceAccess],
    openapi_extra=_PREDICT_BODY,
    summary="Predict with the default model",
    tags=["predict"],
)
async def predict_default(
    request: Request, registry: RegistryDep, settings: SettingsDep
) -> Response:
    return await _predict(registry.get(settings.default_model), request, settings)


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=error_responses(401, 403),
    dependencies=[InferenceAccess],
    tags=["models"],
    summary="List models",
)
async def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(
        models=[
            ModelSummary(
                name=name,
                default_version=state.default_version,
                versions=sorted(state.loaded),
                failed=[
                    FailedVersion(version=v, error=f.reason)
                    for v, f in sorted(state.failed.items())
                ],
                unconfirmed=[
                    FailedVersion(version=v, error=p.confirm_error)
                    for v, p in sorted(state.loaded.items())
                    if p.confirm_error is not None
                ],
            )
            for name, state in sorted(registry.models.items())
            if not state.unloaded
        ]
    )


def _detail(registry: ModelRegistry, name: str, version: int | None) -> ModelDetail:
    predictor = registry.get(name, version)
    state = registry.state(name)
    default = state.default_version
    if default is None:  # pragma: no cover - get() raised already
        raise ModelUnavailableError(f"model {name!r} has no loaded version")
    return ModelDetail(
        name=name,
        default_version=default,
        versions=[
            VersionSummary(
                version=v,
                created_at=p.manifest.created_at,
                estimator=p.manifest.estimator.class_name,
                task=p.manifest.task,
                metrics=p.manifest.metrics,
                report=_report_links(name, v, p.manifest.attachments),
                engine=Engine(
                    name=p.engine,
                    compiled_up_to_rows=p.compiled_up_to if p.engine == "compiled" else None,
                    not_compiled=p.compiled_reason if p.engine == "scikit-learn" else None,
                ),
            )
            for v, p in sorted(state.loaded.items())
        ],
        manifest=predictor.manifest,
    )


@router.get(
    "/v1/models/{name}",
    response_model=ModelDetail,
    responses=error_responses(401, 403, 404, 503),
    dependencies=[InferenceAccess],
    tags=["models"],
    summary="A model's versions and the manifest of its newest loaded version",
)
async def model_detail(name: ModelName, registry: RegistryDep) -> ModelDetail:
    return _detail(registry, name, None)


@router.get(
    "/v1/models/{name}/versions/{version}",
    response_model=ModelDetail,
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[InferenceAccess],
    tags=["models"],
    summary="A model's versions and the manifest of one version",
)
async def model_version_detail(
    name: ModelName, version: Version, registry: RegistryDep
) -> ModelDetail:
    return _detail(registry, name, version)


@metrics_router.get(
    paths.METRICS,
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    tags=["health"],
    summary="Prometheus metrics (all workers' totals with --workers)",
)
async def metrics(request: Request) -> Response:
    collected: Metrics = request.app.state.metrics
    body, content_type = collected.exposition()
    return Response(body, media_type=content_type)


def _report_links(name: str, version: int, attachments: dict[str, str]) -> ReportLinks | None:
    if not all(file in attachments for file in REPORT_FILES):
        return None
    base = f"/v1/models/{name}/versions/{version}"
    return ReportLinks(plot=f"{base}/{PLOT_FILE}", summary=f"{base}/{SUMMARY_FILE}")


async def _attachment(
    registry: ModelRegistry, name: str, version: int, file_name: str, media_type: str
) -> Response:
    predictor = registry.get(name, version)
    content = await anyio.to_thread.run_sync(
        registry.store.read_attachment, predictor.manifest, file_name
    )
    return Response(content, media_type=media_type)


@router.get(
    f"/v1/models/{{name}}/versions/{{version}}/{PLOT_FILE}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The training report's plot"},
        **error_responses(401, 403, 404, 422, 503),
    },
    dependencies=[InferenceAccess],
    tags=["models"],
    summary="Training report plot: predicted vs actual, or the confusion matrix",
)
async def report_plot(name: ModelName, version: Version, registry: RegistryDep) -> Response:
    return await _attachment(registry, name, version, PLOT_FILE, "image/png")


@router.get(
    f"/v1/models/{{name}}/versions/{{version}}/{SUMMARY_FILE}",
    response_class=Response,
    responses={
        200: {"content": {JSON: {}}, "description": "The training report's metrics"},
        **error_responses(401, 403, 404, 422, 503),
    },
    dependencies=[InferenceAccess],
    tags=["models"],
    summary="Training report summary: held-out metrics (and confusion matrix)",
)
async def report_summary(name: ModelName, version: Version, registry: RegistryDep) -> Response:
    return await _attachment(registry, name, version, SUMMARY_FILE, JSON)


@router.get(paths.LIVE, response_model=Liveness, tags=["health"], summary="Liveness")
async def live() -> Liveness:
    return Liveness()


@router.get(
    paths.READY,
    response_model=Readiness,
    responses=error_responses(503),
    tags=["health"],
    summary="Ready while a model can be served (every model, with MODELSERVE_STRICT_READINESS)",
)
async def ready(registry: RegistryDep) -> Readiness:
    registry.check_ready()
    return Readiness(models=registry.loaded_versions())


__all__ = ["metrics_router", "router"]
