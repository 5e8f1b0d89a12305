"""The Open Inference Protocol encoder: a prediction out as V2 output tensors (JSON or binary),
and a model's metadata."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from modelserve.core.batch import Prediction
from modelserve.core.manifest import Manifest
from modelserve.protocol.v2.types import (
    BATCH_INPUT,
    FEATURE_DATATYPES,
    PLATFORM,
    PREDICT,
    PREDICT_PROBA,
    MetadataTensor,
    ModelMetadata,
    RequestedOutput,
)
from modelserve.protocol.wire import Encoded


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype for a NumPy dtype of predictions."""
    if dtype.kind == "f":
        return "FP64"
    if dtype.kind in "iu":
        return "INT64"
    if dtype.kind == "b":
        return "BOOL"
    return "BYTES"


def binary_tensor(values: np.ndarray, datatype: str) -> bytes:
    if datatype == "FP64":
        return values.astype("<f8").tobytes()
    if datatype == "INT64":
        return values.astype("<i8").tobytes()
    if datatype == "BOOL":
        return values.astype(np.bool_).tobytes()
    encoded = [str(value).encode() for value in values.reshape(-1).tolist()]
    return b"".join(struct.pack("<I", len(item)) + item for item in encoded)


def encode(
    name: str,
    version: int,
    prediction: Prediction,
    request_id: str | None,
    outputs: list[RequestedOutput],
) -> Encoded:
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in outputs:
        values = prediction.predictions if output.name == PREDICT else prediction.probabilities
        if values is None:  # pragma: no cover - requested_outputs() only offers what exists
            raise ValueError(f"output {output.name!r} was not computed")
        datatype = datatype_of(values.dtype)
        tensor: dict[str, Any] = {
            "name": output.name,
            "shape": list(values.shape),
            "datatype": datatype,
        }
        if output.binary:
            blob = binary_tensor(values, datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = values if values.ndim == 1 else values.reshape(-1)
            tensor["data"] = flat if values.dtype.kind in "fiub" else flat.tolist()
        tensors.append(tensor)
    document: dict[str, Any] = {
        "model_name": name,
        "model_version": str(version),
    }
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = tensors
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return Encoded(header, None, len(prediction.predictions))
    return Encoded(header + b"".join(blobs), len(header), len(prediction.predictions))


def model_metadata(name: str, versions: list[int], manifest: Manifest) -> ModelMetadata:
    """V2 metadata from the manifest: the batch dimension is -1.

    A model of plain float features lists its one batch tensor ``[-1, features]``; any other
    model one input per feature, of the feature's datatype (BYTES for text), shape ``[-1]``.
    """
    schema = manifest.input_schema
    inputs = (
        [MetadataTensor(name=BATCH_INPUT, datatype="FP64", shape=[-1, schema.count])]
        if schema.plain
        else [
            MetadataTensor(name=f.name, datatype=FEATURE_DATATYPES[f.dtype], shape=[-1])
            for f in schema.features
        ]
    )
    outputs = [MetadataTensor(name=PREDICT, datatype=_output_datatype(manifest), shape=[-1])]
    if manifest.task == "classification":
        classes = len(manifest.output.classes or [])
        outputs.append(MetadataTensor(name=PREDICT_PROBA, datatype="FP64", shape=[-1, classes]))
    return ModelMetadata(
        name=name,
        versions=[str(version) for version in versions],
        platform=PLATFORM,
        inputs=inputs,
        outputs=outputs,
    )


def _output_datatype(manifest: Manifest) -> str:
    try:
        return datatype_of(np.dtype(manifest.output.dtype))
    except TypeError:
        return "BYTES"
