"""The native JSON API's wire format: its documented schemas, its decoder and its encoder.

:func:`decode` turns a request body ``{"instances": [...], "return_probabilities": bool}`` into
a :class:`~modelserve.core.batch.Batch` (the model's schema check then validates it), and
:func:`encode` turns a prediction into the answer :class:`PredictResponse` documents. The
Pydantic models here are the contract shown in the OpenAPI document; requests are not parsed
through them (building a model per request costs more than predicting a row).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
import orjson
import pydantic_core
import simdjson
from pydantic import (
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StrictBool,
    StrictStr,
)

from modelserve.core.batch import Batch, Prediction
from modelserve.core.errors import InvalidInputError, Problem
from modelserve.core.manifest import Manifest
from modelserve.core.schema import summarize
from modelserve.protocol.parsers import simdjson_parser
from modelserve.protocol.wire import Encoded, WireModel

FiniteNumber = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A JSON number that is finite: no strings, booleans, NaN or Infinity."""
Value = FiniteNumber | StrictStr | StrictBool | None
"""One value of a row: a finite number, a string, a boolean, or null (missing). Each model
narrows it by its schema: a model of plain numbers takes finite numbers only."""


# One row for the default model's 10 features, as JSON for the OpenAPI examples.
_EXAMPLE_ROW: list[JsonValue] = [0.1, -1.2, 0.3, 0.0, 2.1, -0.5, 1.0, 0.7, -0.2, 0.4]


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

    instances: list[list[Value] | dict[str, Value]] = Field(
        min_length=1,
        description=(
            "Rows to predict: arrays of values in the model's feature order, or objects "
            "mapping every feature name to its value. Each value is checked against its "
            "feature's type in the model's manifest (a number, a whole number, a boolean, a "
            "string); null is a missing value, taken only where the feature is nullable."
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

    Numeric arrays stay NumPy (orjson writes them natively); labels of other dtypes are made
    lists.
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


class Engine(WireModel):
    """What answers a version's predictions, and why."""

    name: Literal["compiled", "linear", "scikit-learn"] = Field(
        description=(
            "`compiled`: its compiled form, verified against the estimator; `linear`: its "
            "coefficients (a linear model); `scikit-learn`: the estimator itself."
        )
    )
    compiled_up_to_rows: int | None = Field(
        default=None,
        description=(
            "`compiled`: the largest batch the compiled form answers, as measured at load "
            "against the estimator (larger ones go to scikit-learn); null for any size."
        ),
    )
    not_compiled: str | None = Field(
        default=None, description="Why the version is not served by a compiled form."
    )


class VersionSummary(WireModel):
    version: int
    created_at: datetime
    estimator: str
    task: str
    metrics: dict[str, float]
    report: ReportLinks | None = Field(
        default=None, description="The training report; null for versions published without one."
    )
    engine: Engine


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
            "Loaded versions served from their verified lean form whose estimator could not "
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


# -- the decoder --------------------------------------------------------------------------------

_REQUEST_KEYS = ("instances", "return_probabilities")
# What a number or a blank can be made of: deleted, a plain body leaves only its skeleton.
_NUMBER_CHARS = b"0123456789+-.eE \t\r\n"
_SKELETON_HEAD = b'{"instancs":['  # {"instances": [ less the 'e' (an exponent character)
_SKELETON_TAIL = b"]}"


def decode(body: bytes | str, features: int) -> Batch:
    """A native request body as a batch for a model of ``features`` features.

    Raises InvalidInputError for a body that is not this format's JSON: not JSON, not an
    object, no ``instances`` array, a ``return_probabilities`` that is not a boolean, another
    key. The rows themselves are the schema check's to validate; problems found after them
    travel with the batch (``trailing``) so that one answer lists them all.
    """
    if isinstance(body, bytes):
        matrix = plain_rows(body, features)
        if matrix is not None:
            return Batch(matrix, finite=True)
    return read_document(body)


def read_document(body: bytes | str) -> Batch:
    """:func:`decode`'s general road: any body, read in full (and every problem named)."""
    try:
        document = pydantic_core.from_json(body)
    except ValueError as exc:
        message = f"request body is not valid JSON: {exc}"
        raise InvalidInputError(message, problems=[Problem((), message, "invalid-json")]) from None
    if not isinstance(document, dict):
        raise _envelope([Problem((), "body: Input should be an object", "model-type")])
    instances = document.get("instances")
    first: Problem | None = None
    if "instances" not in document:
        first = Problem(("instances",), "instances: Field required", "missing")
    elif not isinstance(instances, list):
        first = Problem(("instances",), "instances: Input should be a valid array", "list-type")
    probabilities = document.get("return_probabilities", False)
    trailing: list[Problem] = []
    if type(probabilities) is not bool:
        trailing.append(
            Problem(
                ("return_probabilities",),
                "return_probabilities: Input should be a valid boolean",
                "bool-type",
            )
        )
    trailing.extend(
        Problem((key,), f"{key or 'body'}: Extra inputs are not permitted", "extra-forbidden")
        for key in document
        if key not in _REQUEST_KEYS
    )
    if first is not None or not isinstance(instances, list):
        raise _envelope([first, *trailing] if first is not None else trailing)
    return Batch.of_records(
        instances, return_probabilities=probabilities is True, trailing=tuple(trailing)
    )


def plain_rows(body: bytes, features: int) -> np.ndarray | None:
    """The common body, ``{"instances": [[numbers...], ...]}``, straight into a float64 matrix.

    None for any other body (which :func:`decode` then reads in full): a string, boolean or
    null in it, another key, ragged rows or rows of another width than ``features``, a number
    that is not strict JSON or does not fit a double (NaN, 1e999, +1, 01, .5).

    Two C-speed passes and no Python object per number: deleting every character a number or a
    blank can hold must leave exactly the skeleton of n rows of ``features`` values
    (``{"instancs":[[,,,],[,,,]]}``), and simdjson, a strict JSON parser, then writes the numbers
    straight into a float64 buffer.
    """
    rows = _skeleton_rows(body.translate(None, _NUMBER_CHARS), features)
    if rows is None:
        return None
    try:
        document = simdjson_parser().parse(body)
        instances = document["instances"] if isinstance(document, simdjson.Object) else None
        if not isinstance(instances, simdjson.Array):
            return None
        values = instances.as_buffer(of_type="d")
    except (ValueError, RuntimeError, KeyError, TypeError):
        return None  # not strict JSON, or a number a double cannot hold (BIGINT, 1e999)
    matrix = np.frombuffer(values, dtype=np.float64)
    if matrix.size != rows * features:
        return None
    return matrix.reshape(rows, features)


def _skeleton_rows(skeleton: bytes, count: int) -> int | None:
    """n when ``skeleton`` is exactly that of n >= 1 rows of ``count`` values."""
    row = b"[" + b"," * (count - 1) + b"]"
    inner = len(skeleton) - len(_SKELETON_HEAD) - len(_SKELETON_TAIL) + 1  # n rows and n commas
    rows, extra = divmod(inner, len(row) + 1)
    if extra or rows < 1:
        return None
    expected = b"".join((_SKELETON_HEAD, (row + b",") * (rows - 1), row, _SKELETON_TAIL))
    return rows if skeleton == expected else None


def _envelope(problems: list[Problem]) -> InvalidInputError:
    return summarize(problems, len(problems))


# -- the encoder --------------------------------------------------------------------------------


def encode(name: str, version: int, prediction: Prediction, *, indent: bool = False) -> Encoded:
    """The native answer to a request (``indent``: for people to read, as the CLI prints it).

    The one place the native answer is written: the routes, the fast lane and the CLI call it.
    """
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    body = orjson.dumps(prediction_body(name, version, prediction), option=option)
    return Encoded(body, None, len(prediction.predictions))
