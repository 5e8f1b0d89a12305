"""Open Inference Protocol (KServe V2) codec: request tensors in, response tensors out.

Transport-level but framework-free: it turns an inference request (JSON, or JSON followed by
binary tensor data) into the 2-D float64 batch a :class:`~modelserve.core.predictor.Predictor`
validates and predicts, and the prediction back into V2 output tensors. Validation of the batch
itself (feature count, finite numbers, row limit) stays in the predictor, shared with the native
API.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import orjson
import simdjson
from pydantic import ConfigDict, Field, StrictBool, ValidationError

from modelserve.core.errors import InvalidInputError, Loc, Problem
from modelserve.core.manifest import Manifest
from modelserve.core.predictor import Batch, Prediction, Predictor, json_parser
from modelserve.protocol.native import WireModel

INPUT_DATATYPES: dict[str, np.dtype[Any]] = {
    "FP64": np.dtype("<f8"),
    "FP32": np.dtype("<f4"),
    "INT64": np.dtype("<i8"),
    "INT32": np.dtype("<i4"),
}
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


# -- decoding ---------------------------------------------------------------------------------


class InputSpec(NamedTuple):
    """One input tensor's header: what :class:`RequestInput` says besides its data."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any]


class OutputSpec(NamedTuple):
    name: str
    parameters: dict[str, Any]


class Header(NamedTuple):
    """A decoded request's JSON header, holding only what :class:`InferenceRequest` allows.

    The codec's own plain form of the request, so the lean decoders need not build Pydantic
    models (building them costs more than predicting one row); tuples, the cheapest to build.
    """

    id: str | None
    parameters: dict[str, Any]
    inputs: list[InputSpec]
    outputs: list[OutputSpec] | None


def _header(request: InferenceRequest) -> Header:
    return Header(
        request.id,
        request.parameters,
        [InputSpec(i.name, i.shape, i.datatype, i.parameters) for i in request.inputs],
        None
        if request.outputs is None
        else [OutputSpec(o.name, o.parameters) for o in request.outputs],
    )


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool


_PREDICT_JSON = RequestedOutput(PREDICT, binary=False)
_PREDICT_BINARY = RequestedOutput(PREDICT, binary=True)


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """The response body, and the JSON header's length when binary tensors follow it."""

    body: bytes
    header_length: int | None
    rows: int = 0


def _bad(message: str, code: str = "invalid-tensor", loc: Loc = ()) -> InvalidInputError:
    return InvalidInputError(message, problems=[Problem(loc, message, code)])


