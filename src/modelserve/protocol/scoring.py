"""The scoring contracts other servers taught clients: MLflow's (``mlflow models serve``, the
SageMaker container) and KServe's V1 protocol. One decoder, one encoder.

:func:`decode` reads the bodies ``mlflow models serve`` accepts at ``POST /invocations``:

- ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (pandas' ``split`` orient;
  an ``index`` is allowed and ignored),
- ``{"dataframe_records": [{"column": value, ...}, ...]}``,
- ``{"instances": [...]}`` (rows as arrays in feature order or objects by name; also KServe
  V1's ``POST /v1/models/{name}:predict`` body),
- ``{"inputs": {"column": [values...], ...}}`` or ``{"inputs": [rows...]}``,
- ``text/csv``: a header row of column names, then one row per line (an empty cell is missing);

each as a batch of records for the model's one schema check. :func:`encode` answers
``{"predictions": [...]}`` as both servers do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

import orjson
import pydantic_core
from pydantic import Field

from modelserve.core.batch import Batch, Prediction
from modelserve.core.errors import InvalidInputError, Problem
from modelserve.protocol.wire import Encoded, WireModel

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
"""The top-level keys that say which form a JSON body takes (exactly one of them)."""
CSV_TYPES = ("text/csv", "application/csv")


class ScoringResponse(WireModel):
    """The answer of ``mlflow models serve`` and of KServe's V1 protocol."""

    predictions: list[Any] = Field(description="One prediction per row, in request order.")


def decode(body: bytes, content_type: str | None, types: Mapping[str, str]) -> Batch:
    """A scoring request body (JSON, or CSV by ``content_type``) as a batch of records.

    ``types`` maps each feature to its manifest dtype: a CSV cell is read as that type (text
    stays text, so a postcode ``"02134"`` is not a number); a cell that is not one is passed on
    as text for the schema check to name.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in CSV_TYPES:
        return _csv(body, types)
    try:
        document = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise _invalid(f"request body is not valid JSON: {exc}", "invalid-json", ()) from None
    if not isinstance(document, dict):
        raise _invalid(
            f"the body must be a JSON object with one of: {', '.join(FORMATS)}",
            "invalid-request",
            (),
        )
    given = [key for key in FORMATS if key in document]
    extra = [key for key in document if key not in FORMATS]
    if len(given) != 1 or extra:
        reason = (
            f"unknown key {extra[0]!r}"
            if extra
            else "more than one of them"
            if given
            else "none of them"
        )
        raise _invalid(
            f"the body must hold exactly one of: {', '.join(FORMATS)} ({reason})",
            "invalid-request",
            (extra[0],) if extra else (),
        )
    key = given[0]
    value = document[key]
    if key == "dataframe_split":
        return _split(value)
    if key == "dataframe_records" or (key in ("instances", "inputs") and isinstance(value, list)):
        if not isinstance(value, list):
            raise _invalid(f"{key} must be an array of rows", "list-type", (key,))
        return Batch.of_records(value)
    if key == "inputs" and isinstance(value, dict):
        return _columnar(value, key)
    raise _invalid(f"{key} must be an array of rows", "list-type", (key,))


def _split(value: Any) -> Batch:
    if not isinstance(value, dict):
        raise _invalid(
            "dataframe_split must be an object with columns and data",
            "invalid-request",
            ("dataframe_split",),
        )
    unknown = [key for key in value if key not in ("columns", "data", "index")]
    columns, data = value.get("columns"), value.get("data")
    if unknown or not isinstance(columns, list) or not isinstance(data, list):
        raise _invalid(
            "dataframe_split must be an object with columns (an array of names) and data (an "
            "array of rows)" + (f"; unknown key {unknown[0]!r}" if unknown else ""),
            "invalid-request",
            ("dataframe_split",),
        )
    if not all(isinstance(name, str) for name in columns) or len(set(columns)) != len(columns):
        raise _invalid(
            "dataframe_split.columns must be distinct names",
            "invalid-request",
            ("dataframe_split", "columns"),
        )
    records: list[Any] = []
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise _invalid(
                f"dataframe_split.data row {index} must be an array of {len(columns)} values, "
                "one per column",
                "invalid-row",
                ("dataframe_split", "data", index),
            )
        records.append(dict(zip(columns, row, strict=True)))
    return Batch.of_records(records)


def _columnar(value: Mapping[str, Any], key: str) -> Batch:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        raise _invalid(
            f"{key} must map each column to an array of values, all of one length",
            "invalid-request",
            (key,),
        )
    rows = lengths.pop() if lengths else 0
    names = list(value)
    return Batch.of_records([{name: value[name][i] for name in names} for i in range(rows)])


def _csv(body: bytes, types: Mapping[str, str]) -> Batch:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid("the CSV body is not UTF-8 text", "invalid-csv", ()) from None
    try:
        lines = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    except csv.Error as exc:
        raise _invalid(f"the CSV body cannot be read: {exc}", "invalid-csv", ()) from None
    if not lines:
        raise _invalid("the CSV body is empty: send a header row, then rows", "invalid-csv", ())
    header = [name.strip() for name in lines[0]]
    records: list[dict[str, Any]] = []
    for index, row in enumerate(lines[1:]):
        if len(row) != len(header):
            raise _invalid(
                f"CSV row {index + 1} has {len(row)} values but the header has {len(header)}",
                "invalid-csv",
                ("csv", index),
            )
        records.append(
            {name: _cell(cell, types.get(name)) for name, cell in zip(header, row, strict=True)}
        )
    return Batch.of_records(records)


def _cell(cell: str, dtype: str | None) -> Any:
    """A CSV cell as the value JSON would carry for a feature of ``dtype``: None when empty."""
    text = cell.strip()
    if not text:
        return None
    if dtype == "string":
        return cell
    if dtype == "bool":
        lowered = text.lower()
        return lowered == "true" if lowered in ("true", "false") else cell
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return cell


def encode(prediction: Prediction) -> Encoded:
    """``{"predictions": [...]}``: labels or numbers, row for row."""
    values = prediction.predictions
    body = orjson.dumps(
        {"predictions": values if values.dtype.kind in "fiub" else values.tolist()},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    return Encoded(body, None, len(values))


def _invalid(message: str, code: str, loc: tuple[str | int, ...]) -> InvalidInputError:
    return InvalidInputError(message, problems=[Problem(loc, message, code)])
