"""The Open Inference Protocol decoder: a request body in, a batch and its outputs out.

One decoder for the protocol's JSON and its binary tensor extension. It checks the request
against the protocol (keys, types, shapes, datatypes, each value within its datatype's range)
and the outputs against the model's; the rows themselves are the schema check's to validate
(:class:`~modelserve.core.schema.SchemaCheck`), as for every wire format.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson
import simdjson
from pydantic import ValidationError

from modelserve.core.batch import Batch
from modelserve.core.errors import InvalidInputError, Loc, Problem
from modelserve.core.manifest import Manifest
from modelserve.protocol.parsers import simdjson_parser
from modelserve.protocol.v2.types import (
    INPUT_DATATYPES,
    MAX_ELEMENTS,
    MAX_RANK,
    PREDICT,
    PREDICT_BINARY,
    PREDICT_JSON,
    PREDICT_PROBA,
    InferenceRequest,
    RequestedOutput,
    RequestInput,
)


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


def read_tensors(body: bytes, header_length: int | None) -> tuple[Header, list[np.ndarray], bool]:
    """A request body's JSON header and one array per input, shaped as declared, and whether
    every number is known to be finite.

    Small and large all-JSON requests in their plain form take a lean road each (orjson and a
    check by hand, or simdjson into buffers), without building Pydantic models; their parsers
    refuse NaN, Infinity and numbers no double holds, and their values stay within 2**53 (so
    within float32 too). Everything else, and whatever they do not cover, is read through
    :class:`InferenceRequest`, which also writes every error.
    """
    if header_length is None:
        lean = read_plain(body) if len(body) >= PLAIN_MIN_BYTES else read_small(body)
        if lean is not None:
            return lean[0], lean[1], True
    header, tensors = read_full(body, header_length)
    return header, tensors, False


def read_full(body: bytes, header_length: int | None) -> tuple[Header, list[np.ndarray]]:
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
# From here simdjson into a buffer pays off; below it orjson and a check by hand (read_small).
PLAIN_MIN_BYTES = 2048


def read_plain(body: bytes) -> tuple[Header, list[np.ndarray]] | None:  # noqa: PLR0911
    """The common all-JSON request with flat float tensors, with no Python object per number.

    simdjson (strict JSON) parses the body; each input's flat ``data`` goes straight into a
    float64 buffer, everything else through the same Pydantic model as always. Anything this
    does not cover returns None and takes the full path, which also writes any error: nested
    or non-numeric data, integer datatypes, binary parameters, repeated keys, a size that does
    not match the shape, a '[' anywhere but the inputs, shapes and data (so no nesting can hide).
    """
    try:
        document = simdjson_parser().parse(body)
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


_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
# Every integer up to 2**53 is exactly a double. Beyond it orjson may have turned an integer
# (which the full path refuses when no int64 holds it) into a float, so the full path decides.
_EXACT = float(2**53)
_NUMBER_TYPES = frozenset({float, int})  # exact types: bool, a subclass of int, is not one


def read_small(body: bytes) -> tuple[Header, list[np.ndarray]] | None:  # noqa: PLR0911
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


_FLOAT64 = np.dtype(np.float64)
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
        return _binary(tensor_input, raw, dtype, count, loc).reshape(tensor_input.shape)
    return _json_tensor(tensor_input, dtype, count, loc).reshape(tensor_input.shape)


def _json_tensor(
    tensor_input: RequestInput, dtype: np.dtype[Any], count: int, loc: Loc
) -> np.ndarray:
    """A tensor's JSON ``data`` as a flat array of ``dtype`` (objects where it holds null)."""
    name = tensor_input.name
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
    if len(values) != count:
        raise _bad(
            f"input {name!r}: shape {tensor_input.shape} needs {count} values, data has "
            f"{len(values)}",
            "shape-mismatch",
            (*loc, "shape"),
        )
    # null says "missing" (the schema check decides where that is allowed)
    present_kinds = kinds - {type(None)}
    if dtype.kind == "O":
        if not present_kinds <= {str}:
            raise _bad(
                f"input {name!r} is BYTES but its data holds other values than strings",
                "not-a-string",
                (*loc, "data"),
            )
        column = np.empty(count, dtype=object)
        column[:] = values
        return column
    if dtype.kind == "b":
        if not present_kinds <= {bool}:
            raise _bad(
                f"input {name!r} is BOOL but its data holds other values than true and false",
                "not-a-boolean",
                (*loc, "data"),
            )
        return np.array(values, dtype=object if None in values else bool)
    if not present_kinds <= _NUMBER_TYPES:  # exact types: a boolean is no number here
        raise _bad(f"input {name!r}: data must hold only numbers", "not-a-number", (*loc, "data"))
    if dtype.kind in "iu" and float in present_kinds:
        raise _bad(
            f"input {name!r} is {tensor_input.datatype} but its data holds non-integers",
            "not-an-integer",
            (*loc, "data"),
        )
    if len(present_kinds) < len(kinds):  # some nulls: the numbers checked, kept as objects
        _exact([v for v in values if v is not None], dtype, tensor_input, loc)
        column = np.empty(count, dtype=object)
        column[:] = values
        return column
    return _exact(values, dtype, tensor_input, loc)


