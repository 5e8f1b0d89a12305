"""The schema check: the one place a batch is validated against a model's manifest.

Every decoder hands its :class:`~modelserve.core.batch.Batch` to :meth:`SchemaCheck.check`,
which enforces, once each: the row limit (``MODELSERVE_MAX_ROWS``), the feature count and the
feature names, and the type of every value against its feature's ``dtype``: a finite number, a
whole number, a boolean or a string; a category the model knows (unless it takes unseen ones);
a missing value (``null``) only where the feature is ``nullable``. Only safe coercions are made
(an integer where a float belongs, ``3.0`` where an integer does); ``"3"`` is never 3. It
returns a checked batch in the model's feature order (see :mod:`modelserve.core.batch`), or
raises :class:`~modelserve.core.errors.InvalidInputError` listing the problems with where they
are (``("instances", row, feature)``), in the order the request holds them (a batch given by
columns: row by row), at most ``max_problems`` of them.

A schema of plain float features (every model of the first design) keeps its own short roads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelserve.core.batch import Batch, ColumnType, checked, checked_table
from modelserve.core.errors import InvalidInputError, Problem
from modelserve.core.manifest import Category, FeatureSchema, FeatureSpec, Manifest

_FLOAT64 = np.dtype(np.float64)
ROW_FORMS = "must be an array of numbers or an object of feature: number"
"""What a row of records may be."""
TYPED_ROW_FORMS = "must be an array of values in feature order or an object of feature: value"
"""What a row of records may be, for a model with other features than numbers."""
EXACT_INTEGER = 2**53
"""Whole numbers are carried as float64: beyond this they would not stay exact, so are refused."""
LISTED_CATEGORIES = 10
"""Most known categories an unknown-category message lists (the most frequent first)."""
_EXPECTED = {
    ColumnType.FLOAT: ("a number", "not-a-number"),
    ColumnType.INTEGER: ("a whole number", "not-an-integer"),
    ColumnType.BOOLEAN: ("a boolean", "not-a-boolean"),
    ColumnType.STRING: ("a string", "not-a-string"),
}


COLUMN_CHECK_ROWS = 3
"""The fewest typed rows checked a column at a time (fewer cost less value by value)."""

_WELL_FORMED: dict[ColumnType, set[type]] = {
    ColumnType.FLOAT: {float, int},
    ColumnType.INTEGER: {float, int},
    ColumnType.BOOLEAN: {bool},
    ColumnType.STRING: {str},
}
"""The Python types a feature's values may have (a missing one aside)."""


