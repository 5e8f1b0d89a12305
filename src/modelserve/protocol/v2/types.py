"""Open Inference Protocol (KServe V2) types: the documented wire schemas of /v2 and the
constants and plain records its decoder and encoder share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, StrictBool

from modelserve.protocol.wire import WireModel

INPUT_DATATYPES: dict[str, np.dtype[Any]] = {
    "FP64": np.dtype("<f8"),
    "FP32": np.dtype("<f4"),
    "FP16": np.dtype("<f2"),
    "INT64": np.dtype("<i8"),
    "INT32": np.dtype("<i4"),
    "INT16": np.dtype("<i2"),
    "INT8": np.dtype("<i1"),
    "UINT64": np.dtype("<u8"),
    "UINT32": np.dtype("<u4"),
    "UINT16": np.dtype("<u2"),
    "UINT8": np.dtype("<u1"),
    "BOOL": np.dtype("?"),
    "BYTES": np.dtype(object),
}
"""Every input datatype of the protocol, as the array a decoder makes of it (BYTES: ``str``)."""
FEATURE_DATATYPES = {"float64": "FP64", "int64": "INT64", "bool": "BOOL", "string": "BYTES"}
"""The datatype model metadata gives an input of each feature type."""
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
BATCH_INPUT = "input"
HEADER_LENGTH = "Inference-Header-Content-Length"
"""The HTTP header giving the JSON header's length when binary tensors follow it."""
PLATFORM = "sklearn"
MAX_RANK = 8
"""Most dimensions an input tensor may have (a batch is 1-D or 2-D; more is refused anyway)."""
MAX_ELEMENTS = 2**31 - 1
"""Largest product of a shape's non-zero dimensions: no dimension, even beside a zero, may be
larger, so no shape can overflow NumPy's sizes, whatever the data."""


# -- wire schemas (the documented contract of /v2) ----------------------------------------------


class RequestInput(WireModel):
    """One input tensor. ``data`` is flat or nested, row-major; absent when sent as binary."""

    name: str
    shape: list[Annotated[int, Field(ge=0, le=MAX_ELEMENTS)]] = Field(max_length=MAX_RANK)
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class RequestOutput(WireModel):
    """An output the client wants; ``parameters.binary_data`` asks for it in binary."""

    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferenceRequest(WireModel):
    """A V2 inference request."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, 10],
                            "datatype": "FP64",
                            "data": [0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 0.25, 3.0, -2.0, 1.0],
                        }
                    ],
                }
            ]
        }
    )

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(WireModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(WireModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(WireModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(WireModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadata(WireModel):
    name: str
    version: str
    extensions: list[str]


class RepositoryIndexRequest(WireModel):
    ready: StrictBool = False


class RepositoryModel(WireModel):
    name: str
    version: str | None = None
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


class ErrorBody(WireModel):
    """Every /v2 failure: a non-200 status and this body, as the protocol requires."""

    error: str


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output to answer with, in JSON or in binary."""

    name: str
    binary: bool


PREDICT_JSON = RequestedOutput(PREDICT, binary=False)
PREDICT_BINARY = RequestedOutput(PREDICT, binary=True)