def parse_header_length(value: str | None, body_size: int) -> int | None:
    """Validate the ``Inference-Header-Content-Length`` header against the body."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise _bad(
            f"Inference-Header-Content-Length must be an integer, got {value!r}", "invalid-header"
        ) from None
    if not 0 < length <= body_size:
        raise _bad(
            f"Inference-Header-Content-Length is {length} but the body has {body_size} bytes",
            "invalid-header",
        )
    return length


def decode(body: bytes, header_length: int | None) -> tuple[Header, list[np.ndarray]]:
    """Parse a request body into its JSON header and one array per input, shaped as declared."""
    header, tensors, _ = _decode(body, header_length)
    return header, tensors


def _decode(body: bytes, header_length: int | None) -> tuple[Header, list[np.ndarray], bool]:
    """:func:`decode`, and whether every number is known to be finite.

    The lean decoders' parsers refuse NaN, Infinity and numbers no double holds, and their
    values stay within 2**53 (so within float32 too): there is nothing left to check.
    """
    if header_length is None:
        lean = _decode_plain(body) if len(body) >= _PLAIN_MIN_BYTES else _decode_small(body)
        if lean is not None:
            return lean[0], lean[1], True
    header, tensors = _decode_full(body, header_length)
    return header, tensors, False


def _decode_full(body: bytes, header_length: int | None) -> tuple[Header, list[np.ndarray]]:
    header = body if header_length is None else body[:header_length]
    try:
        request = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        message = (
            f"request body is not valid JSON: {first['msg']}"
            if first["type"] == "json_invalid"
            else f"invalid inference request: {where}: {first['msg']}"
        )
        raise _bad(message, "invalid-request", tuple(first["loc"])) from exc
    binary = memoryview(body)[len(header) :]
    offset = 0
    tensors = []
    for index, tensor_input in enumerate(request.inputs):
        size = tensor_input.parameters.get("binary_data_size")
        raw: bytes | None = None
        if size is not None:
            if header_length is None:
                raise _bad(
                    f"input {tensor_input.name!r} has binary_data_size but the request has no "
                    "Inference-Header-Content-Length header",
                    "invalid-header",
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _bad(f"input {tensor_input.name!r}: binary_data_size must be an integer")
            if offset + size > len(binary):
                raise _bad(
                    f"input {tensor_input.name!r}: binary_data_size {size} runs past the end "
                    f"of the body ({len(binary) - offset} bytes left)"
                )
            raw = bytes(binary[offset : offset + size])
            offset += size
        tensors.append(_tensor(tensor_input, raw, ("inputs", index)))
    if offset != len(binary):
        raise _bad(
            f"the body has {len(binary) - offset} bytes of binary data that no input claims",
            "invalid-header",
        )
    return _header(request), tensors


_FLOAT_DATATYPES = ("FP64", "FP32")  # a tuple: `in` must not hash a JSON object
# From here simdjson into a buffer pays off; below it orjson and a check by hand (_decode_small).
_PLAIN_MIN_BYTES = 2048


def _decode_plain(body: bytes) -> tuple[Header, list[np.ndarray]] | None:  # noqa: PLR0911
    """The common all-JSON request with flat float tensors, with no Python object per number.

    simdjson (strict JSON) parses the body; each input's flat ``data`` goes straight into a
    float64 buffer, everything else through the same Pydantic model as always. Anything this
    does not cover returns None and takes the full path, which also writes any error: nested
    or non-numeric data, integer datatypes, binary parameters, repeated keys, a size that does
    not match the shape, a '[' anywhere but the inputs, shapes and data (so no nesting can hide).
    """
    try:
        document = json_parser().parse(body)
    except (ValueError, RuntimeError):
        return None
    if not isinstance(document, simdjson.Object) or len(set(document.keys())) != len(document):
        return None
    inputs = document.get("inputs")
    if not isinstance(inputs, simdjson.Array) or body.count(b"[") != 1 + 2 * len(inputs):
        return None
    header: dict[str, Any] = {k: _python(document[k]) for k in document if k != "inputs"}
    header_inputs: list[dict[str, Any]] = []
    buffers: list[np.ndarray] = []
    for item in inputs:
        if not isinstance(item, simdjson.Object) or len(set(item.keys())) != len(item):
            return None
        data = item.get("data")
        if not isinstance(data, simdjson.Array) or item.get("datatype") not in _FLOAT_DATATYPES:
            return None
        try:
            buffers.append(np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64))
        except (TypeError, ValueError, RuntimeError):
            return None  # a string, boolean, null or a number no double can hold
        header_inputs.append({k: _python(item[k]) for k in item if k != "data"})
    header["inputs"] = header_inputs
    try:
        request = InferenceRequest.model_validate(header)
    except ValidationError:
        return None
    tensors = []
    for tensor_input, values in zip(request.inputs, buffers, strict=True):
        shape = tensor_input.shape
        if tensor_input.parameters or not fits(shape) or values.size != math.prod(shape):
            return None
        if tensor_input.datatype == "FP32":
            if values.size and np.abs(values).max() > _FP32_MAX:
                return None  # no float32 holds it: the full path says which input
            values = values.astype(np.float32)  # noqa: PLW2901 - the same values, narrowed
        tensors.append(values.reshape(shape))
    return _header(request), tensors


# The request most clients send for a batch of rows, in tritonclient's key order, written
# compactly (tritonclient, orjson) or with json.dumps's default separators: an optional id, one
# FP64 tensor [rows, features] with its flat data, optionally tritonclient's binary_data_output
# or one JSON/binary "predict" output. Strings hold no escape or control character.
_SEP = rb"(?:, ?)"
_KEY = rb'(?:" ?: ?)'
_PLAIN_STRING = rb'"([^"\\\x00-\x1f]*)"'
_COMMON = re.compile(
    rb'\{(?:"id' + _KEY + _PLAIN_STRING + _SEP + rb")?"
    + rb'"inputs' + _KEY + rb'\[\{"name' + _KEY + _PLAIN_STRING + _SEP
    + rb'"shape' + _KEY + rb"\[(0|[1-9][0-9]{0,8})" + _SEP + rb"(0|[1-9][0-9]{0,8})\]" + _SEP
    + rb'"datatype' + _KEY + rb'"FP64"' + _SEP + rb'"data' + _KEY + rb"(\[[^\]]*\])\}\]"
    + rb"(?:" + _SEP + rb'"outputs' + _KEY + rb'\[\{"name' + _KEY + rb'"(predict)"'
    + rb"(?:" + _SEP + rb'"parameters' + _KEY + rb'\{"binary_data' + _KEY + rb"(true|false)\})?"
    + rb"\}\])?"
    + rb"(?:" + _SEP + rb'"parameters' + _KEY + rb'\{"binary_data_output' + _KEY
    + rb"(true|false)\})?\}"
)  # fmt: skip


class _Form(NamedTuple):
    """What :data:`_COMMON` read from a request around its data: all but the numbers."""

    request_id: str | None
    rows: int
    columns: int
    output: bool  # an output is named ("predict")
    binary: bool  # that output, or all outputs, in binary
    binary_default: bool


def _common_form(body: bytes) -> tuple[_Form, bytes] | None:
    """The form of a :data:`_COMMON` request and its data (``[...]``); None: not one."""
    match = _COMMON.fullmatch(body)
    if match is None:
        return None
    request_id, name, rows, columns, data, output, binary, binary_output = match.groups()
    try:
        name.decode()  # the general path reads it, so it must be UTF-8
        text_id = None if request_id is None else request_id.decode()
    except UnicodeDecodeError:
        return None
    binary_default = binary_output == b"true"
    form = _Form(
        text_id,
        int(rows),
        int(columns),
        output is not None,
        binary_default if binary is None else binary == b"true",
        binary_default,
    )
    return form, data


_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
# Every integer up to 2**53 is exactly a double. Beyond it orjson may have turned an integer
# (which the full path refuses when no int64 holds it) into a float, so the full path decides.
_EXACT = float(2**53)
_NUMBER_TYPES = frozenset({float, int})  # exact types: bool, a subclass of int, is not one


def _decode_small(body: bytes) -> tuple[Header, list[np.ndarray]] | None:  # noqa: PLR0911
    """A small all-JSON request in its common form, without validating through Pydantic.

    Building the Pydantic models costs more than predicting one row. orjson parses the body
    (strict JSON; a repeated key keeps its last value, as Pydantic's parser does) and this
    checks the plain form by hand: known keys only, exact types, flat float or integer data of
    the declared size: values validation would accept unchanged. Anything else (nested or
    non-numeric data, integer datatypes, parameters on an input, extra keys, a magnitude beyond
    2**53) returns None and takes the full path, which also writes any error.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict or not document.keys() <= _REQUEST_KEYS:
        return None
    request_id = document.get("id")
    parameters = document.get("parameters", {})
    items = document.get("inputs")
    if (
        (request_id is not None and type(request_id) is not str)
        or type(parameters) is not dict
        or type(items) is not list
        or not items
    ):
        return None
    outputs = _small_outputs(document.get("outputs"))
    if outputs is False:
        return None
    inputs: list[InputSpec] = []
    tensors: list[np.ndarray] = []
    for item in items:
        if type(item) is not dict or not item.keys() <= _INPUT_KEYS:
            return None
        name, shape, datatype, data = (
            item.get("name"),
            item.get("shape"),
            item.get("datatype"),
            item.get("data"),
        )
        if (
            type(name) is not str
            or type(shape) is not list
            or datatype not in _FLOAT_DATATYPES
            or item.get("parameters", {}) != {}
            or type(data) is not list
            or not all(type(size) is int and size >= 0 for size in shape)
            or not fits(shape)
            or len(data) != math.prod(shape)
            or not set(map(type, data)) <= _NUMBER_TYPES
            or (data and (max(data) > _EXACT or min(data) < -_EXACT))
        ):
            return None
        values = np.array(data, dtype=np.float64)
        if datatype == "FP32":
            values = values.astype(np.float32)
        tensors.append(values.reshape(shape))
        inputs.append(InputSpec(name, shape, datatype, {}))
    return Header(request_id, parameters, inputs, outputs), tensors


def _small_outputs(outputs: object) -> list[OutputSpec] | Literal[False] | None:
    """A request's ``outputs``, None when absent, False when not in the plain form."""
    if outputs is None:
        return None
    if type(outputs) is not list:
        return False
    built = []
    for output in outputs:
        if type(output) is not dict or not output.keys() <= _OUTPUT_KEYS:
            return False
        name, parameters = output.get("name"), output.get("parameters", {})
        if type(name) is not str or type(parameters) is not dict:
            return False
        built.append(OutputSpec(name, parameters))
    return built


def _python(value: Any) -> Any:
    """A small simdjson value as plain Python."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def fits(shape: list[int]) -> bool:
    """Whether ``shape`` has at most :data:`MAX_RANK` dimensions and :data:`MAX_ELEMENTS`."""
    if len(shape) > MAX_RANK:
        return False
    total = 1
    for size in shape:
        if size:
            total *= size
            if total > MAX_ELEMENTS:
                return False
    return True


_FP32_MAX = float(np.finfo(np.float32).max)
_FP64_MAX = float(np.finfo(np.float64).max)


def _tensor(tensor_input: RequestInput, raw: bytes | None, loc: Loc) -> np.ndarray:
    name = tensor_input.name
    dtype = INPUT_DATATYPES.get(tensor_input.datatype)
    if dtype is None:
        raise _bad(
            f"input {name!r} has datatype {tensor_input.datatype!r}; supported: "
            f"{', '.join(INPUT_DATATYPES)}",
            "unsupported-datatype",
            (*loc, "datatype"),
        )
    if not fits(tensor_input.shape):
        raise _bad(
            f"input {name!r}: shape {tensor_input.shape} is too large (at most {MAX_RANK} "
            f"dimensions whose non-zero sizes multiply to at most {MAX_ELEMENTS})",
            "invalid-shape",
            (*loc, "shape"),
        )
    count = math.prod(tensor_input.shape)
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise _bad(
                f"input {name!r}: shape {tensor_input.shape} of {tensor_input.datatype} needs "
                f"{count * dtype.itemsize} bytes, binary_data_size is {len(raw)}",
                "shape-mismatch",
                (*loc, "shape"),
            )
        return np.frombuffer(raw, dtype=dtype).reshape(tensor_input.shape)
    if tensor_input.data is None:
        raise _bad(f"input {name!r} has no data", "missing-data", (*loc, "data"))
    try:
        shaped = np.asarray(tensor_input.data, dtype=object)
    except (ValueError, TypeError):
        raise _bad(
            f"input {name!r}: data is ragged; nested lists must be rectangular",
            "invalid-data",
            (*loc, "data"),
        ) from None
    values: list[Any] = shaped.reshape(-1).tolist()
    kinds = set(map(type, values))
    if list in kinds:  # NumPy keeps the rows of a ragged nesting as lists
        raise _bad(
            f"input {name!r}: data is ragged; nested lists must be rectangular",
            "invalid-data",
            (*loc, "data"),
        )
    if not kinds <= _NUMBER_TYPES:  # exact types: a boolean is no number here
        raise _bad(f"input {name!r}: data must hold only numbers", "not-a-number", (*loc, "data"))
    if dtype.kind == "i" and float in kinds:
        raise _bad(
            f"input {name!r} is {tensor_input.datatype} but its data holds non-integers",
            "not-an-integer",
            (*loc, "data"),
        )
    if len(values) != count:
        raise _bad(
            f"input {name!r}: shape {tensor_input.shape} needs {count} values, data has "
            f"{len(values)}",
            "shape-mismatch",
            (*loc, "shape"),
        )
    return _exact(values, dtype, tensor_input, loc).reshape(tensor_input.shape)


def _exact(
    values: list[Any], dtype: np.dtype[Any], tensor_input: RequestInput, loc: Loc
) -> np.ndarray:
    """``values`` (Python numbers) as an array of ``dtype``; a value it cannot hold is refused.

    A cast would wrap an integer (2**32 + 1 as INT32 is 1) or make a float infinite. Integers
    are converted to int64 (which refuses what it cannot hold) and floats to float64, then the
    bounds of a narrower ``dtype`` are checked before it is cast. Infinity and NaN pass here:
    the predictor refuses them by row and feature.
    """
    wide = np.int64 if dtype.kind == "i" else np.float64
    try:
        array = np.array(values, dtype=wide)
    except OverflowError:
        bound = 2**63 if wide is np.int64 else _FP64_MAX
        index = next(i for i, v in enumerate(values) if type(v) is int and not -bound <= v < bound)
        raise _out_of_range(tensor_input, index, values[index], loc) from None
    if dtype.itemsize < array.dtype.itemsize and array.size:
        if dtype.kind == "i":
            limits = np.iinfo(dtype)
            outside = (array < limits.min) | (array > limits.max)
        else:
            magnitude = np.abs(array)
            outside = (magnitude > _FP32_MAX) & np.isfinite(magnitude)
        if outside.any():
            index = int(np.argmax(outside))
            raise _out_of_range(tensor_input, index, values[index], loc)
    return array.astype(dtype, copy=False)


def _out_of_range(
    tensor_input: RequestInput, index: int, value: Any, loc: Loc
) -> InvalidInputError:
    text = str(value)
    if len(text) > 24:
        text = f"{text[:12]}…({len(text)} characters)"
    return _bad(
        f"input {tensor_input.name!r}: value {text} at position {index} does not fit "
        f"{tensor_input.datatype}",
        "out-of-range",
        (*loc, "data"),
    )


def to_rows(request: Header, tensors: list[np.ndarray], features: list[str]) -> np.ndarray:
    """One 2-D tensor [rows, features], or one 1-D tensor per feature, as a float64 batch."""
    if len(tensors) == 1 and tensors[0].ndim == 2:
        return tensors[0].astype(np.float64, copy=False)
    forms = (
        f"send one 2-D tensor [rows, {len(features)}] or one 1-D tensor per feature "
        f"({', '.join(features)})"
    )
    names = [tensor_input.name for tensor_input in request.inputs]
    for tensor_input, tensor in zip(request.inputs, tensors, strict=True):
        if tensor.ndim > 2 or (tensor.ndim == 2 and tensor.shape[1] != 1) or tensor.ndim == 0:
            raise _bad(
                f"input {tensor_input.name!r} has shape {tensor_input.shape}; {forms}",
                "invalid-shape",
            )
    unknown = [name for name in names if name not in features]
    if unknown:
        raise _bad(f"unknown input {unknown[0]!r}: {forms}", "unknown-feature")
    if len(set(names)) != len(names):
        raise _bad("an input name appears twice", "duplicate-input")
    missing = [name for name in features if name not in names]
    if missing:
        raise _bad(f"missing inputs for features: {', '.join(missing)}", "missing-feature")
    by_name = {name: tensor.reshape(-1) for name, tensor in zip(names, tensors, strict=True)}
    lengths = {len(column) for column in by_name.values()}
    if len(lengths) != 1:
        raise _bad(
            f"per-feature inputs have different lengths: {sorted(lengths)}", "shape-mismatch"
        )
    return np.column_stack([by_name[name].astype(np.float64, copy=False) for name in features])


def outputs_of(manifest: Manifest) -> list[str]:
    return [PREDICT, PREDICT_PROBA] if manifest.task == "classification" else [PREDICT]


@functools.cache
def _all_outputs(classifier: bool, binary: bool) -> tuple[RequestedOutput, ...]:
    names = (PREDICT, PREDICT_PROBA) if classifier else (PREDICT,)
    return tuple(RequestedOutput(name, binary) for name in names)


def requested_outputs(request: Header, manifest: Manifest) -> list[RequestedOutput]:
    """The outputs to return (all when none are named), each in JSON or binary."""
    binary_default = request.parameters.get("binary_data_output") is True
    if not request.outputs:
        return list(_all_outputs(manifest.task == "classification", binary_default))
    available = outputs_of(manifest)
    wanted = []
    for output in request.outputs:
        if output.name not in available:
            raise _bad(
                f"unknown output {output.name!r}; model {manifest.name!r} has: "
                f"{', '.join(available)}",
                "unknown-output",
            )
        binary = output.parameters.get("binary_data", binary_default) is True
        wanted.append(RequestedOutput(output.name, binary))
    return wanted


# -- encoding ---------------------------------------------------------------------------------


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype for a NumPy dtype of predictions."""
    if dtype.kind == "f":
        return "FP64"
    if dtype.kind in "iu":
        return "INT64"
    if dtype.kind == "b":
        return "BOOL"
    return "BYTES"


def _binary(values: np.ndarray, datatype: str) -> bytes:
    if datatype == "FP64":
        return values.astype("<f8").tobytes()
    if datatype == "INT64":
        return values.astype("<i8").tobytes()
    if datatype == "BOOL":
        return values.astype(np.bool_).tobytes()
    encoded = [str(value).encode() for value in values.reshape(-1).tolist()]
    return b"".join(struct.pack("<I", len(item)) + item for item in encoded)


@functools.lru_cache(maxsize=1024)
def _json_head(name: str, version: int) -> bytes:
    """The start of every JSON response of one model version (its name escaped once)."""
    return b'{"model_name":' + orjson.dumps(name) + b',"model_version":"' + b"%d" % version + b'"'


_OUTPUT_START = b',"outputs":[{"name":"predict","shape":[%d],"datatype":"FP64","data":'


def encode(
    predictor: Predictor,
    prediction: Prediction,
    request_id: str | None,
    outputs: list[RequestedOutput],
) -> EncodedResponse:
    """The V2 response for ``prediction``: JSON, or a JSON header followed by binary tensors."""
    values = prediction.predictions
    if (
        len(outputs) == 1
        and outputs[0].name == PREDICT
        and not outputs[0].binary
        and values.ndim == 1
        and values.dtype.kind == "f"
    ):
        # The common answer, one float tensor in JSON: the bytes orjson makes of the document
        # below (a test holds them equal), without building it.
        data = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
        rows = len(values)
        head = _json_head(predictor.name, predictor.version)
        if request_id is not None:
            head += b',"id":' + orjson.dumps(request_id)
        body = b"".join((head, _OUTPUT_START % rows, data, b"}]}"))
        return EncodedResponse(body, None, rows)
    return _encode_document(predictor, prediction, request_id, outputs)


def _encode_document(
    predictor: Predictor,
    prediction: Prediction,
    request_id: str | None,
    outputs: list[RequestedOutput],
) -> EncodedResponse:
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in outputs:
        values = prediction.predictions if output.name == PREDICT else prediction.probabilities
        if values is None:  # pragma: no cover - requested_outputs() only offers what exists
            raise _bad(f"output {output.name!r} was not computed")
        datatype = datatype_of(values.dtype)
        tensor: dict[str, Any] = {
            "name": output.name,
            "shape": list(values.shape),
            "datatype": datatype,
        }
        if output.binary:
            blob = _binary(values, datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = values if values.ndim == 1 else values.reshape(-1)
            tensor["data"] = flat if values.dtype.kind in "fiub" else flat.tolist()
        tensors.append(tensor)
    document: dict[str, Any] = {
        "model_name": predictor.name,
        "model_version": str(predictor.version),
    }
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = tensors
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return EncodedResponse(header, None, len(prediction.predictions))
    return EncodedResponse(header + b"".join(blobs), len(header), len(prediction.predictions))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A decoded and validated V2 request, ready to predict and encode."""

    batch: Batch
    request_id: str | None
    outputs: list[RequestedOutput]


def prepare(predictor: Predictor, body: bytes, header_length: int | None) -> Prepared:
    """Decode and validate (shared with the native API) one V2 request."""
    if header_length is None and len(body) < _PLAIN_MIN_BYTES:
        common = _prepare_common(predictor, body)
        if common is not None:
            return common
    return _prepare_general(predictor, body, header_length)


def _prepare_general(predictor: Predictor, body: bytes, header_length: int | None) -> Prepared:
    request, tensors, finite = _decode(body, header_length)
    outputs = requested_outputs(request, predictor.manifest)
    rows = to_rows(request, tensors, predictor.feature_names)
    batch = predictor.validate_array(
        rows,
        return_probabilities=any(output.name == PREDICT_PROBA for output in outputs),
        finite=finite,
    )
    return Prepared(batch, request.id, outputs)


def _prepare_common(predictor: Predictor, body: bytes) -> Prepared | None:
    """:func:`prepare` for the common request (:data:`_COMMON`), in one pass.

    The regular expression fixes every key, its order and every value's form but the data's;
    simdjson (strict JSON) then reads the data straight into a float64 buffer, refusing
    anything but numbers a double holds (NaN, Infinity, 1e999, integers past 64 bits). What
    the general path would refuse (an empty or too large batch, the wrong feature count, data
    that does not fill the shape) returns None, so that path writes the error. A test holds the
    result equal to the general path's for every body this takes.
    """
    common = _common_form(body)
    if common is None:
        return None
    form, data = common
    rows, columns = form.rows, form.columns
    if not 0 < rows <= predictor.max_rows or columns != len(predictor.feature_names):
        return None
    try:
        document = json_parser().parse(data)
        if not isinstance(document, simdjson.Array):
            return None
        values = np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, RuntimeError, TypeError):  # not strict JSON numbers
        return None
    if values.size != rows * columns:
        return None
    if form.output:
        outputs = [_PREDICT_JSON if not form.binary else _PREDICT_BINARY]
    else:
        outputs = list(_all_outputs(predictor.is_classifier, form.binary_default))
    probabilities = not form.output and predictor.is_classifier  # all outputs: predict_proba too
    return Prepared(Batch(values.reshape(rows, columns), probabilities), form.request_id, outputs)


def infer(predictor: Predictor, body: bytes, header_length: int | None) -> EncodedResponse:
    """Decode, validate, predict and encode one V2 request."""
    prepared = prepare(predictor, body, header_length)
    prediction = predictor.predict_batch(prepared.batch)
    return encode(predictor, prediction, prepared.request_id, prepared.outputs)


def model_metadata(name: str, versions: list[int], manifest: Manifest) -> ModelMetadata:
    """V2 metadata from the manifest: the batch dimension is -1."""
    outputs = [MetadataTensor(name=PREDICT, datatype=_output_datatype(manifest), shape=[-1])]
    if manifest.task == "classification":
        classes = len(manifest.output.classes or [])
        outputs.append(MetadataTensor(name=PREDICT_PROBA, datatype="FP64", shape=[-1, classes]))
    return ModelMetadata(
        name=name,
        versions=[str(version) for version in versions],
        platform=PLATFORM,
        inputs=[
            MetadataTensor(
                name=BATCH_INPUT, datatype="FP64", shape=[-1, manifest.input_schema.count]
            )
        ],
        outputs=outputs,
    )


def _output_datatype(manifest: Manifest) -> str:
    try:
        return datatype_of(np.dtype(manifest.output.dtype))
    except TypeError:
        return "BYTES"
