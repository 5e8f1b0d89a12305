"""Pydantic schemas: the documented contract of the native JSON API.

:class:`PredictRequest` is the generic request shown in the OpenAPI document. Each loaded model
validates its requests with a stricter model built from its own manifest by
:func:`request_model_for`: the exact feature count and names, finite numbers only, and the row
limit of the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Strict,
    StrictBool,
    Tag,
    create_model,
)
from typing_extensions import TypedDict

from modelserve.core.manifest import FeatureSchema, Manifest

if TYPE_CHECKING:
    from modelserve.core.predictor import Prediction

FiniteNumber = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A JSON number that is finite: no strings, booleans, NaN or Infinity."""

ROW_ERROR = "row_type"
ROW_MESSAGE = "each row must be an array of numbers or an object of feature: number"


# One row for the default model's 10 features, as JSON for the OpenAPI examples.
_EXAMPLE_ROW: list[JsonValue] = [0.1, -1.2, 0.3, 0.0, 2.1, -0.5, 1.0, 0.7, -0.2, 0.4]


class WireModel(BaseModel):
    """Base of the bodies the HTTP API documents: each is built when first used, not at import.

    Start-up then pays only for what it uses (FastAPI builds the models its routes declare); the
    request bodies the fast lane reads without Pydantic and the error bodies are built when a
    request first needs them (a few milliseconds, once).
    """

    model_config = ConfigDict(defer_build=True)


class PredictRequest(WireModel):
    """A batch of rows to predict (the generic shape; each model narrows it to its schema)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"instances": [_EXAMPLE_ROW]},
                {
                    "instances": [{f"x{i}": value for i, value in enumerate(_EXAMPLE_ROW)}],
                    "return_probabilities": False,
                },
            ]
        },
    )

    instances: list[list[FiniteNumber] | dict[str, FiniteNumber]] = Field(
        min_length=1,
        description=(
            "Rows to predict: arrays of numbers in the model's feature order, or objects "
            "mapping every feature name to a number."
        ),
    )
    return_probabilities: StrictBool = Field(
        default=False, description="Also return class probabilities (classifiers only)."
    )


class PredictResponse(WireModel):
    """Predictions for every row, in request order, and which model version made them."""

    model_name: str
    model_version: int
    predictions: list[float | int | str]
    classes: list[float | int | str] | None = Field(
        default=None, description="Class labels, in the column order of `probabilities`."
    )
    probabilities: list[list[float]] | None = None


def prediction_body(name: str, version: int, prediction: Prediction) -> dict[str, Any]:
    """The native answer (:class:`PredictResponse`'s fields) for ``prediction``, for orjson.

    The one place the native answer is built: the routes, the fast lane and the CLI serialize
    this. Numeric arrays stay NumPy (orjson writes them natively); labels of other dtypes are
    made lists.
    """
    body: dict[str, Any] = {
        "model_name": name,
        "model_version": version,
        "predictions": _plain(prediction.predictions),
    }
    if prediction.probabilities is not None:
        body["classes"] = prediction.classes
        body["probabilities"] = prediction.probabilities
    return body


def _plain(values: np.ndarray) -> Any:
    return values if values.dtype.kind in "fiub" else values.tolist()


class ReportLinks(WireModel):
    """Where a version's training report is served."""

    plot: str = Field(description="PNG: predicted vs actual, or the confusion matrix.")
    summary: str = Field(description="JSON: the held-out metrics (and confusion matrix).")


class VersionSummary(WireModel):
    version: int
    created_at: datetime
    estimator: str
    task: str
    metrics: dict[str, float]
    report: ReportLinks | None = Field(
        default=None, description="The training report; null for versions published without one."
    )


class FailedVersion(WireModel):
    """A version in the store that the server refused to serve, and why."""

    version: int
    error: str


class ModelSummary(WireModel):
    name: str
    default_version: int | None = Field(description="Newest loaded version; null if none loaded.")
    versions: list[int] = Field(description="Loaded (verified) versions.")
    failed: list[FailedVersion] = Field(description="Versions refused at load, with the reason.")
    unconfirmed: list[FailedVersion] = Field(
        default_factory=list,
        description=(
            "Loaded versions served from their verified linear form whose estimator could not "
            "be loaded to confirm it (its files changed or left the store since), with why."
        ),
    )


class ModelList(WireModel):
    models: list[ModelSummary]


class ModelDetail(WireModel):
    """A model, its loaded versions, and the full manifest of the requested (or newest) one."""

    name: str
    default_version: int
    versions: list[VersionSummary]
    manifest: Manifest


class Liveness(WireModel):
    status: Literal["alive"] = "alive"


class Readiness(WireModel):
    status: Literal["ready"] = "ready"
    models: dict[str, list[int]]


class ProblemItem(WireModel):
    """One field-level problem."""

    loc: list[str | int] = Field(description="Path to the offending value in the request.")
    msg: str
    type: str


class ProblemDetails(WireModel):
    """An RFC 9457 problem document (media type ``application/problem+json``)."""

    type: str = Field(examples=["urn:modelserve:problem:feature-count"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemItem] = Field(default_factory=list)


def _row_kind(value: Any) -> str | None:
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def request_model_for(manifest: Manifest, max_rows: int) -> type[BaseModel]:
    """Build the request model that validates a batch against ``manifest``'s feature schema."""
    schema: FeatureSchema = manifest.input_schema
    count = schema.count
    array_row = Annotated[list[FiniteNumber], Field(min_length=count, max_length=count)]
    # Functional TypedDict: feature names may be any string, keywords included (runtime keys).
    object_row: Any = TypedDict(  # type: ignore[misc]
        f"Row_{manifest.name}_v{manifest.version}",
        dict.fromkeys(schema.names, FiniteNumber),
    )
    object_row.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    row = Annotated[
        Annotated[array_row, Tag("array")] | Annotated[object_row, Tag("object")],
        Discriminator(
            _row_kind,
            custom_error_type=ROW_ERROR,
            custom_error_message=ROW_MESSAGE,
        ),
    ]
    model: type[BaseModel] = create_model(
        f"PredictRequest_{manifest.name}_v{manifest.version}",
        # Built on the first request the fast parse hands over, not when the model is loaded.
        __config__=ConfigDict(extra="forbid", defer_build=True),
        instances=(list[row], Field(min_length=1, max_length=max_rows)),
        return_probabilities=(StrictBool, False),
    )
    return model
