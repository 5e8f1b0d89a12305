"""The schema check over typed features: integers, booleans, strings, categories, missing."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve.core.batch import Batch, ColumnType
from modelserve.core.errors import InvalidInputError
from modelserve.core.manifest import FeatureSchema, FeatureSpec
from modelserve.core.schema import COLUMN_CHECK_ROWS, SchemaCheck

SCHEMA = FeatureSchema(
    count=5,
    form="frame",
    features=[
        FeatureSpec(name="n", dtype="float64"),
        FeatureSpec(name="k", dtype="int64", nullable=True),
        FeatureSpec(name="flag", dtype="bool"),
        FeatureSpec(
            name="color",
            dtype="string",
            categories=["red", "green", "blue"],
            category_counts=[5, 30, 10],
        ),
        FeatureSpec(name="note", dtype="string", nullable=True),
    ],
)
ROW = [1.5, 3, True, "green", "hello"]


@pytest.fixture
def check() -> SchemaCheck:
    return SchemaCheck(SCHEMA, max_rows=5, max_problems=5)


def _refused(check: SchemaCheck, batch: Batch) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        check.check(batch)
    return info.value


def test_rows_with_strings_become_a_typed_table(check: SchemaCheck) -> None:
    batch = check.check(
        Batch.of_records([ROW, {"n": 2, "k": None, "flag": False, "color": "red", "note": None}])
    )
    assert batch.checked
    assert batch.table is not None
    assert batch.matrix is None
    n, k, flag, color, note = batch.table
    np.testing.assert_array_equal(n, [1.5, 2.0], strict=True)
    assert k[0] == 3.0
    assert math.isnan(k[1])
    np.testing.assert_array_equal(flag, [1.0, 0.0])
    assert color.dtype == object
    assert color.tolist() == ["green", "red"]
    assert note[0] == "hello"
    assert math.isnan(note[1])  # a missing value is NaN, as pandas reads an empty CSV cell
    types = [
        c.type for c in batch.columns(SCHEMA.names, [ColumnType(f.dtype) for f in SCHEMA.features])
    ]
    assert types == [
        ColumnType.FLOAT,
        ColumnType.INTEGER,
        ColumnType.BOOLEAN,
        ColumnType.STRING,
        ColumnType.STRING,
    ]


def test_a_whole_float_is_an_integer_and_an_integer_is_a_float(check: SchemaCheck) -> None:
    batch = check.check(Batch.of_records([[2, 4.0, False, "blue", "x"]]))
    assert batch.table is not None
    assert batch.table[0][0] == 2.0
    assert batch.table[1][0] == 4.0


@pytest.mark.parametrize(
    ("position", "value", "code", "message"),
    [
        (0, "1.5", "not-a-number", "row 0, feature 'n': expected a number, got string '1.5'"),
        (0, True, "not-a-number", "expected a number, got boolean true"),
        (
            0,
            None,
            "missing-value",
            "row 0, feature 'n': the value is missing (null), and the "
            "model cannot take a missing value there",
        ),
        (0, math.nan, "not-finite", "row 0, feature 'n': NaN and Infinity are not allowed"),
        (1, "3", "not-an-integer", "row 0, feature 'k': expected a whole number, got string '3'"),
        (1, 3.5, "not-an-integer", "expected a whole number, got number 3.5"),
        (
            1,
            2**60,
            "not-an-integer",
            "expected a whole number within ±2**53, got number 1152921504606846976",
        ),
        (1, True, "not-an-integer", "expected a whole number, got boolean true"),
        (2, 1, "not-a-boolean", "row 0, feature 'flag': expected a boolean, got number 1"),
        (2, "true", "not-a-boolean", "expected a boolean, got string 'true'"),
        (
            3,
            7,
            "not-a-string",
            "row 0, feature 'color': expected a string (feature 'color' "
            "was text in training; send it as a JSON string), got number 7",
        ),
        (
            3,
            "purple",
            "unknown-category",
            "row 0, feature 'color': string 'purple' is not a "
            "category the model knows; known: 'green', 'blue', 'red'",
        ),
        (3, None, "missing-value", "feature 'color': the value is missing"),
    ],
)
def test_each_value_that_does_not_fit_its_type_is_refused(
    check: SchemaCheck, position: int, value: object, code: str, message: str
) -> None:
    row = list(ROW)
    row[position] = value
    error = _refused(check, Batch.of_records([list(ROW), row]))
    assert len(error.problems) == 1
    problem = error.problems[0]
    assert problem.type == code
    assert problem.loc == ("instances", 1, SCHEMA.names[position])
    assert message.replace("row 0", "row 1") in problem.msg


def test_every_problem_is_listed_in_row_order(check: SchemaCheck) -> None:
    rows = [
        {"n": "x", "k": 1, "flag": True, "color": "mauve", "note": "a"},
        [1.0, 2, "no", "red", 5],
    ]
    error = _refused(check, Batch.of_records(rows))
    assert [(p.loc, p.type) for p in error.problems] == [
        (("instances", 0, "n"), "not-a-number"),
        (("instances", 0, "color"), "unknown-category"),
        (("instances", 1, "flag"), "not-a-boolean"),
        (("instances", 1, "note"), "not-a-string"),
    ]
    assert error.message.startswith("4 problems in the request")


def test_a_long_list_of_categories_is_cut(check: SchemaCheck) -> None:
    many = [f"c{i:02d}" for i in range(25)]
    schema = FeatureSchema(
        count=1, features=[FeatureSpec(name="c", dtype="string", categories=many)]
    )
    error = _refused(SchemaCheck(schema, max_rows=2), Batch.of_records([["zz"]]))
    assert error.problems[0].msg.endswith(
        "known: 'c00', 'c01', 'c02', 'c03', 'c04', 'c05', 'c06', 'c07', 'c08', 'c09', … (15 more)"
    )


def test_unseen_categories_pass_where_the_model_takes_them() -> None:
    schema = FeatureSchema(
        count=1,
        form="frame",
        features=[FeatureSpec(name="c", dtype="string", categories=["a"], accepts_unseen=True)],
    )
    batch = SchemaCheck(schema, max_rows=2).check(Batch.of_records([["zz"]]))
    assert batch.table is not None
    assert batch.table[0].tolist() == ["zz"]


def test_columns_of_any_dtype_are_checked_value_by_value(check: SchemaCheck) -> None:
    columns = [
        ("note", np.array(["a", None], dtype=object)),
        ("color", np.array(["red", "blue"], dtype=object)),
        ("flag", np.array([True, False])),
        ("k", np.array([1.0, math.nan])),  # binary data says missing with NaN
        ("n", np.array([1, 2], dtype=np.int32)),
    ]
    batch = check.check(Batch.of_columns(columns))
    assert batch.table is not None
    assert batch.table[3].tolist() == ["red", "blue"]
    assert math.isnan(batch.table[1][1])
    wrong = [*columns[:1], ("color", np.array([1, 2])), *columns[2:]]
    error = _refused(check, Batch.of_columns(wrong))
    assert [(p.loc, p.type) for p in error.problems] == [
        (("instances", 0, "color"), "not-a-string"),
        (("instances", 1, "color"), "not-a-string"),
    ]
    missing = [*columns[:4], ("n", np.array([1.0, math.nan]))]
    error = _refused(check, Batch.of_columns(missing))
    assert [(p.loc, p.type) for p in error.problems] == [(("instances", 1, "n"), "missing-value")]


def test_a_numeric_matrix_is_checked_against_each_feature_type() -> None:
    schema = FeatureSchema(
        count=2,
        features=[
            FeatureSpec(name="a", dtype="float64"),
            FeatureSpec(
                name="code", dtype="int64", categories=[1, 2, 3], category_counts=[1, 1, 1]
            ),
        ],
    )
    check = SchemaCheck(schema, max_rows=5)
    batch = check.check(Batch.of_matrix(np.array([[0.5, 1.0], [1.5, 3.0]]), finite=True))
    assert batch.matrix is not None  # only numbers: a matrix, as the estimator takes it
    np.testing.assert_array_equal(batch.rows, [[0.5, 1.0], [1.5, 3.0]])
    error = _refused(check, Batch.of_matrix(np.array([[0.5, 1.5], [0.5, 9.0]]), finite=True))
    assert [(p.loc, p.type) for p in error.problems] == [
        (("instances", 0, "code"), "not-an-integer"),
        (("instances", 1, "code"), "unknown-category"),
    ]
    assert "number 9.0 is not a category the model knows; known: 1, 2, 3" in error.problems[1].msg


def test_plain_schemas_keep_the_float_matrix_roads() -> None:
    schema = FeatureSchema(count=1, features=[FeatureSpec(name="a")])
    assert schema.plain
    check = SchemaCheck(schema, max_rows=5)
    matrix = np.array([[1.0], [2.0]])
    batch = Batch.of_matrix(matrix, finite=True)
    assert check.check(batch) is batch  # stamped, not copied
    error = _refused(check, Batch.of_columns([("a", np.array(["x"], dtype=object))]))
    assert error.problems[0].type == "not-a-number"


def test_a_manifest_written_before_typed_features_loads_and_serves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json  # noqa: PLC0415

    from modelserve.core.registry import ModelRegistry  # noqa: PLC0415
    from modelserve.core.settings import Settings  # noqa: PLC0415
    from modelserve.core.store import ModelStore  # noqa: PLC0415
    from modelserve.training.train import TrainConfig, train  # noqa: PLC0415

    store = ModelStore(tmp_path)
    train(TrainConfig(name="old", estimator="random-forest", samples=60, features=3), store)
    path = store.version_dir("old", 1) / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["input_schema"]["form"], manifest["estimator"]["steps"]
    for feature in manifest["input_schema"]["features"]:  # as the release before wrote them
        for key in ("nullable", "categories", "category_counts", "accepts_unseen"):
            del feature[key]
    path.write_text(json.dumps(manifest, indent=2))
    predictor = ModelRegistry(Settings(store=tmp_path)).load_predictor("old")
    assert predictor.manifest.input_schema.plain
    rows = np.array([[0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(
        predictor.predict(rows).predictions, predictor.estimator.predict(rows)
    )


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2.5, 7.0, -0.0, 2.0**53 + 2]),
    st.sampled_from(["red", "green", "blue", "violet", "", "3"]),
)
VALID = {
    "n": st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6)),
    "k": st.one_of(st.none(), st.integers(-1000, 1000), st.just(4.0)),
    "flag": st.booleans(),
    "color": st.sampled_from(["red", "green", "blue"]),
    "note": st.one_of(st.none(), st.text(max_size=5)),
}


def _outcome(check: SchemaCheck, records: list[object]) -> object:
    try:
        batch = check.check(Batch.of_records(records))
    except InvalidInputError as error:
        return [(p.loc, p.msg, p.type) for p in error.problems]
    assert batch.table is not None
    return [
        [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in column.tolist()]
        for column in batch.table
    ]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_rows_checked_a_column_at_a_time_agree_with_rows_checked_value_by_value(
    data: st.DataObject,
) -> None:
    """Plain dicts and lists of the right length (three rows or more) are checked a column at
    a time; any other mapping or sequence (here an OrderedDict, a tuple) value by value. Both
    must agree, on good rows (the same columns) and on bad ones (the same problems)."""
    rows = []
    for _ in range(data.draw(st.integers(COLUMN_CHECK_ROWS, 5))):
        row = {name: data.draw(strategy) for name, strategy in VALID.items()}
        if data.draw(st.booleans()):  # now and then, a value of any kind in one feature
            row[data.draw(st.sampled_from(SCHEMA.names))] = data.draw(VALUES)
        rows.append(row)
    as_lists = data.draw(st.booleans())
    fast = [list(r.values()) if as_lists else r for r in rows]
    slow = [tuple(r.values()) if as_lists else OrderedDict(r) for r in rows]
    check = SchemaCheck(SCHEMA, max_rows=5, max_problems=5)
    assert _outcome(check, fast) == _outcome(check, slow)