def _binary(
    tensor_input: RequestInput, raw: bytes, dtype: np.dtype[Any], count: int, loc: Loc
) -> np.ndarray:
    """A tensor sent in binary: fixed-size little-endian values, or BYTES elements (each a
    4-byte little-endian length, then that many bytes of UTF-8 text)."""
    name = tensor_input.name
    if dtype.kind == "O":
        return _binary_strings(tensor_input, raw, count, loc)
    if len(raw) != count * dtype.itemsize:
        raise _bad(
            f"input {name!r}: shape {tensor_input.shape} of {tensor_input.datatype} needs "
            f"{count * dtype.itemsize} bytes, binary_data_size is {len(raw)}",
            "shape-mismatch",
            (*loc, "shape"),
        )
    if dtype.kind == "b":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if (octets > 1).any():
            raise _bad(
                f"input {name!r} is BOOL but byte {int(np.argmax(octets > 1))} is neither 0 nor 1",
                "not-a-boolean",
                (*loc, "data"),
            )
    return np.frombuffer(raw, dtype=dtype)


def _binary_strings(tensor_input: RequestInput, raw: bytes, count: int, loc: Loc) -> np.ndarray:
    name = tensor_input.name
    column = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + 4 > len(raw):
            raise _bad(
                f"input {name!r}: BYTES data ends after {index} of {count} elements",
                "shape-mismatch",
                (*loc, "shape"),
            )
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise _bad(
                f"input {name!r}: BYTES element {index} claims {size} bytes but "
                f"{len(raw) - offset} are left",
                "shape-mismatch",
                (*loc, "shape"),
            )
        try:
            column[index] = raw[offset : offset + size].decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(
                f"input {name!r}: BYTES element {index} is not UTF-8 text",
                "not-a-string",
                (*loc, "data"),
            ) from None
        offset += size
    if offset != len(raw):
        raise _bad(
            f"input {name!r}: {len(raw) - offset} bytes of BYTES data follow its {count} elements",
            "shape-mismatch",
            (*loc, "shape"),
        )
    return column


def _exact(
    values: list[Any], dtype: np.dtype[Any], tensor_input: RequestInput, loc: Loc
) -> np.ndarray:
    """``values`` (Python numbers) as an array of ``dtype``; a value it cannot hold is refused.

    A cast would wrap an integer (2**32 + 1 as INT32 is 1) or make a float infinite. Integers
    are converted to int64 (which refuses what it cannot hold) and floats to float64, then the
    bounds of a narrower ``dtype`` are checked before it is cast. Infinity and NaN pass here:
    the predictor refuses them by row and feature.
    """
    wide: type[np.generic] = (
        np.int64 if dtype.kind == "i" else np.uint64 if dtype.kind == "u" else np.float64
    )
    try:
        array = np.array(values, dtype=wide)
    except OverflowError:
        low, high = (
            (-(2**63), 2**63)
            if dtype.kind == "i"
            else (0, 2**64)
            if dtype.kind == "u"
            else (-_FP64_MAX, _FP64_MAX)
        )
        index = next(i for i, v in enumerate(values) if type(v) is int and not low <= v < high)
        raise _out_of_range(tensor_input, index, values[index], loc) from None
    if dtype.itemsize < array.dtype.itemsize and array.size:
        if dtype.kind in "iu":
            limits = np.iinfo(dtype)
            outside = (array < limits.min) | (array > limits.max)
        else:
            magnitude = np.abs(array)
            outside = (magnitude > float(np.finfo(dtype).max)) & np.isfinite(magnitude)
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


