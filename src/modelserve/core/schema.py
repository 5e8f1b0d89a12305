"""The schema check: the one place a batch is validated against a model's manifest.

Every decoder hands its :class:`~modelserve.core.batch.Batch` to :meth:`SchemaCheck.check`,
which enforces, once each: the row limit (``MODELSERVE_MAX_ROWS``), the feature count and the
feature names, and the type of every value (a finite number). It returns a checked batch in the
model's feature order, or raises :class:`~modelserve.core.errors.InvalidInputError` listing the
problems with where they are (``("instances", row, feature)``), in the order the request holds
them, at most ``max_problems`` of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelserve.core.batch import Batch, checked
from modelserve.core.errors import InvalidInputError, Problem
from modelserve.core.manifest import Manifest

_FLOAT64 = np.dtype(np.float64)
ROW_FORMS = "must be an array of numbers or an object of feature: number"
"""What a row of records may be."""


class SchemaCheck:
    """Validates batches against one model version's input schema."""

    def __init__(self, manifest: Manifest, *, max_rows: int, max_problems: int = 20) -> None:
        self.names: list[str] = manifest.input_schema.names
        self.count = len(self.names)
        self.max_rows = max_rows
        self.max_problems = max_problems
        self._positions = {name: index for index, name in enumerate(self.names)}
        self._model = f"model {manifest.name!r} v{manifest.version}"

    def check(self, batch: Batch) -> Batch:
        """``batch`` validated: a checked batch, or InvalidInputError naming every problem."""
        if batch.checked:
            return batch
        matrix = batch.matrix
        if matrix is not None:
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
        if batch.named is not None:
            return self._columns(batch.named, batch.return_probabilities)
        return self._records(batch.records or [], batch)

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

    def _matrix(self, rows: np.ndarray, probabilities: bool, finite: bool) -> Batch:
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
        matrix = np.column_stack(
            [by_name[name].astype(np.float64, copy=False) for name in self.names]
        )
        return self._matrix(matrix, probabilities, finite=False)

    def _records(self, records: Sequence[Any], batch: Batch) -> Batch:
        """Rows as written: every problem of every row, then the decoder's trailing ones."""
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
        names = self.names
        matrix = np.array(
            [
                row if isinstance(row, Sequence) else [row[name] for name in names]
                for row in records
            ],
            dtype=np.float64,
        )
        return checked(matrix, return_probabilities=batch.return_probabilities)

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
        return [Problem(("instances", index), f"row {index} {ROW_FORMS}", "invalid-row")]

    def _value_problem(self, row: int, where: str | int, value: Any) -> Problem | None:
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


def summarize(problems: list[Problem], total: int) -> InvalidInputError:
    """One error for ``total`` problems, of which ``problems`` are listed."""
    if total == 1:
        return InvalidInputError(problems[0].msg, problems=problems)
    message = f"{total} problems in the request"
    message += f"; the first {len(problems)} are listed" if total > len(problems) else ""
    return InvalidInputError(f"{message}: {problems[0].msg}; ...", problems=problems)


def describe(value: Any) -> str:
    """A value's kind, for a message (a string shown, cut short)."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = value if len(value) <= 20 else value[:20] + "…"
        return f"string {text!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, Sequence):
        return "an array"
    return type(value).__name__


def _one(message: str, code: str) -> InvalidInputError:
    return InvalidInputError(message, problems=[Problem((), message, code)])
