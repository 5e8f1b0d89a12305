"""The data plane's native steps: decode -> check -> predict -> encode, as every entry point
calls them; each problem of a request gets its own message, status-free (the error table maps
it to HTTP)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve.core.errors import InvalidInputError
from modelserve.core.predictor import Predictor
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.dataplane.plane import answer_native, answer_v2, prepare_native
from tests.helpers import ROW


@pytest.fixture(scope="module")
def predictor(template_store) -> Predictor:  # type: ignore[no-untyped-def]
    artifact = ModelStore(template_store).load("default", None, LoadPolicy())
    return Predictor(artifact, max_rows=5, max_problems=3)


def _invalid(predictor: Predictor, body: object) -> InvalidInputError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidInputError) as info:
        prepare_native(predictor, raw)
    return info.value


def test_a_native_request_is_answered_with_the_native_document(predictor: Predictor) -> None:
    encoded = answer_native(predictor, orjson.dumps({"instances": [ROW, ROW]}))
    expected = predictor.estimator.predict(np.array([ROW, ROW]))
    document = orjson.loads(encoded.body)
    assert document["model_name"] == "default"
    assert document["model_version"] == predictor.version
    np.testing.assert_allclose(document["predictions"], expected, rtol=0, atol=1e-9)
    assert encoded.rows == 2
    assert encoded.header_length is None


def test_a_v2_request_is_answered_with_v2_tensors(predictor: Predictor) -> None:
    body = orjson.dumps(
        {"id": "7", "inputs": [{"name": "in", "shape": [1, 10], "datatype": "FP64", "data": ROW}]}
    )
    document = orjson.loads(answer_v2(predictor, body, None).body)
    assert document["id"] == "7"
    assert document["outputs"][0]["name"] == "predict"
    assert document["outputs"][0]["shape"] == [1]


def test_both_apis_check_rows_with_the_same_words(predictor: Predictor) -> None:
    native = _invalid(predictor, {"instances": [ROW] * 6})
    tensor = {"name": "in", "shape": [6, 10], "datatype": "FP64", "data": ROW * 6}
    with pytest.raises(InvalidInputError) as info:
        answer_v2(predictor, orjson.dumps({"inputs": [tensor]}), None)
    assert native.message == info.value.message
    assert native.message == (
        "batch has 6 rows; the limit is 5 rows per request (MODELSERVE_MAX_ROWS)"
    )


@pytest.mark.parametrize(
    ("body", "code", "loc", "message"),
    [
        ({"instances": [ROW[:9]]}, "feature-count", ["instances", 0], "row 0 has 9 values"),
        ({"instances": [[*ROW, 1.0]]}, "feature-count", ["instances", 0], "takes 10 features"),
        (
            {"instances": [{f"x{i}": 1.0 for i in range(9)}]},
            "missing-feature",
            ["instances", 0, "x9"],
            "row 0 is missing feature 'x9'",
        ),
        (
            {"instances": [{**{f"x{i}": 1.0 for i in range(10)}, "colour": 1.0}]},
            "unknown-feature",
            ["instances", 0, "colour"],
            "row 0 has unknown feature 'colour'",
        ),
        (
            {"instances": [[*ROW[:9], "abc"]]},
            "not-a-number",
            ["instances", 0, 9],
            "feature 'x9': expected a number, got string 'abc'",
        ),
        (
            {"instances": [[True, *ROW[1:]]]},
            "not-a-number",
            ["instances", 0, 0],
            "got boolean true",
        ),
        (
            {"instances": [[None, *ROW[1:]]]},
            "not-a-number",
            ["instances", 0, 0],
            "got null",
        ),
        ({"instances": []}, "empty-batch", ["instances"], "instances is empty"),
        (
            {"instances": [ROW] * 6},
            "too-many-rows",
            ["instances"],
            "batch has 6 rows; the limit is 5",
        ),
        ({"instances": [7]}, "invalid-row", ["instances", 0], "row 0 must be an array"),
        ({"rows": [ROW]}, "missing", ["instances"], "instances: Field required"),
        ({"instances": [ROW], "extra": 1}, "extra-forbidden", ["extra"], "extra: Extra inputs"),
    ],
)
def test_each_invalid_input_gets_its_own_message(
    predictor: Predictor, body: object, code: str, loc: list[object], message: str
) -> None:
    error = _invalid(predictor, body)
    assert error.code == code
    assert list(error.problems[0].loc) == loc
    assert message in error.message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"instances": [[NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}', "NaN and Infinity are not allowed"),
        (
            b'{"instances": [[1e999, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}',
            "NaN and Infinity are not allowed",
        ),
        (b'{"instances": [[-Infinity, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}', "NaN and Infinity"),
    ],
)
def test_nan_and_infinity_are_refused(predictor: Predictor, raw: bytes, message: str) -> None:
    error = _invalid(predictor, raw)
    assert error.code == "not-finite"
    assert "feature 'x0'" in error.message
    assert message in error.message


def test_invalid_json_is_reported(predictor: Predictor) -> None:
    error = _invalid(predictor, b'{"instances": [[1, 2')
    assert error.code == "invalid-json"
    assert error.message.startswith("request body is not valid JSON")


def test_many_problems_are_capped_and_counted(predictor: Predictor) -> None:
    error = _invalid(predictor, {"instances": [["a"] * 10] * 2})
    assert len(error.problems) == 3
    assert error.message.startswith("20 problems in the request; the first 3 are listed")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(document=json_values)
def test_arbitrary_json_never_raises_anything_but_invalid_input(
    predictor: Predictor, document: object
) -> None:
    body = orjson.dumps({"instances": document}, option=orjson.OPT_NON_STR_KEYS)
    error: InvalidInputError | None = None
    try:
        answer_native(predictor, body)
    except InvalidInputError as exc:
        error = exc
    if error is not None:
        assert error.problems
        assert all(problem.msg for problem in error.problems)
