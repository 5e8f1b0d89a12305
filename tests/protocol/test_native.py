"""The native JSON decoder (its fast road inside it) and encoder."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
import simdjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from modelserve.core.batch import Prediction
from modelserve.core.errors import InvalidInputError
from modelserve.core.schema import SchemaCheck
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.protocol.native import decode, encode, plain_rows, read_document


@pytest.fixture(scope="module")
def check(template_store) -> SchemaCheck:  # type: ignore[no-untyped-def]
    manifest = ModelStore(template_store).load("default", None, LoadPolicy()).manifest
    return SchemaCheck(manifest, max_rows=10)


plain_items = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.floats(allow_nan=False), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
            min_size=9,
            max_size=11,
        )
        | st.lists(plain_items, min_size=8, max_size=11),
        min_size=0,
        max_size=7,
    )
)
def test_the_fast_road_accepts_exactly_what_the_general_road_accepts(
    check: SchemaCheck, rows: list[list[object]]
) -> None:
    body = json.dumps({"instances": rows}).encode()
    fast = plain_rows(body, 10)
    try:
        slow: np.ndarray | None = check.check(read_document(body)).rows
    except InvalidInputError:
        slow = None
    if fast is None:
        return  # the general road decides, and writes the message
    event("fast road taken")
    assert slow is not None, rows
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize(
    "number", [b"1e999", b"-1e999", b"1.8e308", b"9" * 400, b"-" + b"9" * 400, b"NaN"]
)
def test_the_plain_rows_parser_never_yields_a_non_finite_number(
    check: SchemaCheck, number: bytes
) -> None:
    """It skips a finiteness scan because simdjson refuses every number a double cannot hold."""
    with pytest.raises((ValueError, RuntimeError)):
        simdjson.Parser().parse(b"[" + number + b"]").as_buffer(of_type="d")  # type: ignore[union-attr]
    body = b'{"instances": [[' + number + b", 1, 1, 1, 1, 1, 1, 1, 1, 1]]}"
    assert plain_rows(body, 10) is None  # left to the general road's error message
    with pytest.raises(InvalidInputError):
        check.check(decode(body, 10))


_TEN = "1, 2.5, -3, 4e2, 5E+2, -0, 7.25e-3, 8, 9, 10"
_NINE = "1, 2, 3, 4, 5, 6, 7, 8, 9"
_ELEVEN = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11"


@pytest.mark.parametrize(
    "body",
    [
        f'{{"instances": [[{_TEN}]]}}',
        f'{{"instances":[[{_TEN.replace(" ", "")}],[{_TEN}]]}}',
        f'{{\n  "instances": [\n    [{_TEN}],\n\t[{_TEN}]\r\n  ]\n}}',
    ],
)
def test_plain_bodies_take_the_fast_road(check: SchemaCheck, body: str) -> None:
    fast = plain_rows(body.encode(), 10)
    assert fast is not None
    np.testing.assert_array_equal(fast, check.check(read_document(body)).rows)
    decoded = decode(body.encode(), 10)
    assert decoded.finite  # simdjson refused every number a double cannot hold
    np.testing.assert_array_equal(check.check(decoded).rows, fast)


@pytest.mark.parametrize(
    "body",
    [
        f'{{"instances": [[{_NINE}], [{_ELEVEN}]]}}',  # ragged, 20 values in all
        f'{{"instances": [[{_TEN}]], "instances": [[{_TEN}]]}}',  # a repeated key
        f'{{"instances": [[{_TEN}]], "return_probabilities": false}}',
        f'{{"instanceEs": [[{_TEN}]]}}',  # the same skeleton, another key
        f'{{"instances": [[{_TEN}], []]}}',
        '{"instances": []}',
        f'{{"instances": [[[{_TEN}]]]}}',
        f'{{"instances": [[{_TEN.replace("8", "+8")}]]}}',
        f'{{"instances": [[{_TEN.replace("8", "08")}]]}}',
        f'{{"instances": [[{_TEN.replace("8", "8.")}]]}}',
        f'{{"instances": [[{_TEN.replace(", 8,", " 8,")}]]}}',  # two numbers, no comma
        f'{{"instances": [[{_TEN.replace("8", "1-2")}]]}}',
        f'{{"instances": [[{_TEN}]]}} trailing',
    ],
)
def test_other_bodies_take_the_general_road(body: str) -> None:
    assert plain_rows(body.encode(), 10) is None


def test_the_fast_road_reads_any_number_of_rows_and_the_check_limits_them(
    check: SchemaCheck,
) -> None:
    rows = [[1.0] * 10] * (check.max_rows + 1)
    matrix = plain_rows(orjson.dumps({"instances": rows}), 10)
    assert matrix is not None
    assert matrix.shape == (check.max_rows + 1, 10)
    with pytest.raises(InvalidInputError) as info:
        check.check(decode(orjson.dumps({"instances": rows}), 10))
    assert info.value.code == "too-many-rows"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"[1]", "model-type", "body: Input should be an object"),
        (b'{"rows": []}', "missing", "instances: Field required"),
        (b'{"instances": {}}', "list-type", "instances: Input should be a valid array"),
        (b'{"instances": [', "invalid-json", "request body is not valid JSON: EOF while"),
    ],
)
def test_what_is_not_the_native_format_is_refused_by_the_decoder(
    body: bytes, code: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        decode(body, 10)
    first = info.value.problems[0]
    assert first.type == code
    assert first.msg.startswith(message)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            b'{"instances": [], "return_probabilities": "yes"}',
            "bool-type",
            "return_probabilities: Input should be a valid boolean",
        ),
        (b'{"instances": [], "x": 1}', "extra-forbidden", "x: Extra inputs are not permitted"),
    ],
)
def test_problems_after_the_rows_travel_with_the_batch(
    check: SchemaCheck, body: bytes, code: str, message: str
) -> None:
    batch = decode(body, 10)
    assert [(problem.type, problem.msg) for problem in batch.trailing] == [(code, message)]
    with pytest.raises(InvalidInputError) as info:
        check.check(batch)  # listed after the rows' own (here: an empty batch)
    assert [problem.type for problem in info.value.problems] == ["empty-batch", code]


def test_the_envelope_problems_are_listed_together() -> None:
    with pytest.raises(InvalidInputError) as info:
        decode(b'{"instances": 5, "return_probabilities": 1, "zz": 0}', 10)
    assert info.value.message == (
        "3 problems in the request: instances: Input should be a valid array; ..."
    )
    assert [problem.type for problem in info.value.problems] == [
        "list-type",
        "bool-type",
        "extra-forbidden",
    ]


def test_the_answer_is_the_documented_document() -> None:
    prediction = Prediction(np.array([1.5, 2.0]), [0, 1], np.array([[0.5, 0.5], [0.1, 0.9]]))
    encoded = encode("m", 3, prediction)
    assert orjson.loads(encoded.body) == {
        "model_name": "m",
        "model_version": 3,
        "predictions": [1.5, 2.0],
        "classes": [0, 1],
        "probabilities": [[0.5, 0.5], [0.1, 0.9]],
    }
    assert encoded.rows == 2
    assert encode("m", 3, prediction, indent=True).body.startswith(b'{\n  "model_name"')
