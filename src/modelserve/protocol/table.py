"""File rows: the decoder of CSV and Parquet files into batches, and the CSV answer's encoder.

:func:`read_chunks` streams a file as tables of at most ``chunk_rows`` rows holding the feature
columns (pyarrow's streaming CSV reader, or Parquet row batches), :func:`decode` turns one into a
:class:`~modelserve.core.batch.Batch`, and :func:`encode` turns a prediction into the table of
the output CSV. Problems are named by their row in the file (1 = the first data row).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelserve.core.batch import Batch, Prediction
from modelserve.core.errors import BatchFileError, InvalidInputError, Problem

PREDICTION_COLUMN = "prediction"


def columns(source: Path, kind: str) -> list[str]:
    try:
        if kind == "parquet":
            return list(pq.ParquetFile(source).schema_arrow.names)
        with source.open(newline="", encoding="utf-8") as stream:
            header = next(csv.reader(stream), None)
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise BatchFileError(f"cannot read {source}: {exc}") from exc
    if not header:
        raise BatchFileError(f"{source} is empty: expected a header row of column names")
    return [name.strip() for name in header]


_ARROW_TYPES = {"float64": pa.float64(), "int64": pa.float64(), "bool": pa.bool_()}


def read_chunks(
    source: Path,
    kind: str,
    features: list[str],
    chunk_rows: int,
    types: Sequence[str] | None = None,
) -> Iterator[pa.Table]:
    """Tables of at most ``chunk_rows`` rows holding the feature columns: as float64, or, given
    the features' ``types`` (the manifest's dtypes), each as its type (text as strings, an
    empty cell as null, whole numbers as float64 for the schema check to judge)."""
    if kind == "parquet":
        parquet = pq.ParquetFile(source)
        for columns in parquet.iter_batches(batch_size=chunk_rows, columns=features):
            chunk = pa.Table.from_batches([columns])
            yield chunk if types is not None else _as_float(chunk, features, source)
        return
    column_types = (
        dict.fromkeys(features, pa.float64())
        if types is None
        else {
            name: _ARROW_TYPES.get(kind, pa.string())
            for name, kind in zip(features, types, strict=True)
        }
    )
    try:  # opening reads and converts the first block already
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            convert_options=pacsv.ConvertOptions(
                column_types=column_types,
                include_columns=features,
                strings_can_be_null=True,
                true_values=["true", "True", "TRUE"],
                false_values=["false", "False", "FALSE"],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _locate_csv_problem(source, features, exc, types) from exc
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    while True:
        try:
            record_batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise _locate_csv_problem(source, features, exc, types) from exc
        pending.append(record_batch)
        pending_rows += record_batch.num_rows
        while pending_rows >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows:
        yield pa.Table.from_batches(pending)


def _as_float(table: pa.Table, features: list[str], source: Path) -> pa.Table:
    for name in features:
        column_type = table.schema.field(name).type
        if not (pa.types.is_integer(column_type) or pa.types.is_floating(column_type)):
            raise BatchFileError(
                f"{source}: column {name!r} holds {column_type}, not numbers; the model's "
                "features are numeric"
            )
    return table.cast(pa.schema([pa.field(name, pa.float64()) for name in features]))


def _locate_csv_problem(
    source: Path, features: list[str], exc: Exception, types: Sequence[str] | None = None
) -> InvalidInputError:
    """pyarrow names the column but not the row: find the first bad row with the csv module."""
    with source.open(newline="", encoding="utf-8", errors="replace") as stream:
        rows = csv.reader(stream)
        header = [name.strip() for name in next(rows)]
        positions = [header.index(name) for name in features]
        for number, row in enumerate(rows, start=1):
            if not row:
                continue
            if len(row) != len(header):
                return row_error(
                    number, None, f"has {len(row)} values but the header has {len(header)}"
                )
            for name, position in zip(features, positions, strict=True):
                cell = row[position].strip()
                try:
                    float(cell)
                except ValueError:
                    if cell and (types is None or types[features.index(name)] != "string"):
                        what = (
                            "a boolean"
                            if types and types[features.index(name)] == "bool"
                            else "a number"
                        )
                        return row_error(number, name, f"{cell[:40]!r} is not {what}")
    return InvalidInputError(f"{source}: {exc}")


def decode(
    table: pa.Table, features: list[str], done: int, *, probabilities: bool = False
) -> Batch:
    """One chunk of ``features`` columns (``done`` rows came before it) as a batch."""
    for index, name in enumerate(features):
        column = table.column(index)
        if column.null_count:
            first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise row_error(done + first + 1, name, "is empty (or NaN)")
    matrix = np.column_stack([table.column(i).to_numpy() for i in range(len(features))])
    return Batch.of_matrix(matrix, return_probabilities=probabilities)


def decode_columns(table: pa.Table, features: list[str], *, probabilities: bool = False) -> Batch:
    """One chunk as a batch of named columns, nulls as None (or NaN in numbers), for a model
    whose features are not all plain numbers (the schema check judges every value)."""
    return Batch.of_columns(
        [
            (name, table.column(index).to_numpy(zero_copy_only=False))
            for index, name in enumerate(features)
        ],
        return_probabilities=probabilities,
    )


def row_error(row: int, feature: str | None, what: str) -> InvalidInputError:
    subject = f"row {row}" + (f", feature {feature!r}," if feature else "")
    loc: tuple[str | int, ...] = ("row", row) if feature is None else ("row", row, feature)
    message = f"{subject} {what}"
    return InvalidInputError(message, problems=[Problem(loc, message, "invalid-row")])


# -- writing -----------------------------------------------------------------------------------


def encode(prediction: Prediction) -> pa.Table:
    predictions = prediction.predictions
    columns: dict[str, Any] = {
        PREDICTION_COLUMN: predictions if predictions.dtype.kind in "fiub" else predictions.tolist()
    }
    if prediction.probabilities is not None:
        for index, label in enumerate(prediction.classes or []):
            columns[f"probability_{label}"] = prediction.probabilities[:, index]
    return pa.table(columns)