def _batch(
    request: Header,
    tensors: list[np.ndarray],
    features: list[str],
    probabilities: bool,
    finite: bool,
) -> Batch:
    """One 2-D tensor [rows, features] as a matrix, or one 1-D tensor per feature as columns."""
    if len(tensors) == 1 and tensors[0].ndim == 2:
        return Batch.of_matrix(tensors[0], return_probabilities=probabilities, finite=finite)
    for tensor_input, tensor in zip(request.inputs, tensors, strict=True):
        if tensor.ndim > 2 or (tensor.ndim == 2 and tensor.shape[1] != 1) or tensor.ndim == 0:
            raise _bad(
                f"input {tensor_input.name!r} has shape {tensor_input.shape}; send one 2-D "
                f"tensor [rows, {len(features)}] or one 1-D tensor per feature "
                f"({', '.join(features)})",
                "invalid-shape",
            )
    columns = [(i.name, tensor) for i, tensor in zip(request.inputs, tensors, strict=True)]
    return Batch.of_columns(columns, return_probabilities=probabilities)


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


@dataclass(slots=True)
class Request:
    """A decoded V2 request: its batch (for the schema check), its id and the outputs wanted."""

    batch: Batch
    request_id: str | None
    outputs: list[RequestedOutput]


def decode(body: bytes, header_length: int | None, manifest: Manifest) -> Request:
    """Decode one V2 request for the model of ``manifest``.

    ``header_length`` is the ``Inference-Header-Content-Length`` (binary tensors follow the JSON
    header), None for an all-JSON body. The common small request is read in one pass
    (:func:`common_request`); any other through :func:`read_tensors`.
    """
    if header_length is None and len(body) < PLAIN_MIN_BYTES:
        common = common_request(body, manifest)
        if common is not None:
            return common
    return general_request(body, header_length, manifest)


def general_request(body: bytes, header_length: int | None, manifest: Manifest) -> Request:
    """:func:`decode` for any request, through :func:`read_tensors`."""
    header, tensors, finite = read_tensors(body, header_length)
    outputs = requested_outputs(header, manifest)
    probabilities = any(output.name == PREDICT_PROBA for output in outputs)
    batch = _batch(header, tensors, manifest.input_schema.names, probabilities, finite)
    return Request(batch, header.id, outputs)


def common_request(body: bytes, manifest: Manifest) -> Request | None:
    """The request most clients send (:data:`_COMMON`), decoded in one pass; None: not one.

    The regular expression fixes every key, its order and every value's form but the data's;
    simdjson (strict JSON) then reads the data straight into a float64 buffer, refusing
    anything but numbers a double holds (NaN, Infinity, 1e999, integers past 64 bits). Data
    that does not fill the declared shape returns None, so the general road writes the error.
    Its result equals the general road's for every body it takes (a test holds them equal).
    """
    match = _COMMON.fullmatch(body)
    if match is None:
        return None
    request_id, name, rows, columns, data, output, binary, binary_output = match.groups()
    try:
        name.decode()  # the general road reads it, so it must be UTF-8
        text_id = None if request_id is None else request_id.decode()
        document = simdjson_parser().parse(data)
        if not isinstance(document, simdjson.Array):
            return None
        values = np.frombuffer(document.as_buffer(of_type="d"), _FLOAT64)
    except (UnicodeDecodeError, ValueError, RuntimeError, TypeError):
        return None  # not UTF-8, or not strict JSON numbers
    shape = (int(rows), int(columns))
    if values.size != shape[0] * shape[1]:
        return None
    classifier = manifest.task == "classification"
    binary_default = binary_output == b"true"
    if output is not None:
        wanted = binary_default if binary is None else binary == b"true"
        outputs = [PREDICT_BINARY if wanted else PREDICT_JSON]
    else:
        outputs = list(_all_outputs(classifier, binary_default))
    probabilities = output is None and classifier  # all outputs: predict_proba too
    batch = Batch(values.reshape(shape), None, None, probabilities, (), True)
    return Request(batch, text_id, outputs)
