"""The Open Inference Protocol's decoder (its lean roads inside it) and encoder."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import numpy as np
import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from modelserve.core.batch import Prediction
from modelserve.core.errors import InvalidInputError
from modelserve.core.predictor import Predictor
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.dataplane.plane import answer_v2
from modelserve.protocol.v2 import decode as dec
from modelserve.protocol.v2 import encode as enc
from modelserve.protocol.v2 import types
from tests.helpers import ROW

FEATURES = [f"x{i}" for i in range(10)]


@pytest.fixture(scope="module")
def predictor(template_store) -> Predictor:  # type: ignore[no-untyped-def]
    return Predictor(ModelStore(template_store).load("default", None, LoadPolicy()), max_rows=100)


@pytest.fixture(scope="module")
def classifier(template_store) -> Predictor:  # type: ignore[no-untyped-def]
    return Predictor(ModelStore(template_store).load("clf", None, LoadPolicy()), max_rows=100)


def request(*inputs: dict[str, object], **extra: object) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def binary_request(arrays: dict[str, np.ndarray], datatype: str = "FP64") -> tuple[bytes, int]:
    inputs = [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": datatype,
            "parameters": {"binary_data_size": array.nbytes},
        }
        for name, array in arrays.items()
    ]
    header = orjson.dumps({"inputs": inputs})
    return header + b"".join(a.tobytes() for a in arrays.values()), len(header)


_DEFAULT: list[Predictor] = []


@pytest.fixture(autouse=True, scope="module")
def _default_model(predictor: Predictor) -> None:
    _DEFAULT[:] = [predictor]


def rows_of(body: bytes, header_length: int | None = None) -> np.ndarray:
    """The checked rows of a request to the default model (features x0..x9)."""
    predictor = _DEFAULT[0]
    request = dec.general_request(body, header_length, predictor.manifest)
    return predictor.check(request.batch).rows


def test_flat_and_nested_data_give_the_same_batch() -> None:
    flat = rows_of(request({"name": "x", "shape": [2, 10], "datatype": "FP64", "data": ROW * 2}))
    nested = rows_of(
        request({"name": "x", "shape": [2, 10], "datatype": "FP64", "data": [ROW, ROW]})
    )
    np.testing.assert_array_equal(flat, nested)
    assert flat.shape == (2, 10)
    assert flat.dtype == np.float64


def test_one_tensor_per_feature_in_any_order() -> None:
    inputs = [
        {"name": name, "shape": [2], "datatype": "FP64", "data": [ROW[i], -ROW[i]]}
        for i, name in reversed(list(enumerate(FEATURES)))
    ]
    rows = rows_of(request(*inputs))
    np.testing.assert_array_equal(rows[0], ROW)
    np.testing.assert_array_equal(rows[1], [-v for v in ROW])


@pytest.mark.parametrize(
    ("datatype", "dtype"), [("FP32", np.float32), ("INT64", np.int64), ("INT32", np.int32)]
)
def test_other_datatypes(datatype: str, dtype: type) -> None:
    data = np.arange(20).reshape(2, 10).astype(dtype)
    as_json = rows_of(
        request({"name": "x", "shape": [2, 10], "datatype": datatype, "data": data.tolist()})
    )
    body, length = binary_request({"x": data}, datatype)
    np.testing.assert_array_equal(as_json, data.astype(np.float64))
    np.testing.assert_array_equal(rows_of(body, length), data.astype(np.float64))


def test_binary_and_json_inputs_mix() -> None:
    column = np.array([1.5, 2.5])
    header = {
        "inputs": [
            {
                "name": "x0",
                "shape": [2],
                "datatype": "FP64",
                "parameters": {"binary_data_size": 16},
            },
            *({"name": n, "shape": [2], "datatype": "FP64", "data": [0, 0]} for n in FEATURES[1:]),
        ]
    }
    encoded = orjson.dumps(header)
    rows = rows_of(encoded + column.tobytes(), len(encoded))
    np.testing.assert_array_equal(rows[:, 0], column)


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{", None, "request body is not valid JSON"),
        (b'{"inputs": []}', None, "invalid inference request: inputs: List should have at least 1"),
        (
            request({"name": "x", "shape": [1, 10], "datatype": "STRING", "data": ["a"] * 10}),
            None,
            "datatype 'STRING'; supported: FP64, FP32, FP16, INT64, INT32, INT16, INT8, UINT64, "
            "UINT32, UINT16, UINT8, BOOL, BYTES",
        ),
        (
            request({"name": "x", "shape": [1, 10], "datatype": "FP64"}),
            None,
            "input 'x' has no data",
        ),
        (
            request({"name": "x", "shape": [1, 10], "datatype": "FP64", "data": ROW[:9]}),
            None,
            "shape [1, 10] needs 10 values, data has 9",
        ),
        (
            request({"name": "x", "shape": [1, 10], "datatype": "FP64", "data": ["a"] * 10}),
            None,
            "data must hold only numbers",
        ),
        (
            request({"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3]]}),
            None,
            "data is ragged",
        ),
        (
            request({"name": "x", "shape": [1, 10], "datatype": "INT64", "data": [0.5] * 10}),
            None,
            "is INT64 but its data holds non-integers",
        ),
        (
            request({"name": "x", "shape": [10], "datatype": "FP64", "data": ROW}),
            None,
            "unknown input 'x': send one 2-D tensor [rows, 10] or one 1-D tensor per feature",
        ),
        (
            request({"name": "x", "shape": [1, 2, 5], "datatype": "FP64", "data": ROW}),
            None,
            "input 'x' has shape [1, 2, 5]",
        ),
        (
            request({"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]}),
            None,
            "missing inputs for features: x1, x2",
        ),
        (
            request(
                *(
                    {
                        "name": n,
                        "shape": [1 + (n == "x3")],
                        "datatype": "FP64",
                        "data": [1] * (1 + (n == "x3")),
                    }
                    for n in FEATURES
                )
            ),
            None,
            "per-feature inputs have different lengths: [1, 2]",
        ),
        (
            request(
                {"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]},
            ),
            None,
            "an input name appears twice",
        ),
    ],
)
def test_decode_errors(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        rows_of(body, header_length)
    assert message in info.value.message


def test_binary_errors() -> None:
    body, length = binary_request({"x": np.zeros((1, 10))})
    with pytest.raises(InvalidInputError, match="request body is not valid JSON"):
        rows_of(body, None)  # binary bytes after the JSON, but no header to say where it ends
    with pytest.raises(InvalidInputError, match="has no Inference-Header-Content-Length"):
        rows_of(body[:length], None)
    with pytest.raises(InvalidInputError, match="runs past the end of the body"):
        rows_of(body[:-8], length)
    with pytest.raises(InvalidInputError, match="8 bytes of binary data that no input claims"):
        rows_of(body + b"\0" * 8, length)
    wrong = np.zeros((1, 10), dtype=np.float32)  # 40 bytes declared as FP64
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 10],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 40},
                }
            ]
        }
    )
    with pytest.raises(InvalidInputError, match="needs 80 bytes, binary_data_size is 40"):
        rows_of(header + wrong.tobytes(), len(header))


@pytest.mark.parametrize(
    ("value", "message"), [("x", "must be an integer"), ("0", "is 0 but"), ("99", "is 99 but")]
)
def test_header_length_errors(value: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        dec.parse_header_length(value, 10)


def test_infer_json_response(predictor: Predictor) -> None:
    body = request({"name": "x", "shape": [1, 10], "datatype": "FP64", "data": ROW}, id="req-1")
    encoded = answer_v2(predictor, body, None)
    assert encoded.header_length is None
    document = orjson.loads(encoded.body)
    expected = predictor.estimator.predict(np.array([ROW]))
    assert document["model_name"] == "default"
    assert document["model_version"] == "1"
    assert document["id"] == "req-1"
    assert document["outputs"][0]["name"] == "predict"
    assert document["outputs"][0]["datatype"] == "FP64"
    assert document["outputs"][0]["shape"] == [1]
    assert document["outputs"][0]["data"] == pytest.approx(expected.tolist(), abs=1e-9)


@pytest.mark.parametrize("request_id", [None, "req-1", 'with "quotes" and \\ and é'])
@pytest.mark.parametrize(
    "values",
    [
        np.array([1.5]),
        np.array([0.1, -2.0, 3e300, 5e-324]),
        np.array([[1.0, 2.0], [3.0, 4.0]]),  # multi-output regression
        np.array([0.1, 2.5], dtype=np.float32),
    ],
)
def test_the_json_predict_answer_is_the_documented_document(
    predictor: Predictor, values: np.ndarray, request_id: str | None
) -> None:
    output = types.RequestedOutput(types.PREDICT, binary=False)
    direct = enc.encode("default", 1, Prediction(predictions=values), request_id, [output])
    document: dict[str, object] = {"model_name": "default", "model_version": "1"}
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = [
        {
            "name": "predict",
            "shape": list(values.shape),
            "datatype": "FP64",
            "data": values.reshape(-1),
        }
    ]
    assert direct.body == orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    assert (direct.header_length, direct.rows) == (None, len(values))


def test_infer_binary_response_when_asked(classifier: Predictor) -> None:
    x = np.array([[0.1, 0.2, 0.3, 0.4], [1, 1, 1, 1]])
    body = request(
        {"name": "x", "shape": [2, 4], "datatype": "FP64", "data": x.tolist()},
        parameters={"binary_data_output": True},
        outputs=[
            {"name": "predict_proba"},
            {"name": "predict", "parameters": {"binary_data": False}},
        ],
    )
    encoded = answer_v2(classifier, body, None)
    assert encoded.header_length is not None
    header = orjson.loads(encoded.body[: encoded.header_length])
    proba_meta, labels = header["outputs"]
    assert proba_meta == {
        "name": "predict_proba",
        "shape": [2, 2],
        "datatype": "FP64",
        "parameters": {"binary_data_size": 32},
    }
    proba = np.frombuffer(encoded.body[encoded.header_length :], dtype="<f8").reshape(2, 2)
    np.testing.assert_allclose(proba, classifier.estimator.predict_proba(x), atol=1e-12)
    assert labels["data"] == classifier.estimator.predict(x).tolist()


def test_string_labels_are_bytes_tensors() -> None:
    values = np.array(["cat", "dog"])
    assert enc.datatype_of(values.dtype) == "BYTES"
    blob = enc.binary_tensor(values, "BYTES")
    assert blob == struct.pack("<I", 3) + b"cat" + struct.pack("<I", 3) + b"dog"


def test_unknown_output_is_refused(predictor: Predictor) -> None:
    body = request(
        {"name": "x", "shape": [1, 10], "datatype": "FP64", "data": ROW},
        outputs=[{"name": "predict_proba"}],
    )
    with pytest.raises(
        InvalidInputError, match="unknown output 'predict_proba'; model 'default' has: predict"
    ):
        answer_v2(predictor, body, None)


def test_model_metadata(classifier: Predictor) -> None:
    metadata = enc.model_metadata("clf", [1], classifier.manifest)
    assert metadata.model_dump() == {
        "name": "clf",
        "versions": ["1"],
        "platform": "sklearn",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
        ],
    }


# -- the plain JSON decoder (simdjson) agrees with the full one -------------------------------


def _v2(data: str, shape: str = "[2, 2]", datatype: str = "FP64", extra: str = "") -> bytes:
    return (
        f'{{"inputs": [{{"name": "input", "shape": {shape}, "datatype": "{datatype}", '
        f'"data": {data}}}]{extra}}}'
    ).encode()


_BOTH_LEAN = [  # bodies both lean decoders take
    _v2("[1, 2.5, -3e2, 4E-1]"),
    _v2("[1, 2, 3, 4]", datatype="FP32"),
    _v2("[1, 2, 3, 4]", extra=', "id": "r-1", "parameters": {"binary_data_output": true}'),
    _v2("[]", shape="[0, 2]"),
    b'{"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]}, '
    b'{"name": "b", "shape": [2], "datatype": "FP64", "data": [3, 4]}]}',
]


_FULL_ONLY = [  # bodies neither lean decoder takes: the full one decodes them or says why not
    _v2("[[1, 2], [3, 4]]"),  # nested: the full decoder reshapes it
    _v2("[1, 2, 3, 4]", datatype="INT64"),
    _v2("[1, 2, 3, true]"),
    _v2("[1, 2, 3, null]"),
    _v2('[1, 2, 3, "4"]'),
    _v2("[1, 2, 3, NaN]"),
    _v2("[1, 2, 3, 1e999]"),
    _v2("[1, 2, 3, 99999999999999999999999]"),
    _v2("[1, 2, 3]"),  # three values for a [2, 2] shape
    _v2("[1, 2, 3, 4]", extra=', "inputs": []'),  # a repeated key, the last one empty
    b'{"inputs": [{"name": "input", "shape": [4], "datatype": "FP64", "data": [1, 2, 3, 4], '
    b'"parameters": {"binary_data_size": 32}}]}',
    b'{"inputs": []}',
    b"[1, 2]",
    b"not json",
]


@pytest.mark.parametrize(
    "body",
    [
        *_FULL_ONLY,
        _v2("[[1], [[2]], [3], [4]]"),  # ragged, hiding behind a count of 4
        _v2("[1, 2, 3, 4]", extra=', "id": "a[0]"'),
        _v2("[1, 2, 3, 4]", extra=', "outputs": [{"name": "predict"}]'),
    ],
)
def test_other_v2_bodies_take_the_full_decoder(body: bytes) -> None:
    assert dec.read_plain(body) is None


@pytest.mark.parametrize("datatype", [b"{}", b"[]", b"1"])
def test_a_large_body_with_a_datatype_that_is_no_string_gets_the_full_decoders_error(
    datatype: bytes,
) -> None:
    body = _v2(str([0.5] * 400), shape="[40, 10]").replace(b'"FP64"', datatype)
    assert len(body) >= dec.PLAIN_MIN_BYTES
    assert dec.read_plain(body) is None
    with pytest.raises(InvalidInputError, match=r"inputs\.0\.datatype"):
        dec.read_tensors(body, None)


_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64]),
)
_values = _numbers | st.sampled_from([True, None, "1"]) | st.lists(st.integers(), max_size=2)


_SMALL_TOO = [
    _v2("[1, 2, 3, 4]", extra=', "id": "a[0]"'),
    _v2("[1, 2, 3, 4]", extra=', "id": null, "parameters": {"x": [1, {"y": 2}]}'),
    _v2("[1, 2, 3, 4]", extra=', "outputs": [{"name": "predict"}]'),
    _v2("[1, 2, 3, 4]", extra=', "outputs": [{"name": "p", "parameters": {"binary_data": true}}]'),
    _v2("[1, 2, 3, 4]", extra=', "outputs": null'),
    _v2("[1, 2, 3, 4]", extra=', "id": "first", "id": "last"'),  # the last repeated key wins
    b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP64", "data": [7]}], '
    + _v2("[1, 2, 3, 4]")[1:],  # the first "inputs" is replaced by the second
    _v2(f"[1, 2, 3, {2**53}]"),
    b'{"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2], '
    b'"parameters": {}}]}',
]


@pytest.mark.parametrize(
    ("lean", "body"),
    [(dec.read_plain, body) for body in _BOTH_LEAN]
    + [
        (dec.read_small, body)
        for body in [*_BOTH_LEAN, _v2("[0.1, 16777217, 1e-50, 4]", datatype="FP32"), *_SMALL_TOO]
    ],
)
def test_lean_decoders_skip_pydantic_and_decode_as_the_full_decoder_does(
    lean: Callable[[bytes], tuple[dec.Header, list[np.ndarray]] | None], body: bytes
) -> None:
    decoded = lean(body)
    assert decoded is not None
    request, tensors = decoded
    full_request, full_tensors = dec.read_full(body, None)
    assert request == full_request
    for tensor, full in zip(tensors, full_tensors, strict=True):
        assert (tensor.dtype, tensor.shape) == (full.dtype, full.shape)
        np.testing.assert_array_equal(tensor, full)


@pytest.mark.parametrize(
    "body",
    [
        *_FULL_ONLY,
        _v2("[1, 2, 3, 4]").replace(b'"FP64"', b"{}"),  # found by schemathesis: not hashable
        _v2("[1, 2, 3, 4]").replace(b'"FP64"', b"[]"),
        _v2(f"[1, 2, 3, {2**53 + 1}]"),  # no double holds it: the full path decides
        _v2("[1, 2, 3, 1e16]"),  # orjson reads integers past 64 bits as floats this large
        _v2("[1, 2, 3, 4]", shape="[2, 2.0]"),
        _v2("[1, 2, 3, 4]", shape="[4, -1]"),
        _v2("[1, 2, 3, 4]", extra=', "id": 7'),
        _v2("[1, 2, 3, 4]", extra=', "parameters": null'),
        _v2("[1, 2, 3, 4]", extra=', "outputs": {"name": "predict"}'),
        _v2("[1, 2, 3, 4]", extra=', "outputs": [{"name": "predict", "x": 1}]'),
        _v2("[1, 2, 3, 4]", extra=', "outputs": [{"name": 1}]'),
        _v2("[1, 2, 3, 4]", extra=', "model": "default"'),  # a key the model does not know
        b'{"inputs": [{"name": "input", "shape": [4], "datatype": "FP64", "data": [1, 2, 3, 4], '
        b'"content": {}}]}',
        b'{"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}',
        b'{"inputs": [7]}',
    ],
)
def test_other_small_v2_bodies_take_the_full_decoder(body: bytes) -> None:
    assert dec.read_small(body) is None


@pytest.mark.parametrize("body", [_v2("[1, 2, 3, 4]"), _v2("[1, 2, 3, 4]") + b" " * 3000])
def test_bodies_of_every_size_take_a_lean_decoder(body: bytes) -> None:
    assert (dec.read_small if len(body) < dec.PLAIN_MIN_BYTES else dec.read_plain)(body)
    request, tensors, _ = dec.read_tensors(body, None)
    assert request.inputs == [dec.InputSpec("input", [2, 2], "FP64", {})]
    np.testing.assert_array_equal(tensors[0], [[1, 2], [3, 4]])


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(_numbers, min_size=6, max_size=6) | st.lists(_values, max_size=6),
    shape=st.sampled_from([[2, 3], [6], [3, 2], [1, 6], [2, "3"], [2, True], [-1, 6], [6.0]]),
    datatype=st.sampled_from(["FP64", "FP32", "INT64", "BYTES"]),
    request_id=st.sampled_from([None, "r1", 7]),
    extra=st.sampled_from([{}, {"parameters": {}}, {"outputs": [{"name": "predict"}]}]),
    input_extra=st.sampled_from([{}, {"parameters": {}}]),
)
@pytest.mark.parametrize("lean", [dec.read_plain, dec.read_small])
def test_the_lean_decoders_accept_only_what_the_full_one_accepts_and_decode_it_the_same(
    lean: Callable[[bytes], tuple[dec.Header, list[np.ndarray]] | None],
    data: list[object],
    shape: list[object],
    datatype: str,
    request_id: object,
    extra: dict[str, object],
    input_extra: dict[str, object],
) -> None:
    item = {"name": "input", "shape": shape, "datatype": datatype, "data": data, **input_extra}
    document: dict[str, object] = {"inputs": [item], **extra}
    if request_id is not None:
        document["id"] = request_id
    body = json.dumps(document).encode()  # orjson cannot write integers beyond 64 bits
    plain = lean(body)
    try:
        full = dec.read_full(body, None)
    except InvalidInputError:
        full = None
    if plain is None:
        return
    event("lean decoder taken")
    assert full is not None, body
    request, tensors = plain
    assert request == full[0]
    for tensor, expected in zip(tensors, full[1], strict=True):
        assert (tensor.dtype, tensor.shape) == (expected.dtype, expected.shape)
        np.testing.assert_array_equal(tensor, expected)


# -- the common request, prepared in one pass, agrees with the general path ------------------


def _triton(
    data: str = str(ROW),
    shape: str = "[1, 10]",
    *,
    request_id: str | None = None,
    outputs: str | None = None,
    parameters: str | None = None,
    name: str = "input",
    compact: bool = True,
) -> bytes:
    """A body in tritonclient's key order, compact as it writes it or as json.dumps does."""
    parts = [] if request_id is None else [f'"id": "{request_id}"']
    parts.append(
        f'"inputs": [{{"name": "{name}", "shape": {shape}, "datatype": "FP64", "data": {data}}}]'
    )
    if outputs is not None:
        parts.append(f'"outputs": {outputs}')
    if parameters is not None:
        parts.append(f'"parameters": {parameters}')
    text = "{" + ", ".join(parts) + "}"
    if compact:
        text = text.replace(", ", ",").replace(": ", ":")
    return text.encode()


