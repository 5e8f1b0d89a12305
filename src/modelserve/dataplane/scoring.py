"""Batch scoring: stream a CSV or Parquet file through a predictor into a CSV of predictions.

Transport-agnostic like the predictor: ``modelserve predict --input data.csv`` calls
:func:`score_file`. The file is read in chunks (pyarrow's streaming CSV reader, or Parquet
row batches), so memory stays flat whatever the file's size. Each chunk is validated by the
same :meth:`~modelserve.core.predictor.Predictor.validate_array` the HTTP APIs use, and any problem
is reported with its row number in the file (1 = the first data row). Output row *i* is the
prediction for input row *i*. The output is written to a temporary file beside the target and
renamed into place only when every row was predicted, so a failed run never leaves a partial
file that looks complete.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelserve.core.errors import BatchFileError, InvalidInputError, Problem
from modelserve.core.predictor import Batch, Prediction, Predictor

DEFAULT_CHUNK_ROWS = 65_536
PREDICTION_COLUMN = "prediction"
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True, slots=True)
class BatchResult:
    rows: int
    seconds: float
    ignored_columns: tuple[str, ...]

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def file_format(path: Path) -> str | None:
    """``csv`` or ``parquet`` by the file's suffix; None for anything else."""
    return FORMATS.get(path.suffix.lower())


def count_rows(path: Path) -> int | None:
    """Data rows in the file, for a progress bar: Parquet's footer, or a fast newline count."""
    if file_format(path) == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    newlines = 0
    last = b"\n"
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            newlines += block.count(b"\n")
            last = block[-1:]
    lines = newlines + (last != b"\n")
    return max(lines - 1, 0)


def score_file(
    predictor: Predictor,
    source: Path,
    target: Path | None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    probabilities: bool = False,
    progress: Callable[[int], None] = lambda rows: None,
    stdout: IO[bytes] | None = None,
) -> BatchResult:
    """Predict every row of ``source`` into ``target`` (a CSV file; None = ``stdout``).

    Raises :class:`BatchFileError` for a file that cannot be read or lacks a feature column,
    and :class:`InvalidInputError` naming the first bad row otherwise.
    """
    kind = file_format(source)
    if kind is None:
        raise BatchFileError(f"{source}: expected a .csv or .parquet file")
    if probabilities and not predictor.is_classifier:
        raise BatchFileError(
            f"model {predictor.name!r} v{predictor.version} is a regressor; it has no class "
            "probabilities (drop --probabilities)"
        )
    features = list(predictor.feature_names)
    columns = _columns(source, kind)
    missing = [name for name in features if name not in columns]
    if missing:
        raise BatchFileError(
            f"{source} lacks the feature column(s) {', '.join(map(repr, missing))} that model "
            f"{predictor.name!r} v{predictor.version} takes (it has: {', '.join(columns)})"
        )
    ignored = tuple(name for name in columns if name not in features)
    start = time.perf_counter()
    temporary = None if target is None else target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with _open_output(temporary, stdout) as sink:
            writer: pacsv.CSVWriter | None = None
            done = 0
            for table in _chunks(source, kind, features, chunk_rows):
                matrix = _matrix(table, features, done)
                batch = _validate(predictor, matrix, probabilities, done)
                prediction = _predict(predictor, batch, done)
                out = _output_table(prediction)
                if writer is None:
                    options = pacsv.WriteOptions(quoting_style="needed")
                    writer = pacsv.CSVWriter(sink, out.schema, write_options=options)
                writer.write_table(out)
                done += table.num_rows
                progress(table.num_rows)
            if writer is None:
                raise BatchFileError(f"{source} has no data rows")
            writer.close()
        if temporary is not None and target is not None:
            temporary.replace(target)
    finally:
        if temporary is not None and temporary.exists():
            temporary.unlink()
    return BatchResult(done, time.perf_counter() - start, ignored)


# -- reading -----------------------------------------------------------------------------------


def _columns(source: Path, kind: str) -> list[str]:
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


