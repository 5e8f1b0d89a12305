"""Open Inference Protocol (KServe V2) routes under /v2: thin, over the same data plane as /v1.

Errors under /v2 answer ``{"error": "..."}`` (see :mod:`modelserve.http.problems`).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Path, Request
from starlette.responses import Response

from modelserve import __version__
from modelserve.core.errors import VersionNotFoundError
from modelserve.core.predictor import Predictor
from modelserve.core.registry import ModelRegistry
from modelserve.core.store import parse_version
from modelserve.dataplane.plane import Prepared, answer_v2, prepare_v2
from modelserve.http import paths
from modelserve.http.deps import (
    AdminAccess,
    InferenceAccess,
    RegistryDep,
    SettingsDep,
    predict_request,
)
from modelserve.protocol.v2 import encode as v2_encode
from modelserve.protocol.v2 import types as oip
from modelserve.protocol.v2.decode import parse_header_length
from modelserve.protocol.v2.types import HEADER_LENGTH
from modelserve.protocol.wire import Encoded

EXTENSIONS = ["binary_tensor_data", "model_repository"]
# A reference, not {"model": ErrorBody}: FastAPI would build a validator for every status of
# every route (~100) only to document them; main._complete_openapi adds the schema once.
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _ERROR | {"description": "Body is not JSON"},
    401: _ERROR | {"description": "API key missing"},
    403: _ERROR | {"description": "API key wrong or without the privilege"},
    404: _ERROR | {"description": "Unknown model or version"},
    413: _ERROR | {"description": "Body over the byte limit"},
    422: _ERROR | {"description": "Invalid inference request"},
    503: _ERROR | {"description": "Model or server not ready, or the server is busy"},
    504: _ERROR | {"description": "Request deadline exceeded"},
}
_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": (
                        "Binary tensor data extension: the JSON InferenceRequest (its length in "
                        "the Inference-Header-Content-Length header) followed by the tensors."
                    ),
                }
            },
        },
    }
}

ModelName = Annotated[str, Path(description="Model name, as in the store.")]
VersionText = Annotated[str, Path(description="Model version, as assigned by the store.")]


def _inside(path: str) -> str:
    """``path`` under the /v2 router's prefix (the lane matches the whole path)."""
    return path.removeprefix(paths.V2_PREFIX)


router = APIRouter(prefix=paths.V2_PREFIX, tags=["v2 (Open Inference Protocol)"], responses=_ERRORS)
models = APIRouter(dependencies=[InferenceAccess])
repository = APIRouter(prefix="/repository", dependencies=[AdminAccess])


def _version(name: str, text: str) -> int:
    version = parse_version(text)
    if version is None:
        raise VersionNotFoundError(f"model {name!r} has no version {text!r}")
    return version


@router.get("", response_model=oip.ServerMetadata, summary="Server metadata")
async def server_metadata() -> oip.ServerMetadata:
    return oip.ServerMetadata(name="modelserve", version=__version__, extensions=EXTENSIONS)


@router.get(_inside(paths.V2_LIVE), summary="Server liveness")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    _inside(paths.V2_READY),
    summary="Ready while a model can be served (every model, with MODELSERVE_STRICT_READINESS)",
)
async def server_ready(registry: RegistryDep) -> dict[str, bool]:
    registry.check_ready()
    return {"ready": True}


def _metadata(registry: ModelRegistry, name: str, version: int | None) -> oip.ModelMetadata:
    predictor = registry.get(name, version)
    versions = sorted(registry.state(name).loaded)
    return v2_encode.model_metadata(name, versions, predictor.manifest)


@models.get("/models/{name}", response_model=oip.ModelMetadata, summary="Model metadata")
async def model_metadata(name: ModelName, registry: RegistryDep) -> oip.ModelMetadata:
    return _metadata(registry, name, None)


@models.get(
    "/models/{name}/versions/{version}",
    response_model=oip.ModelMetadata,
    summary="Model version metadata",
)
async def model_version_metadata(
    name: ModelName, version: VersionText, registry: RegistryDep
) -> oip.ModelMetadata:
    return _metadata(registry, name, _version(name, version))


@models.get("/models/{name}/ready", summary="Model readiness: 200 when ready")
async def model_ready(name: ModelName, registry: RegistryDep) -> dict[str, Any]:
    registry.get(name)
    return {"name": name, "ready": True}


@models.get("/models/{name}/versions/{version}/ready", summary="Model version readiness")
async def model_version_ready(
    name: ModelName, version: VersionText, registry: RegistryDep
) -> dict[str, Any]:
    registry.get(name, _version(name, version))
    return {"name": name, "version": version, "ready": True}


async def _infer(predictor: Predictor, request: Request, settings: SettingsDep) -> Response:
    header = request.headers.get(HEADER_LENGTH)

    def answer(body: bytes) -> Encoded:
        return answer_v2(predictor, body, parse_header_length(header, len(body)))

    def prepare(body: bytes) -> Prepared:
        return prepare_v2(predictor, body, parse_header_length(header, len(body)))

    encoded = await predict_request(request, settings, predictor, answer, prepare, "v2")
    if encoded.header_length is None:
        return Response(encoded.body, media_type="application/json")
    return Response(
        encoded.body,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(encoded.header_length)},
    )


@models.post(
    _inside(paths.INFER),
    response_model=oip.InferenceResponse,
    openapi_extra=_INFER_BODY,
    summary="Inference with the newest loaded version",
)
async def infer(
    name: ModelName, request: Request, registry: RegistryDep, settings: SettingsDep
) -> Response:
    return await _infer(registry.get(name), request, settings)


@models.post(
    _inside(paths.INFER_VERSION),
    response_model=oip.InferenceResponse,
    openapi_extra=_INFER_BODY,
    summary="Inference with one version",
)
async def infer_version(
    name: ModelName,
    version: VersionText,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
) -> Response:
    return await _infer(registry.get(name, _version(name, version)), request, settings)


@repository.post(
    "/index",
    response_model=list[oip.RepositoryModel],
    summary="Every model and version, with its state and any refusal reason",
)
async def repository_index(
    registry: RegistryDep,
    query: Annotated[oip.RepositoryIndexRequest | None, Body()] = None,
) -> list[oip.RepositoryModel]:
    entries = [
        oip.RepositoryModel(
            name=entry.name,
            version=None if entry.version is None else str(entry.version),
            state=entry.state,
            reason=entry.reason,
        )
        for entry in registry.index()
    ]
    if query is not None and query.ready:
        entries = [entry for entry in entries if entry.state == "READY"]
    return entries


@repository.post("/models/{name}/load", summary="Load (or reload) a model from the store")
async def repository_load(name: ModelName, registry: RegistryDep) -> dict[str, Any]:
    state = await anyio.to_thread.run_sync(registry.load_model, name)
    return {"name": name, "versions": [str(v) for v in sorted(state.loaded)]}


@repository.post("/models/{name}/unload", summary="Stop serving a model")
async def repository_unload(name: ModelName, registry: RegistryDep) -> dict[str, Any]:
    await anyio.to_thread.run_sync(registry.unload_model, name)
    return {"name": name}


router.include_router(models)
router.include_router(repository)