def _assert_same_as_general(predictor: Predictor, body: bytes) -> None:
    common = dec.common_request(body, predictor.manifest)
    assert common is not None, body
    general = dec.general_request(body, None, predictor.manifest)
    assert (common.request_id, common.outputs) == (general.request_id, general.outputs)
    assert common.batch.return_probabilities == general.batch.return_probabilities
    common_rows = predictor.check(common.batch).rows
    general_rows = predictor.check(general.batch).rows
    assert common_rows.dtype == general_rows.dtype == np.float64
    np.testing.assert_array_equal(common_rows, general_rows, strict=True)


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize(
    "body_args",
    [
        {},
        {"data": str(ROW * 3), "shape": "[3, 10]"},
        {"data": "[1, -2, 3e2, 4E-1, -0.0, 0, 1e-300, 9007199254740993, 18446744073709551615, 5]"},
        {"request_id": "r-1"},
        {"request_id": ""},
        {"name": "caf\u00e9 [0]"},
        {"parameters": '{"binary_data_output": true}'},
        {"parameters": '{"binary_data_output": false}'},
        {"outputs": '[{"name": "predict"}]'},
        {"outputs": '[{"name": "predict", "parameters": {"binary_data": false}}]'},
        {
            "outputs": '[{"name": "predict", "parameters": {"binary_data": true}}]',
            "parameters": '{"binary_data_output": false}',
        },
        {
            "request_id": "7",
            "outputs": '[{"name": "predict"}]',
            "parameters": '{"binary_data_output": true}',
        },
    ],
)
def test_the_common_request_is_prepared_as_the_general_path_prepares_it(
    predictor: Predictor, body_args: dict[str, str], compact: bool
) -> None:
    _assert_same_as_general(predictor, _triton(**body_args, compact=compact))


