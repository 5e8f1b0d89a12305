"""Batch scoring: stream a CSV or Parquet file through a predictor into a CSV of predictions.

``modelserve predict --input data.csv`` calls :func:`score_file`: the data plane's steps for a
file. It is read in chunks (:mod:`modelserve.protocol.table`), so memory stays flat whatever the
file's size; each chunk is checked by the model's schema check, as every request is, and any
problem is reported with its row number in the file (1 = the first data row). Output row *i* is the
prediction for input row *i*. The output is written to a temporary file beside the target and
renamed into place only when every row was predicted, so a failed run never leaves a partial
file that looks complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelserve.core.batch import Batch, Prediction
from modelserve.core.errors import BatchFileError, InvalidInputError
from modelserve.core.predictor import Predictor
from modelserve.protocol import table

DEFAULT_CHUNK_ROWS = 65_536
PREDICTION_COLUMN = table.PREDICTION_COLUMN
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
    columns = table.columns(source, kind)
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
            plain = predictor.schema.plain
            types = None if plain else [f.dtype for f in predictor.manifest.input_schema.features]
            for chunk in table.read_chunks(source, kind, features, chunk_rows, types):
                decoded = (
                    table.decode(chunk, features, done, probabilities=probabilities)
                    if plain
                    else table.decode_columns(chunk, features, probabilities=probabilities)
                )
                batch = _check(predictor, decoded, done)
                prediction = _predict(predictor, batch, done)
                out = table.encode(prediction)
                if writer is None:
                    options = pacsv.WriteOptions(quoting_style="needed")
                    writer = pacsv.CSVWriter(sink, out.schema, write_options=options)
                writer.write_table(out)
                done += chunk.num_rows
                progress(chunk.num_rows)
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


def _check(predictor: Predictor, batch: Batch, done: int) -> Batch:
    try:
        return predictor.check(batch)
    except InvalidInputError as exc:
        loc = exc.problems[0].loc if exc.problems else ()
        if len(loc) == 3 and isinstance(loc[1], int) and isinstance(loc[2], int):
            row, feature = loc[1], predictor.feature_names[loc[2]]
            raise table.row_error(done + row + 1, feature, "is Infinity (not allowed)") from exc
        if len(loc) == 3 and isinstance(loc[1], int) and isinstance(loc[2], str):
            # "row 3, feature 'sex': expected ..." -> the row's number in the file
            what = exc.problems[0].msg.split(": ", 1)[-1]
            if exc.problems[0].type == "missing-value":
                what = "is empty, and the model cannot take a missing value there"
            raise table.row_error(done + loc[1] + 1, loc[2], what) from exc
        raise


def _predict(predictor: Predictor, batch: Batch, done: int) -> Prediction:
    try:
        return predictor.predict_batch(batch)
    except InvalidInputError as exc:
        loc = exc.problems[0].loc if exc.problems else ()
        if exc.code == "prediction-not-finite" and len(loc) == 2 and isinstance(loc[1], int):
            raise table.row_error(
                done + loc[1] + 1, None, "gets a prediction that is not a finite number"
            ) from exc
        raise


# -- writing -----------------------------------------------------------------------------------


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
