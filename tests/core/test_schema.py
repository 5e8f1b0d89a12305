"""The one schema check, over the three forms a decoder can hand it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelserve.core.batch import Batch, ColumnType
from modelserve.core.errors import InvalidInputError, Problem
from modelserve.core.schema import SchemaCheck
from modelserve.core.store import LoadPolicy, ModelStore
from tests.helpers import ROW

NAMES = [f"x{i}" for i in range(10)]


@pytest.fixture(scope="module")
def check(template_store) -> SchemaCheck:  # type: ignore[no-untyped-def]
    manifest = ModelStore(template_store).load("default", None, LoadPolicy()).manifest
    return SchemaCheck(manifest, max_rows=4, max_problems=3)


def _refused(check: SchemaCheck, batch: Batch) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        check.check(batch)
    return info.value


def test_every_form_gives_the_same_checked_rows(check: SchemaCheck) -> None:
    matrix = np.array([ROW, [0.0] * 10])
    by_columns = Batch.of_columns(
        [(name, matrix[:, i]) for i, name in reversed(list(enumerate(NAMES)))]
    )
    by_records = Batch.of_records([ROW, {name: 0.0 for name in NAMES}])
    for batch in (Batch.of_matrix(matrix), by_columns, by_records):
        checked = check.check(batch)
        assert checked.checked
        np.testing.assert_array_equal(checked.rows, matrix, strict=True)
    columns = check.check(Batch.of_matrix(matrix)).columns(NAMES)
    assert [(c.name, c.type) for c in columns] == [(name, ColumnType.FLOAT) for name in NAMES]
    np.testing.assert_array_equal(columns[3].values, matrix[:, 3])


def test_integer_and_float32_matrices_are_checked_as_float64(check: SchemaCheck) -> None:
    for dtype in (np.int64, np.int32, np.float32):
        rows = check.check(Batch.of_matrix(np.arange(10, dtype=dtype).reshape(1, 10))).rows
        assert rows.dtype == np.float64
        assert rows.tolist() == [list(map(float, range(10)))]


@pytest.mark.parametrize(
    ("batch", "code", "message"),
    [
        (Batch.of_matrix(np.zeros((0, 10))), "empty-batch", "instances is empty"),
        (Batch.of_records([]), "empty-batch", "instances is empty"),
        (Batch.of_matrix(np.zeros((5, 10))), "too-many-rows", "batch has 5 rows; the limit is 4"),
        (Batch.of_records([ROW] * 5), "too-many-rows", "batch has 5 rows; the limit is 4"),
        (Batch.of_matrix(np.zeros((1, 9))), "feature-count", "rows have 9 values but model"),
        (Batch.of_records([ROW[:9]]), "feature-count", "row 0 has 9 values but model"),
        (Batch.of_matrix(np.zeros(10)), "invalid-shape", "expected a 2-D batch (rows, 10)"),
        (
            Batch.of_matrix(np.array([[math.inf, *ROW[1:]]])),
            "not-finite",
            "row 0, feature 'x0': NaN and Infinity are not allowed",
        ),
        (
            Batch.of_records([[*ROW[:9], math.nan]]),
            "not-finite",
            "row 0, feature 'x9': NaN and Infinity are not allowed",
        ),
        (
            Batch.of_records([[10**400, *ROW[1:]]]),  # no double holds it
            "not-finite",
            "row 0, feature 'x0': NaN and Infinity are not allowed",
        ),
        (Batch.of_records(["row"]), "invalid-row", "row 0 must be an array of numbers or an"),
        (
            Batch.of_records([{name: 1 for name in NAMES[1:]}]),
            "missing-feature",
            "row 0 is missing feature 'x0'",
        ),
        (
            Batch.of_records([{**{name: 1 for name in NAMES}, "zz": 1}]),
            "unknown-feature",
            "row 0 has unknown feature 'zz'; model 'default' v1 takes: x0, x1",
        ),
        (
            Batch.of_records([[False, *ROW[1:]]]),
            "not-a-number",
            "row 0, feature 'x0': expected a number, got boolean false",
        ),
        (
            Batch.of_records([["a" * 30, *ROW[1:]]]),
            "not-a-number",
            f"row 0, feature 'x0': expected a number, got string '{'a' * 20}…'",
        ),
        (
            Batch.of_columns([("zz", np.zeros(1))]),
            "unknown-feature",
            "unknown input 'zz': send one 2-D tensor [rows, 10] or one 1-D tensor per feature",
        ),
        (
            Batch.of_columns([("x0", np.zeros(1)), ("x0", np.zeros(1))]),
            "duplicate-input",
            "an input name appears twice",
        ),
        (
            Batch.of_columns([("x0", np.zeros(1))]),
            "missing-feature",
            "missing inputs for features: x1, x2, x3, x4, x5, x6, x7, x8, x9",
        ),
        (
            Batch.of_columns([(name, np.zeros(1 + (name == "x3"))) for name in NAMES]),
            "shape-mismatch",
            "per-feature inputs have different lengths: [1, 2]",
        ),
    ],
)
def test_each_problem_is_found_in_one_place_and_named(
    check: SchemaCheck, batch: Batch, code: str, message: str
) -> None:
    error = _refused(check, batch)
    assert error.code == code
    assert error.message.startswith(message)


def test_problems_are_listed_in_request_order_then_the_decoders_own(check: SchemaCheck) -> None:
    trailing = (Problem(("zz",), "zz: Extra inputs are not permitted", "extra-forbidden"),)
    records = [[*ROW[:9], "a"], {"x0": None, **{name: 1 for name in NAMES[2:]}}]
    error = _refused(check, Batch.of_records(records, trailing=trailing))
    assert [(p.loc, p.type) for p in error.problems] == [
        (("instances", 0, 9), "not-a-number"),
        (("instances", 1, "x0"), "not-a-number"),
        (("instances", 1, "x1"), "missing-feature"),
    ]
    assert error.message.startswith("4 problems in the request; the first 3 are listed: row 0")


def test_a_too_long_row_is_one_problem_whatever_it_holds(check: SchemaCheck) -> None:
    error = _refused(check, Batch.of_records([["a"] * 11]))
    assert [p.type for p in error.problems] == ["feature-count"]


def test_a_checked_batch_is_not_checked_again(check: SchemaCheck) -> None:
    checked = check.check(Batch.of_matrix(np.array([ROW])))
    assert check.check(checked) is checked


def test_a_finite_hint_skips_only_the_scan_for_nan(check: SchemaCheck) -> None:
    """A decoder whose parser refuses NaN says so; the row and width checks still run."""
    hinted = Batch.of_matrix(np.zeros((1, 9)), finite=True)
    assert _refused(check, hinted).code == "feature-count"