def test_a_classifiers_common_request_gets_both_outputs_as_before(classifier: Predictor) -> None:
    body = _triton("[0.1, 0.2, 0.3, 0.4]", "[1, 4]", parameters='{"binary_data_output": true}')
    _assert_same_as_general(classifier, body)
    prepared = dec.common_request(body, classifier.manifest)
    assert prepared is not None
    assert [output.name for output in prepared.outputs] == ["predict", "predict_proba"]
    assert prepared.batch.return_probabilities


@pytest.mark.parametrize(
    "body",
    [
        _triton("[1, 2, 3]"),  # data does not fill the shape: the general path says so
        _triton(str([*ROW[:9], float("nan")]).replace("nan", "NaN")),
        _triton(str(ROW[:9]).rstrip("]") + ", 1e999]"),
        _triton(str(ROW[:9]).rstrip("]") + ", 99999999999999999999999]"),
        _triton(str(ROW[:9]).rstrip("]") + ', "1"]'),
        _triton(str(ROW[:9]).rstrip("]") + ", true]"),
        _triton(str(ROW[:9]).rstrip("]") + ", [1]]"),
        _triton(str(ROW[:9]).rstrip("]") + ", 01]"),
        _triton(str(ROW[:9]).rstrip("]") + ", +1]"),
        _triton(str(ROW), "[01, 10]"),
        _triton(str(ROW), "[1, 10.0]"),
        _triton(name='in\\"put'),  # an escape: the other decoders read it
        _triton().replace(b"input", b"in\xffput"),  # not UTF-8
        _triton().replace(b"FP64", b"FP32"),
        _triton(outputs='[{"name": "predict_proba"}]'),  # an unknown output: the error's
        _triton(outputs='[{"name": "predict"}, {"name": "predict"}]'),
        _triton(parameters='{"binary_data_output": 1}'),
        _triton(parameters='{"other": true}'),
        _triton(request_id="r").replace(b"{", b'{"id":"first",', 1),  # a repeated key
        _triton(compact=False).replace(b", ", b",\n"),  # other white space
        b" " + _triton(),
        _triton() + b"\n",
    ],
)
def test_anything_else_takes_the_general_path(predictor: Predictor, body: bytes) -> None:
    assert dec.common_request(body, predictor.manifest) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_triton(str(ROW[:5]), "[1, 5]"), "feature-count"),
        (_triton("[]", "[0, 10]"), "empty-batch"),
        (_triton(str(ROW * 101), "[101, 10]"), "too-many-rows"),  # the fixture's max_rows: 100
    ],
)
def test_a_common_request_the_schema_refuses_is_refused_as_the_general_path_is(
    predictor: Predictor, body: bytes, code: str
) -> None:
    common = dec.common_request(body, predictor.manifest)
    general = dec.general_request(body, None, predictor.manifest)
    assert common is not None
    errors = []
    for request in (common, general):
        with pytest.raises(InvalidInputError) as info:
            predictor.check(request.batch)
        errors.append((info.value.code, info.value.message, info.value.problems))
    assert errors[0] == errors[1]
    assert errors[0][0] == code


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize(
    "body_args",
    [
        {},
        {"request_id": "r-2", "parameters": '{"binary_data_output": true}'},
        {"outputs": '[{"name": "predict", "parameters": {"binary_data": true}}]'},
    ],
)
def test_a_form_seen_before_is_read_again_as_the_general_path_reads_it(
    predictor: Predictor, body_args: dict[str, str], compact: bool
) -> None:
    # Bodies of one form with other data are each read afresh, and agree.
    first = _triton(**body_args, compact=compact)
    _assert_same_as_general(predictor, first)
    for data in ([0.5] * 10, [-1e300, 2, 3e-7, 0, -0.0, 7, 8, 9, 10, 11.5]):
        _assert_same_as_general(predictor, _triton(json.dumps(data), **body_args, compact=compact))
    two_rows = _triton(json.dumps([1.0] * 20), "[2, 10]", **body_args, compact=compact)
    _assert_same_as_general(predictor, two_rows)  # another shape: another form


