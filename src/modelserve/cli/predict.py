"""``modelserve predict``: rows as JSON, or a CSV / Parquet file scored in chunks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from modelserve.cli.common import (
    StoreOption,
    VersionOption,
    err,
    escape,
    fail,
    settings_from,
)
from modelserve.core.errors import ModelServeError
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from modelserve.dataplane.plane import prepare_native
from modelserve.protocol import native

BATCH_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})
"""--input suffixes that `modelserve predict` scores as files (see modelserve.dataplane.scoring)."""


def predict_command(
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help=(
                "A .csv or .parquet file to score in chunks (header row = feature names), or "
                'JSON (file, or - for stdin): {"instances": [...]} or a bare list of rows.'
            ),
        ),
    ] = "-",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="CSV file for the predictions of a .csv/.parquet input."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name [default: the default model].")
    ] = None,
    version: VersionOption = None,
    probabilities: Annotated[
        bool, typer.Option(help="Also print class probabilities (classifiers).")
    ] = False,
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows predicted at a time for a .csv/.parquet input.")
    ] = 65_536,
    progress: Annotated[
        bool, typer.Option(help="Show a progress bar while scoring a file (on a terminal).")
    ] = True,
    store: StoreOption = None,
) -> None:
    """Predict rows with a verified model from the store, without a server.

    A .csv or .parquet --input is streamed in chunks through the same validation as the API,
    and the predictions are written as CSV to --output (standard output when omitted).
    """
    settings = settings_from(store=store)
    name = model or settings.default_model
    if input != "-" and Path(input).suffix.lower() in BATCH_SUFFIXES:
        _score_file(
            settings, name, version, Path(input), output, probabilities, chunk_rows, progress
        )
        return
    if output is not None:
        fail("--output is for a .csv or .parquet --input; JSON predictions go to stdout")
    raw = sys.stdin.buffer.read() if input == "-" else _read(Path(input))
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        fail(f"input is not valid JSON: {exc}")
    if isinstance(document, list):
        document = {"instances": document}
    if probabilities and isinstance(document, dict):
        document["return_probabilities"] = True
    try:
        predictor = ModelRegistry(settings).load_predictor(name, version)
        prepared = prepare_native(predictor, orjson.dumps(document))
        prediction = predictor.predict_batch(prepared.batch)
    except ModelServeError as exc:
        for problem in exc.problems[1:]:
            err().print(f"  {escape(problem.msg)}", highlight=False)
        fail(exc.message)
    encoded = native.encode(predictor.name, predictor.version, prediction, indent=True)
    typer.echo(encoded.body)


def _score_file(
    settings: Settings,
    name: str,
    version: int | None,
    source: Path,
    target: Path | None,
    probabilities: bool,
    chunk_rows: int,
    show_progress: bool,
) -> None:
    # pyarrow takes ~0.4 s to import: only file scoring pays for it, never `serve`.
    from modelserve.dataplane.scoring import count_rows, score_file  # noqa: PLC0415

    if not source.is_file():
        fail(f"cannot read {source}: no such file")
    try:
        registry = ModelRegistry(settings.model_copy(update={"max_rows": chunk_rows}))
        predictor = registry.load_predictor(name, version)
        total = count_rows(source)
    except ModelServeError as exc:
        fail(exc.message)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        fail(f"cannot read {source}: {exc}")
    from rich.progress import (  # noqa: PLC0415 - only this command draws a bar
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err(), disable=not show_progress, transient=True) as bar:
        task = bar.add_task(f"{name} v{predictor.version}", total=total)
        try:
            result = score_file(
                predictor,
                source,
                target,
                chunk_rows=chunk_rows,
                probabilities=probabilities,
                progress=lambda rows: bar.advance(task, rows),
                stdout=sys.stdout.buffer,
            )
        except ModelServeError as exc:
            fail(f"{source}: {exc.message}; no predictions were written")
        except (OSError, ValueError) as exc:
            fail(f"{source}: {exc}; no predictions were written")
    if result.ignored_columns:
        err().print(
            "ignored columns: " + escape(", ".join(result.ignored_columns)), highlight=False
        )
    where = "stdout" if target is None else str(target)
    err().print(
        f"{result.rows:,} rows scored with {escape(name)} v{predictor.version} -> "
        f"{escape(where)} in "
        f"{result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s)",
        highlight=False,
        soft_wrap=True,
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
