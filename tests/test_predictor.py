from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
import simdjson
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modelserve.core.errors import InvalidInputError, UnsupportedOutputError
from modelserve.core.predictor import Predictor
from modelserve.core.store import LoadPolicy, ModelStore
from tests.helpers import ROW


@pytest.fixture(scope="module")
def predictor(template_store) -> Predictor:  # type: ignore[no-untyped-def]
    artifact = ModelStore(template_store).load("default", None, LoadPolicy())
    return Predictor(artifact, max_rows=5, max_problems=3)


@pytest.fixture(scope="module")
def classifier(template_store) -> Predictor:  # type: ignore[no-untyped-def]
    artifact = ModelStore(template_store).load("clf", None, LoadPolicy())
    return Predictor(artifact, max_rows=5)


def _invalid(predictor: Predictor, body: object) -> InvalidInputError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidInputError) as info:
        predictor.predict_json(raw)
    return info.value


def test_predict_equals_the_estimators_own_predict(predictor: Predictor) -> None:
    rows = [ROW, [0.0] * 10]
    result = predictor.predict(rows)
    expected = predictor.estimator.predict(np.array(rows))
    np.testing.assert_allclose(result.predictions, expected, rtol=0, atol=1e-9)
    assert result.probabilities is None


def test_rows_as_objects_are_put_in_manifest_order(predictor: Predictor) -> None:
    names = predictor.feature_names
    shuffled = dict(reversed(list(zip(names, ROW, strict=True))))
    by_object = predictor.predict([shuffled]).predictions
    by_array = predictor.predict([ROW]).predictions
    assert by_object.tolist() == by_array.tolist()


def test_numpy_input_is_validated_too(predictor: Predictor) -> None:
    result = predictor.predict(np.array([ROW]))
    assert result.predictions.shape == (1,)
    with pytest.raises(InvalidInputError) as info:
        predictor.predict(np.array([[math.nan] * 10]))
    assert info.value.code == "not-finite"


def test_classifier_returns_labels_and_probabilities(classifier: Predictor) -> None:
    result = classifier.predict([[0.1, 0.2, 0.3, 0.4]], return_probabilities=True)
    assert result.classes == [0, 1]
    assert result.probabilities is not None
    assert result.probabilities.shape == (1, 2)
    assert result.probabilities.sum() == pytest.approx(1.0)
    assert result.predictions[0] in (0, 1)


def test_probabilities_from_a_regressor_are_refused(predictor: Predictor) -> None:
    with pytest.raises(UnsupportedOutputError, match="is a regressor"):
        predictor.predict([ROW], return_probabilities=True)


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


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@settings(max_examples=50, deadline=None)
@given(rows=arrays(np.float64, st.tuples(st.integers(1, 5), st.just(10)), elements=finite))
def test_any_finite_batch_predicts_like_the_estimator(
    predictor: Predictor, rows: np.ndarray
) -> None:
    body = orjson.dumps({"instances": rows.tolist()})
    result = predictor.predict_json(body)
    np.testing.assert_allclose(result.predictions, predictor.estimator.predict(rows), atol=1e-9)


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
        predictor.predict_json(body)
    except InvalidInputError as exc:
        error = exc
    if error is not None:
        assert error.problems
        assert all(problem.msg for problem in error.problems)


def test_linear_models_use_the_verified_lean_path(predictor: Predictor) -> None:
    assert predictor._linear is not None
    rows = np.random.default_rng(3).normal(scale=5, size=(5, 10))
    np.testing.assert_allclose(
        predictor.predict(rows).predictions, predictor.estimator.predict(rows), rtol=0, atol=1e-9
    )


def test_the_lean_path_is_not_used_when_it_disagrees(template_store) -> None:  # type: ignore[no-untyped-def]
    from modelserve.core.predictor import _verified_linear  # noqa: PLC0415

    artifact = ModelStore(template_store).load("default", None, LoadPolicy())
    estimator = artifact.estimator
    original = estimator.predict
    estimator.predict = lambda X: original(X) + 1e-6  # an estimator whose math is not X @ coef + b
    assert _verified_linear(estimator, artifact.manifest) is None
    assert Predictor(artifact, max_rows=5)._linear is None


def test_non_linear_models_keep_their_own_predict(classifier: Predictor) -> None:
    assert classifier._linear is None


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
def test_the_fast_parse_accepts_exactly_what_validation_accepts(
    predictor: Predictor, rows: list[list[object]]
) -> None:
    body = json.dumps({"instances": rows}).encode()
    fast = predictor._parse_plain_rows(body)
    try:
        slow = predictor._request_model.model_validate_json(body)
    except Exception:
        slow = None
    if fast is None:
        return  # the full path decides, and writes the message
    event("fast path taken")
    assert slow is not None, rows
    np.testing.assert_array_equal(fast.rows, np.array(slow.instances, dtype=np.float64))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "number", [b"1e999", b"-1e999", b"1.8e308", b"9" * 400, b"-" + b"9" * 400, b"NaN"]
)
def test_the_plain_rows_parser_never_yields_a_non_finite_number(
    predictor: Predictor, number: bytes
) -> None:
    """It skips a finiteness scan because simdjson refuses every number a double cannot hold."""
    with pytest.raises((ValueError, RuntimeError)):
        simdjson.Parser().parse(b"[" + number + b"]").as_buffer(of_type="d")  # type: ignore[union-attr]
    body = b'{"instances": [[' + number + b", 1, 1, 1, 1, 1, 1, 1, 1, 1]]}"
    assert predictor._parse_plain_rows(body) is None  # left to the full path's error message
    with pytest.raises(InvalidInputError):
        predictor.parse_json(body)


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
def test_plain_bodies_take_the_fast_parse(predictor: Predictor, body: str) -> None:
    fast = predictor._parse_plain_rows(body.encode())
    assert fast is not None
    slow = predictor._request_model.model_validate_json(body)
    np.testing.assert_array_equal(fast.rows, np.array(slow.instances, dtype=np.float64))  # type: ignore[attr-defined]


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
def test_other_bodies_are_left_to_validation(predictor: Predictor, body: str) -> None:
    assert predictor._parse_plain_rows(body.encode()) is None


def test_the_fast_parse_respects_max_rows(predictor: Predictor) -> None:
    rows = [[1.0] * 10] * (predictor.max_rows + 1)
    assert predictor._parse_plain_rows(orjson.dumps({"instances": rows})) is None
    assert predictor._parse_plain_rows(orjson.dumps({"instances": rows[:-1]})) is not None