class SchemaCheck:
    """Validates batches against one model version's input schema."""

    def __init__(
        self, manifest: Manifest | FeatureSchema, *, max_rows: int, max_problems: int = 20
    ) -> None:
        """Checks for ``manifest``'s inputs (or a bare schema's, named "the model" in messages)."""
        if isinstance(manifest, Manifest):
            schema = manifest.input_schema
            self._model = f"model {manifest.name!r} v{manifest.version}"
        else:
            schema = manifest
            self._model = "the model"
        self.names: list[str] = schema.names
        self.count = len(self.names)
        self.max_rows = max_rows
        self.max_problems = max_problems
        self._positions = {name: index for index, name in enumerate(self.names)}
        self.specs: list[FeatureSpec] = schema.features
        self.types = [ColumnType(spec.dtype) for spec in self.specs]
        self.plain = schema.plain
        """Every feature a number that may not be missing: the first design's float matrix."""
        self.tabular = ColumnType.STRING in self.types
        """A checked batch is a table (a feature holds strings), not a matrix."""
        self._known: list[frozenset[Category] | None] = [
            frozenset(spec.categories)
            if spec.categories is not None and not spec.accepts_unseen
            else None
            for spec in self.specs
        ]
        self._row_forms = ROW_FORMS if self.plain else TYPED_ROW_FORMS
        self._value_problem = self._number_problem if self.plain else self._typed_problem
        """Each value's check, chosen once for the schema."""

    def check(self, batch: Batch) -> Batch:
        """``batch`` validated: a checked batch, or InvalidInputError naming every problem."""
        if batch.checked:
            return batch
        if batch.matrix is None:
            if batch.named is not None:
                return self._columns(batch.named, batch.return_probabilities)
            records = self._records if self.plain else self._typed_records
            return records(batch.records or [], batch)
        matrix = batch.matrix
        if not self.plain or matrix.dtype.kind not in "fiu":  # booleans, strings: no coercion
            return self._typed_matrix(matrix, batch.return_probabilities)
        if (
            batch.finite
            and matrix.ndim == 2
            and 0 < matrix.shape[0] <= self.max_rows
            and matrix.shape[1] == self.count
            and matrix.dtype == _FLOAT64
        ):  # a strict parser's float64 rows of the right shape: nothing left to find
            batch.checked = True  # already the checked form: stamped, not copied
            return batch
        return self._matrix(matrix, batch.return_probabilities, batch.finite)

    # -- the row limit, the feature count and names: each written once -----------------------

    def _rows_problem(self, rows: int) -> Problem | None:
        if rows == 0:
            return Problem(
                ("instances",), "instances is empty: send at least one row", "empty-batch"
            )
        if rows > self.max_rows:
            return Problem(
                ("instances",),
                f"batch has {rows} rows; the limit is {self.max_rows} rows per request "
                "(MODELSERVE_MAX_ROWS)",
                "too-many-rows",
            )
        return None

    def _count_problem(self, loc: tuple[str | int, ...], subject: str, values: int) -> Problem:
        return Problem(
            loc,
            f"{subject} {values} values but {self._model} takes {self.count} features: "
            f"{', '.join(self.names)}",
            "feature-count",
        )

    def _feature(self, where: str | int) -> str | int:
        return self.names[where] if isinstance(where, int) and where < self.count else where

    def _not_finite(self, row: int, where: str | int) -> Problem:
        return Problem(
            ("instances", row, where),
            f"row {row}, feature {self._feature(where)!r}: NaN and Infinity are not allowed",
            "not-finite",
        )

    # -- the three forms -----------------------------------------------------------------------

    def _check_shape(self, rows: np.ndarray) -> None:
        """Raise InvalidInputError unless ``rows`` is 2-D, within the row limit, as wide as the
        model's features."""
        if rows.ndim != 2:
            raise InvalidInputError(
                f"expected a 2-D batch (rows, {self.count}), got shape {list(rows.shape)}",
                problems=[Problem(("instances",), "not a 2-D batch", "invalid-shape")],
            )
        problem = self._rows_problem(rows.shape[0])
        if problem is None and rows.shape[1] != self.count:
            problem = self._count_problem(("instances", 0), "rows have", rows.shape[1])
        if problem is not None:
            raise InvalidInputError(problem.msg, problems=[problem])

    def _matrix(self, rows: np.ndarray, probabilities: bool, finite: bool) -> Batch:
        self._check_shape(rows)
        matrix = rows if rows.dtype == _FLOAT64 else rows.astype(np.float64)
        if not finite:
            finite_cells = np.isfinite(matrix)
            if not finite_cells.all():
                bad = np.argwhere(~finite_cells)
                problems = [self._not_finite(int(r), int(c)) for r, c in bad[: self.max_problems]]
                raise summarize(problems, len(bad))
        return checked(matrix, return_probabilities=probabilities)

    def _columns(self, named: Sequence[tuple[str, np.ndarray]], probabilities: bool) -> Batch:
        forms = (
            f"send one 2-D tensor [rows, {self.count}] or one 1-D tensor per feature "
            f"({', '.join(self.names)})"
        )
        names = [name for name, _ in named]
        unknown = [name for name in names if name not in self._positions]
        if unknown:
            raise _one(f"unknown input {unknown[0]!r}: {forms}", "unknown-feature")
        if len(set(names)) != len(names):
            raise _one("an input name appears twice", "duplicate-input")
        missing = [name for name in self.names if name not in names]
        if missing:
            raise _one(f"missing inputs for features: {', '.join(missing)}", "missing-feature")
        by_name = {name: values.reshape(-1) for name, values in named}
        lengths = {len(column) for column in by_name.values()}
        if len(lengths) != 1:
            raise _one(
                f"per-feature inputs have different lengths: {sorted(lengths)}", "shape-mismatch"
            )
        ordered = [by_name[name] for name in self.names]
        if not self.plain or any(column.dtype.kind not in "fiu" for column in ordered):
            return self._typed_columns(ordered, probabilities)
        matrix = np.column_stack([column.astype(np.float64, copy=False) for column in ordered])
        return self._matrix(matrix, probabilities, finite=False)

    def _records(self, records: Sequence[Any], batch: Batch) -> Batch:
        """Rows as written: every problem of every row, then the decoder's trailing ones."""
        self._check_records(records, batch)
        names = self.names
        matrix = np.array(
            [
                row if isinstance(row, Sequence) else [row[name] for name in names]
                for row in records
            ],
            dtype=np.float64,
        )
        return checked(matrix, return_probabilities=batch.return_probabilities)

    def _check_records(self, records: Sequence[Any], batch: Batch) -> None:
        """Raise InvalidInputError for every problem of every row, then the trailing ones."""
        problems: list[Problem] = []
        total = 0
        limit = self._rows_problem(len(records))
        if limit is not None:
            problems.append(limit)
            total = 1
        else:
            for index, row in enumerate(records):
                found = self._record_problems(index, row)
                total += len(found)
                problems.extend(found[: max(self.max_problems - len(problems), 0)])
        for problem in batch.trailing:
            total += 1
            if len(problems) < self.max_problems:
                problems.append(problem)
        if total:
            raise summarize(problems, total)

    def _record_problems(self, index: int, row: Any) -> list[Problem]:
        if isinstance(row, list | tuple):
            if len(row) > self.count:
                return [self._count_problem(("instances", index), f"row {index} has", len(row))]
            found = [
                problem
                for position, value in enumerate(row)
                if (problem := self._value_problem(index, position, value)) is not None
            ]
            if not found and len(row) < self.count:
                return [self._count_problem(("instances", index), f"row {index} has", len(row))]
            return found
        if isinstance(row, Mapping):
            found = []
            for name in self.names:
                if name not in row:
                    found.append(
                        Problem(
                            ("instances", index, name),
                            f"row {index} is missing feature {name!r}",
                            "missing-feature",
                        )
                    )
                elif (problem := self._value_problem(index, name, row[name])) is not None:
                    found.append(problem)
            found.extend(
                Problem(
                    ("instances", index, key),
                    f"row {index} has unknown feature {key!r}; {self._model} takes: "
                    f"{', '.join(self.names)}",
                    "unknown-feature",
                )
                for key in row
                if key not in self._positions
            )
            return found
        return [Problem(("instances", index), f"row {index} {self._row_forms}", "invalid-row")]

    def _number_problem(self, row: int, where: str | int, value: Any) -> Problem | None:
        """What is wrong with ``value`` as a plain float feature, if anything."""
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
            try:
                return None if math.isfinite(value) else self._not_finite(row, where)
            except OverflowError:  # an integer past every double
                return self._not_finite(row, where)
        return Problem(
            ("instances", row, where),
            f"row {row}, feature {self._feature(where)!r}: expected a number, "
            f"got {describe(value)}",
            "not-a-number",
        )

    # -- typed features: integers, booleans, strings, categories, missing values --------------

    def _typed_matrix(self, rows: np.ndarray, probabilities: bool) -> Batch:
        """A 2-D array of numbers for a model whose features are not all plain floats."""
        self._check_shape(rows)
        return self._typed_columns([rows[:, i] for i in range(self.count)], probabilities)

    def _typed_columns(self, columns: list[np.ndarray], probabilities: bool) -> Batch:
        """One 1-D array per feature, in feature order: each value checked against its type."""
        problem = self._rows_problem(len(columns[0]))
        if problem is not None:
            raise InvalidInputError(problem.msg, problems=[problem])
        found: list[tuple[int, int, Problem]] = []
        values: list[np.ndarray] = []
        for index, column in enumerate(columns):
            if column.dtype.kind in "fiu":
                values.append(self._numbers(index, column, found))
                continue
            for row, value in enumerate(column.tolist()):
                if isinstance(value, float) and math.isnan(value):
                    value = None  # noqa: PLW2901 - binary data says missing with NaN
                problem = self._typed_problem(row, index, value)
                if problem is not None:
                    found.append((row, index, problem))
            values.append(column)
        if found:
            found.sort(key=lambda item: (item[0], item[1]))
            raise summarize([p for _, _, p in found[: self.max_problems]], len(found))
        return self._assemble(
            [
                column if column.dtype == _FLOAT64 else self._cells(index, column.tolist())
                for index, column in enumerate(values)
            ],
            probabilities,
        )

    def _numbers(
        self, index: int, column: np.ndarray, found: list[tuple[int, int, Problem]]
    ) -> np.ndarray:
        """A numeric column checked whole: float64, NaN where missing (if it may be)."""
        kind = self.types[index]
        if kind in (ColumnType.STRING, ColumnType.BOOLEAN):
            # a number where text or a boolean belongs: never coerced; each row named
            for row, value in enumerate(column.tolist()):
                found.append((row, index, self._wrong_type(row, index, value)))
            return column
        floats = column.astype(np.float64)
        spec = self.specs[index]
        if column.dtype.kind == "f":
            missing = np.isnan(floats)
            if not spec.nullable:
                found.extend((int(r), index, self._missing(int(r), index)) for r in _rows(missing))
            infinite = np.isinf(floats)
            found.extend(
                (int(r), index, self._not_finite(int(r), self.names[index]))
                for r in _rows(infinite)
            )
            present = ~(missing | infinite)
        else:
            present = np.ones(len(floats), dtype=bool)
        if kind is ColumnType.INTEGER:
            bad = present & ((np.floor(floats) != floats) | (np.abs(floats) > EXACT_INTEGER))
            found.extend(
                (int(r), index, self._wrong_type(int(r), index, column[r].item()))
                for r in _rows(bad)
            )
            present &= ~bad
        if self._known[index] is not None:
            for row in _rows(present):
                problem = self._category_problem(row, index, floats[row].item())
                if problem is not None:
                    found.append((row, index, problem))
        return floats

    def _typed_records(self, records: Sequence[Any], batch: Batch) -> Batch:
        """Rows as written, for a typed schema: every problem of every row, then the rest.

        Three rows or more, all well formed, are checked a column at a time (the types each
        column holds, its categories, its numbers at once: ~1 µs a row against ~6, but ~20 µs
        a call against ~8); any doubt, and every row is checked one value at a time, which
        names each problem.
        """
        if (
            len(records) >= COLUMN_CHECK_ROWS
            and not batch.trailing
            and self._rows_problem(len(records)) is None
        ):
            columns = self._well_formed_columns(records)
            if columns is not None:
                return self._assemble(columns, batch.return_probabilities)
        self._check_records(records, batch)
        names = self.names
        cells = [
            [row[index] if isinstance(row, list | tuple) else row[name] for row in records]
            for index, name in enumerate(names)
        ]
        return self._assemble(
            [self._cells(index, column) for index, column in enumerate(cells)],
            batch.return_probabilities,
        )

    def _well_formed_columns(self, records: Sequence[Any]) -> list[np.ndarray] | None:
        """The checked columns of ``records`` when no value can be wrong, else None."""
        names = self.names
        if all(type(row) is dict and row.keys() == self._positions.keys() for row in records):
            cells = [[row[name] for row in records] for name in names]
        elif all(type(row) is list and len(row) == self.count for row in records):
            cells = [list(column) for column in zip(*records, strict=True)]
        else:
            return None
        columns = []
        for index, values in enumerate(cells):
            column = self._well_formed(index, values)
            if column is None:
                return None
            columns.append(column)
        return columns

    def _well_formed(self, index: int, values: list[Any]) -> np.ndarray | None:
        """One feature's values as its checked column, or None if any may be wrong."""
        kind = self.types[index]
        allowed = _WELL_FORMED[kind] | ({type(None)} if self.specs[index].nullable else set())
        known = self._known[index]
        if not set(map(type, values)) <= allowed or (
            known is not None and not (set(values) - {None}) <= known
        ):
            return None
        try:
            column = self._cells(index, values)
        except OverflowError:  # an integer past every double
            return None
        if kind in (ColumnType.STRING, ColumnType.BOOLEAN):
            return column
        finite = np.isfinite(column)
        ok = np.count_nonzero(finite) == len(values) - values.count(None)  # no NaN, infinity
        if ok and kind is ColumnType.INTEGER:
            whole = column[finite]
            ok = not (np.floor(whole) != whole).any() and (
                np.abs(whole).max(initial=0) <= EXACT_INTEGER
            )
        return column if ok else None

    def _cells(self, index: int, values: list[Any]) -> np.ndarray:
        """Checked values of one feature as its column: float64, or objects for strings."""
        if self.types[index] is ColumnType.STRING:
            column = np.empty(len(values), dtype=object)
            column[:] = [math.nan if value is None else value for value in values]
            return column
        return np.array(
            [math.nan if value is None else value for value in values], dtype=np.float64
        )

    def _assemble(self, columns: list[np.ndarray], probabilities: bool) -> Batch:
        if self.tabular:
            return checked_table(tuple(columns), return_probabilities=probabilities)
        return checked(np.column_stack(columns), return_probabilities=probabilities)

    def _typed_problem(self, row: int, where: str | int, value: Any) -> Problem | None:
        """What is wrong with ``value`` as feature ``where`` (a position or a name), if anything."""
        index = where if isinstance(where, int) else self._positions[where]
        if value is None:
            return None if self.specs[index].nullable else self._missing(row, index)
        kind = self.types[index]
        if kind is ColumnType.STRING:
            ok = isinstance(value, str)
        elif kind is ColumnType.BOOLEAN:
            ok = isinstance(value, bool)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            ok = False
        else:
            try:
                if not math.isfinite(value):
                    return self._not_finite(row, self.names[index])
            except OverflowError:  # an integer past every double
                return self._not_finite(row, self.names[index])
            ok = kind is ColumnType.FLOAT or (
                float(value).is_integer() and abs(value) <= EXACT_INTEGER
            )
        if not ok:
            return self._wrong_type(row, index, value)
        if self._known[index] is not None:
            return self._category_problem(row, index, value)
        return None

    def _wrong_type(self, row: int, index: int, value: Any) -> Problem:
        kind = self.types[index]
        expected, code = _EXPECTED[kind]
        name = self.names[index]
        note = ""
        if kind is ColumnType.STRING:
            note = f" (feature {name!r} was text in training; send it as a JSON string)"
        elif (
            kind is ColumnType.INTEGER
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            note = " within ±2**53" if float(value).is_integer() else ""
        return Problem(
            ("instances", row, name),
            f"row {row}, feature {name!r}: expected {expected}{note}, got {describe(value)}",
            code,
        )

    def _missing(self, row: int, index: int) -> Problem:
        name = self.names[index]
        return Problem(
            ("instances", row, name),
            f"row {row}, feature {name!r}: the value is missing (null), and {self._model} "
            "cannot take a missing value there",
            "missing-value",
        )

    def _category_problem(self, row: int, index: int, value: Any) -> Problem | None:
        known = self._known[index]
        if known is None or value in known:
            return None
        spec = self.specs[index]
        name = self.names[index]
        categories = list(spec.categories or [])
        counts = spec.category_counts
        if counts is not None and len(counts) == len(categories):  # the most frequent first
            categories = [c for _, c in sorted(zip(counts, categories, strict=True), key=_first)]
        listed = ", ".join(repr(c) for c in categories[:LISTED_CATEGORIES])
        more = len(categories) - LISTED_CATEGORIES
        listed += f", … ({more} more)" if more > 0 else ""
        return Problem(
            ("instances", row, name),
            f"row {row}, feature {name!r}: {describe(value)} is not a category {self._model} "
            f"knows; known: {listed}",
            "unknown-category",
        )


def summarize(problems: list[Problem], total: int) -> InvalidInputError:
    """One error for ``total`` problems, of which ``problems`` are listed."""
    if total == 1:
        return InvalidInputError(problems[0].msg, problems=problems)
    message = f"{total} problems in the request"
    message += f"; the first {len(problems)} are listed" if total > len(problems) else ""
    return InvalidInputError(f"{message}: {problems[0].msg}; ...", problems=problems)


def describe(value: Any) -> str:
    """A value's kind, for a message (a string or a number shown, cut short)."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, str | int | float):
        kind, text = ("string", repr(value)) if isinstance(value, str) else ("number", repr(value))
        if isinstance(value, str) and len(value) > 20:
            text = repr(value[:20] + "…")
        elif len(text) > 20:
            text = text[:20] + "…"
        return f"{kind} {text}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, Sequence):
        return "an array"
    return type(value).__name__


def _first(item: tuple[int, Category]) -> int:
    return -item[0]


def _rows(mask: np.ndarray) -> list[int]:
    return [int(row) for row in np.flatnonzero(mask)]


def _one(message: str, code: str) -> InvalidInputError:
    return InvalidInputError(message, problems=[Problem((), message, code)])