@pytest.mark.parametrize(
    "data",
    [
        "[1, 2, 3]",  # too few values for the shape
        "[1, 2, 3, 4, 5, 6, 7, 8, 9, NaN]",
        "[1, 2, 3, 4, 5, 6, 7, 8, 9, [10]]",  # a nested array: the bytes after it differ
        '[1, 2, 3, 4, 5, 6, 7, 8, 9, "10"]',
        "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10,]",
        "[1 2 3 4 5 6 7 8 9 10]",
    ],
)
def test_bad_data_in_the_common_form_takes_the_general_path(
    predictor: Predictor, data: str
) -> None:
    _assert_same_as_general(predictor, _triton())  # the same form, with good data
    body = _triton(data)
    assert dec.common_request(body, predictor.manifest) is None
    with pytest.raises(InvalidInputError):
        predictor.check(dec.decode(body, None, predictor.manifest).batch)


@settings(max_examples=300, deadline=None)
@given(
    data=st.sampled_from([10, 20]).flatmap(
        lambda n: st.lists(
            st.floats(allow_nan=False, allow_infinity=False)
            | st.integers(min_value=-(2**63), max_value=2**64 - 1),
            min_size=n,
            max_size=n,
        )
    )
    | st.lists(_numbers, max_size=21)
    | st.lists(_values, min_size=10, max_size=10),
    shape=st.sampled_from(["[1, 10]", "[2, 10]"] * 3 + ["[2, 5]", "[0, 10]"]),
    request_id=st.sampled_from([None, "r1", "a b", "\u00e9"]),
    outputs=st.sampled_from([None, '[{"name": "predict"}]']),
    parameters=st.sampled_from([None, '{"binary_data_output": true}']),
    compact=st.booleans(),
)
def test_the_common_path_accepts_only_what_the_general_one_accepts(
    predictor: Predictor,
    data: list[object],
    shape: str,
    request_id: str | None,
    outputs: str | None,
    parameters: str | None,
    compact: bool,
) -> None:
    body = _triton(
        json.dumps(data),
        shape,
        request_id=request_id,
        outputs=outputs,
        parameters=parameters,
        compact=compact,
    )
    common = dec.common_request(body, predictor.manifest)
    if common is None:
        return
    event("common path taken")
    general = dec.general_request(body, None, predictor.manifest)
    outcomes = []
    for request in (common, general):
        try:
            outcomes.append(predictor.check(request.batch).rows.tolist())
        except InvalidInputError as exc:  # the schema refuses it: in the same words either way
            outcomes.append((exc.message, exc.problems))
    assert outcomes[0] == outcomes[1]
    assert (common.request_id, common.outputs) == (general.request_id, general.outputs)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("UINT8", [300], "input 'c': value 300 at position 0 does not fit UINT8"),
        ("INT8", [-129], "input 'c': value -129 at position 0 does not fit INT8"),
        ("UINT64", [-1], "input 'c': value -1 at position 0 does not fit UINT64"),
        ("UINT64", [2**64], "does not fit UINT64"),
        ("FP16", [70000.0], "input 'c': value 70000.0 at position 0 does not fit FP16"),
        ("INT16", [1.5], "input 'c' is INT16 but its data holds non-integers"),
        ("BOOL", [1], "input 'c' is BOOL but its data holds other values than true and false"),
        ("BYTES", [1], "input 'c' is BYTES but its data holds other values than strings"),
    ],
)
def test_a_json_value_that_does_not_fit_its_datatype_is_refused_not_wrapped(
    datatype: str, data: list[object], message: str
) -> None:
    tensor = {"name": "c", "shape": [1], "datatype": datatype, "data": data}
    body = json.dumps({"inputs": [tensor]}).encode()  # json: 2**64 is past orjson's integers
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        dec.read_tensors(body, None)


def test_binary_bool_bytes_other_than_0_and_1_are_refused() -> None:
    header = orjson.dumps(
        {"inputs": [{"name": "c", "shape": [3], "datatype": "BOOL",
                     "parameters": {"binary_data_size": 3}}]}
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match="input 'c' is BOOL but byte 1 is neither 0 nor 1"):
        dec.read_tensors(header + b"\x01\x02\x00", len(header))
    _, tensors, _ = dec.read_tensors(header + b"\x01\x00\x01", len(header))
    assert tensors[0].tolist() == [True, False, True]


def test_binary_narrow_integers_and_halves_are_read_as_sent() -> None:
    values = np.array([1, 250], dtype="<u1")
    header = orjson.dumps(
        {"inputs": [{"name": "c", "shape": [2], "datatype": "UINT8",
                     "parameters": {"binary_data_size": 2}}]}
    )  # fmt: skip
    _, tensors, _ = dec.read_tensors(header + values.tobytes(), len(header))
    assert tensors[0].tolist() == [1, 250]