def _chunks(source: Path, kind: str, features: list[str], chunk_rows: int) -> Iterator[pa.Table]:
    """Tables of at most ``chunk_rows`` rows holding the feature columns as float64."""
    if kind == "parquet":
        parquet = pq.ParquetFile(source)
        for columns in parquet.iter_batches(batch_size=chunk_rows, columns=features):
            yield _as_float(pa.Table.from_batches([columns]), features, source)
        return
    try:  # opening reads and converts the first block already
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(features, pa.float64()), include_columns=features
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _locate_csv_problem(source, features, exc) from exc
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    while True:
        try:
            record_batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise _locate_csv_problem(source, features, exc) from exc
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


def _locate_csv_problem(source: Path, features: list[str], exc: Exception) -> InvalidInputError:
    """pyarrow names the column but not the row: find the first bad row with the csv module."""
    with source.open(newline="", encoding="utf-8", errors="replace") as stream:
        rows = csv.reader(stream)
        header = [name.strip() for name in next(rows)]
        positions = [header.index(name) for name in features]
        for number, row in enumerate(rows, start=1):
            if not row:
                continue
            if len(row) != len(header):
                return _row_error(
                    number, None, f"has {len(row)} values but the header has {len(header)}"
                )
            for name, position in zip(features, positions, strict=True):
                cell = row[position].strip()
                try:
                    float(cell)
                except ValueError:
                    if cell:  # empty cells are reported as missing once converted
                        return _row_error(number, name, f"{cell[:40]!r} is not a number")
    return InvalidInputError(f"{source}: {exc}")


def _matrix(table: pa.Table, features: list[str], done: int) -> np.ndarray:
    for index, name in enumerate(features):
        column = table.column(index)
        if column.null_count:
            first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise _row_error(done + first + 1, name, "is empty (or NaN)")
    return np.column_stack([table.column(i).to_numpy() for i in range(len(features))])


def _validate(predictor: Predictor, matrix: np.ndarray, probabilities: bool, done: int) -> Batch:
    try:
        return predictor.validate_array(matrix, return_probabilities=probabilities)
    except InvalidInputError as exc:
        loc = exc.problems[0].loc if exc.problems else ()
        if len(loc) == 3 and isinstance(loc[1], int) and isinstance(loc[2], int):
            row, feature = loc[1], predictor.feature_names[loc[2]]
            raise _row_error(done + row + 1, feature, "is Infinity (not allowed)") from exc
        raise


def _predict(predictor: Predictor, batch: Batch, done: int) -> Prediction:
    try:
        return predictor.predict_batch(batch)
    except InvalidInputError as exc:
        loc = exc.problems[0].loc if exc.problems else ()
        if exc.code == "prediction-not-finite" and len(loc) == 2 and isinstance(loc[1], int):
            raise _row_error(
                done + loc[1] + 1, None, "gets a prediction that is not a finite number"
            ) from exc
        raise


def _row_error(row: int, feature: str | None, what: str) -> InvalidInputError:
    subject = f"row {row}" + (f", feature {feature!r}," if feature else "")
    loc: tuple[str | int, ...] = ("row", row) if feature is None else ("row", row, feature)
    message = f"{subject} {what}"
    return InvalidInputError(message, problems=[Problem(loc, message, "invalid-row")])


# -- writing -----------------------------------------------------------------------------------


def _output_table(prediction: Prediction) -> pa.Table:
    predictions = prediction.predictions
    columns: dict[str, Any] = {
        PREDICTION_COLUMN: predictions if predictions.dtype.kind in "fiub" else predictions.tolist()
    }
    if prediction.probabilities is not None:
        for index, label in enumerate(prediction.classes or []):
            columns[f"probability_{label}"] = prediction.probabilities[:, index]
    return pa.table(columns)


class _open_output:  # noqa: N801 - a context manager used like open()
    """The temporary output file, or the caller's stdout left open."""

    def __init__(self, path: Path | None, stdout: IO[bytes] | None) -> None:
        self.path = path
        self.stdout = stdout
        self.stream: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if self.path is None:
            assert self.stdout is not None  # noqa: S101 - score_file passes one or the other
            return self.stdout
        try:
            self.stream = self.path.open("wb")
        except OSError as exc:
            raise BatchFileError(f"cannot write {self.path.parent}: {exc.strerror}") from exc
        return self.stream

    def __exit__(self, *exc_info: object) -> None:
        if self.stream is not None:
            self.stream.close()


__all__ = ["BatchResult", "count_rows", "file_format", "score_file"]
