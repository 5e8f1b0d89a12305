"""The scoring contracts users already have: MLflow's ``/invocations`` and ``/ping`` (also the
SageMaker container's) and KServe's V1 ``:predict``. Thin routes over the data plane; errors
are problem+json like every native route's."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelserve.core.predictor import Predictor
from modelserve.core.settings import Settings
from modelserve.dataplane.plane import answer_scoring, prepare_scoring
from modelserve.http import paths
from modelserve.http.deps import (
    InferenceAccess,
    RegistryDep,
    SettingsDep,
    predict_request,
)
from modelserve.http.problems import error_responses
from modelserve.http.routes import JSON, ModelName
from modelserve.protocol.scoring import ScoringResponse


def _form(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "additionalProperties": False,
        "properties": {key: value},
    }


_ROWS = {"type": "array", "items": {"type": ["array", "object"]}}
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "oneOf": [
                        _form(
                            "dataframe_split",
                            {
                                "type": "object",
                                "required": ["columns", "data"],
                                "additionalProperties": False,
                                "properties": {
                                    "columns": {"type": "array", "items": {"type": "string"}},
                                    "data": {"type": "array", "items": {"type": "array"}},
                                    "index": {"type": "array"},
                                },
                            },
                        ),
                        _form("dataframe_records", {"type": "array", "items": {"type": "object"}}),
                        _form("instances", _ROWS),
                        _form(
                            "inputs",
                            {
                                "oneOf": [
                                    {"type": "object", "additionalProperties": {"type": "array"}},
                                    _ROWS,
                                ]
                            },
                        ),
                    ]
                },
                "examples": {
                    "dataframe_split": {
                        "value": {"dataframe_split": {"columns": ["x0", "x1"], "data": [[1, 2]]}}
                    },
                    "dataframe_records": {"value": {"dataframe_records": [{"x0": 1, "x1": 2}]}},
                    "instances": {"value": {"instances": [[1, 2]]}},
                    "inputs": {"value": {"inputs": {"x0": [1], "x1": [2]}}},
                },
            },
            "text/csv": {"schema": {"type": "string"}, "example": "x0,x1\n1,2\n"},
        },
    }
}
_ERRORS = error_responses(401, 403, 404, 413, 422, 503, 504)

router = APIRouter(tags=["scoring contracts"])


async def _score(predictor: Predictor, request: Request, settings: Settings) -> Response:
    content_type = request.headers.get("content-type")
    encoded = await predict_request(
        request,
        settings,
        predictor,
        partial(answer_scoring, predictor, content_type),
        partial(prepare_scoring, predictor, content_type),
        "scoring",
    )
    return Response(encoded.body, media_type=JSON)


@router.post(
    paths.INVOCATIONS,
    response_model=ScoringResponse,
    responses=_ERRORS,
    dependencies=[InferenceAccess],
    openapi_extra=_BODY,
    summary="Score with the default model, as `mlflow models serve` and SageMaker do",
)
async def invocations(request: Request, registry: RegistryDep, settings: SettingsDep) -> Response:
    return await _score(registry.get(settings.default_model), request, settings)


@router.post(
    paths.MODEL_INVOCATIONS,
    response_model=ScoringResponse,
    responses=_ERRORS,
    dependencies=[InferenceAccess],
    openapi_extra=_BODY,
    summary="Score with a model, in MLflow's request and response format",
)
@router.post(
    paths.KSERVE_PREDICT,
    response_model=ScoringResponse,
    responses=_ERRORS,
    dependencies=[InferenceAccess],
    openapi_extra=_BODY,
    summary="Predict with a model, in KServe's V1 protocol",
)
async def model_invocations(
    name: ModelName, request: Request, registry: RegistryDep, settings: SettingsDep
) -> Response:
    return await _score(registry.get(name), request, settings)


@router.get(
    paths.PING,
    responses=error_responses(503),
    summary="Health check of MLflow and SageMaker: 200 while ready",
    tags=["health"],
)
async def ping(registry: RegistryDep) -> dict[str, bool]:
    registry.check_ready()
    return {"ready": True}
