"""The batch: rows to predict, as named, typed columns.

Every decoder (native JSON, Open Inference Protocol JSON and binary, file rows) turns what it
read into a :class:`Batch`, in whichever form its wire format gives:

- :meth:`Batch.of_matrix`: one 2-D array of numbers, its columns in the model's feature order
  (a /v2 batch tensor, the native fast path, a chunk of a file). The common case, and the form
  a predictor predicts: it goes to the estimator as it is.
- :meth:`Batch.of_columns`: one 1-D array per named column (/v2, one tensor per feature).
- :meth:`Batch.of_records`: rows as the client wrote them, arrays in feature order or mappings
  by feature name, holding plain values not yet looked at (native JSON, Python callers).

One check, :class:`~modelserve.core.schema.SchemaCheck`, validates any of them against the
model's schema (row limit, feature count and names, the type of every value) and returns a
*checked* batch, in one of two forms:

- a float64 matrix in the model's feature order, when every feature is numeric (floats,
  integers and booleans as numbers, a missing value as NaN where the feature is nullable);
- a *table*: one 1-D array per feature, in feature order, when a feature holds strings (an
  object array of ``str``, a missing value as ``NaN``, as pandas reads a CSV).

Only a checked batch is predicted; :meth:`Batch.columns` names and types its columns.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve.core.errors import Problem


class ColumnType(enum.StrEnum):
    """What one column of a checked batch holds (the manifest's ``dtype`` of its feature)."""

    FLOAT = "float64"
    """Finite numbers, as float64 (NaN where a nullable feature is missing)."""
    INTEGER = "int64"
    """Whole numbers within int64, as float64 in a matrix (NaN where missing)."""
    BOOLEAN = "bool"
    """``True``/``False``, as 1.0/0.0 in a matrix (NaN where missing)."""
    STRING = "string"
    """Text, as an object array of ``str`` (NaN where missing)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One named, typed column of a checked batch (a view on its matrix, not a copy)."""

    name: str
    type: ColumnType
    values: np.ndarray


class Batch:
    """Rows to predict, in one of three forms (see the module), and whether it is checked.

    ``return_probabilities`` says whether class probabilities are wanted too. ``trailing`` holds
    problems a decoder found in the request *after* its rows (a bad option, an unknown key):
    the check reports them after the rows' own, so one answer lists every problem in the order
    the request holds them.
    """

    __slots__ = (
        "checked",
        "finite",
        "matrix",
        "named",
        "records",
        "return_probabilities",
        "table",
        "trailing",
    )

    def __init__(
        self,
        matrix: np.ndarray | None = None,
        named: Sequence[tuple[str, np.ndarray]] | None = None,
        records: Sequence[Any] | None = None,
        return_probabilities: bool = False,
        trailing: tuple[Problem, ...] = (),
        finite: bool = False,
        checked: bool = False,
    ) -> None:
        self.matrix = matrix
        self.finite = finite
        self.named = named
        self.records = records
        self.return_probabilities = return_probabilities
        self.trailing = trailing
        self.checked = checked
        self.table: tuple[np.ndarray, ...] | None = None

    @classmethod
    def of_matrix(
        cls, matrix: np.ndarray, *, return_probabilities: bool = False, finite: bool = False
    ) -> Batch:
        """A batch of rows, as a 2-D array whose columns are in the model's feature order.

        ``finite``: the decoder's parser refuses NaN and Infinity (strict JSON does), so the
        check need not look for them again.
        """
        return cls(matrix, return_probabilities=return_probabilities, finite=finite)

    @classmethod
    def of_columns(
        cls, columns: Sequence[tuple[str, np.ndarray]], *, return_probabilities: bool = False
    ) -> Batch:
        """A batch given column by column: ``(name, 1-D array)`` pairs, in any order."""
        return cls(named=columns, return_probabilities=return_probabilities)

    @classmethod
    def of_records(
        cls,
        records: Sequence[Any],
        *,
        return_probabilities: bool = False,
        trailing: tuple[Problem, ...] = (),
    ) -> Batch:
        """A batch of rows as written: arrays in feature order or mappings by feature name."""
        return cls(records=records, return_probabilities=return_probabilities, trailing=trailing)

    @property
    def rows(self) -> np.ndarray:
        """The matrix of a checked numeric batch (rows in request order, features in order)."""
        if self.matrix is None or not self.checked:
            raise ValueError("only a checked batch has rows to predict (SchemaCheck.check)")
        return self.matrix

    def __len__(self) -> int:
        """How many rows the batch has (of a batch given by columns: its first column's)."""
        if self.matrix is not None:
            return len(self.matrix)
        if self.table is not None:
            return len(self.table[0])
        if self.records is not None:
            return len(self.records)
        return len(self.named[0][1]) if self.named else 0

    def columns(
        self, names: Sequence[str], types: Sequence[ColumnType] | None = None
    ) -> list[Column]:
        """The columns of a checked batch, named by the schema's ``names`` (and ``types``)."""
        if not self.checked:
            raise ValueError("only a checked batch has typed columns (SchemaCheck.check)")
        kinds = list(types) if types is not None else [ColumnType.FLOAT] * len(names)
        if self.table is not None:
            return [Column(n, t, v) for n, t, v in zip(names, kinds, self.table, strict=True)]
        rows = self.rows
        return [Column(n, t, rows[:, i]) for i, (n, t) in enumerate(zip(names, kinds, strict=True))]

    def __repr__(self) -> str:
        form = (
            "matrix"
            if self.matrix is not None
            else "table"
            if self.table is not None
            else "columns"
            if self.named
            else "records"
        )
        state = "checked" if self.checked else "unchecked"
        return f"Batch({len(self)} rows, {form}, {state})"


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer for a batch, row for row."""

    predictions: np.ndarray
    classes: list[Any] | None = None
    probabilities: np.ndarray | None = None


def checked(matrix: np.ndarray, *, return_probabilities: bool = False) -> Batch:
    """A batch already known to fit the schema: what the check returns, or a merge of such."""
    return Batch(matrix, None, None, return_probabilities, (), True, True)


def checked_table(columns: tuple[np.ndarray, ...], *, return_probabilities: bool = False) -> Batch:
    """A checked batch given as one 1-D array per feature, in feature order (see the module)."""
    batch = Batch(None, None, None, return_probabilities, (), True, True)
    batch.table = columns
    return batch


def merge(batches: Sequence[Batch], *, return_probabilities: bool) -> Batch:
    """Checked batches of one model as one, rows in order."""
    first = batches[0]
    probabilities = return_probabilities
    if len(batches) == 1 and first.return_probabilities == probabilities:
        return first
    if first.table is not None:
        return checked_table(
            tuple(
                np.concatenate([b.table[i] for b in batches if b.table is not None])
                for i in range(len(first.table))
            ),
            return_probabilities=probabilities,
        )
    return checked(np.concatenate([b.rows for b in batches]), return_probabilities=probabilities)
