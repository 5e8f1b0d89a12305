"""Tables: typed columns read from a CSV, the pipeline built over them, and the typed schema.

:func:`read_csv` reads a CSV with a header row and finds each column's type: whole numbers,
numbers, booleans (``true``/``false``) or text; an empty cell is a missing value. When every
feature is a complete number the data stays a float matrix and the estimator is fitted on it as
in the first design; otherwise :func:`build_estimator` puts a ``ColumnTransformer`` in front of
it (imputation where a column had missing values, one-hot or ordinal encoding of categorical
columns, scaling for linear models) and the model takes a pandas DataFrame.

:func:`input_schema` describes what a fitted model takes — for the trainer's own models and for
models fitted elsewhere (``modelserve import``) alike: each feature's type and training
statistics, its categories (from the fitted encoders, else from the data), and what the model
accepts, *verified* by trial predictions rather than assumed: a missing value where
``nullable``, an unseen category where ``accepts_unseen``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve.core.batch import Batch
from modelserve.core.errors import DatasetError
from modelserve.core.manifest import (
    Category,
    FeatureSchema,
    FeatureSpec,
    FeatureType,
    InputForm,
    Task,
)
from modelserve.core.predictor import as_frame, typical_row
from modelserve.core.schema import SchemaCheck

_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
NATIVE_CATEGORIES = 250
"""Most categories a column may have for HistGradientBoosting's native categorical support
(it bins at most 255 values); a column with more is encoded as ordinal numbers instead."""
UNSEEN = "<modelserve: an unseen category>"
"""The text a trial prediction sends to learn whether a model takes an unseen category."""


@dataclass(frozen=True, slots=True)
class Column:
    """One feature column of a table: its type, whether it is categorical, how much is missing."""

    name: str
    dtype: FeatureType
    categorical: bool = False
    missing: int = 0
    distinct: int = 0
    """How many different values a categorical column holds."""


def read_csv(
    rows: list[list[str]],
    header: list[str],
    label: str,
    *,
    categorical: Sequence[str] = (),
    drop: Sequence[str] = (),
) -> tuple[list[Column], list[list[Any]]]:
    """The feature columns of a parsed CSV (header removed), typed, with their values.

    ``rows`` hold only feature cells, in ``header`` order; ``label`` names the file in errors.
    A missing value is None; whole numbers become int, numbers float, booleans bool.
    """
    unknown = [name for name in (*categorical, *drop) if name not in header]
    if unknown:
        raise DatasetError(
            f"{label} has no column {unknown[0]!r} (named by --categorical or --drop); its "
            f"columns are: {', '.join(header)}"
        )
    columns: list[Column] = []
    values: list[list[Any]] = []
    for index, name in enumerate(header):
        if name in drop:
            continue
        cells = [row[index].strip() for row in rows]
        column, typed = _typed_column(name, cells, label, categorical=name in categorical)
        columns.append(column)
        values.append(typed)
    if not columns:
        raise DatasetError(f"{label}: every feature column was dropped; at least one is needed")
    return columns, values


def _typed_column(
    name: str, cells: list[str], label: str, *, categorical: bool
) -> tuple[Column, list[Any]]:
    present = [cell for cell in cells if cell]
    missing = len(cells) - len(present)
    distinct = len(set(present))
    if not present:
        raise DatasetError(
            f"{label}: column {name!r} is empty in every row; leave it out with --drop {name}"
        )
    if all(cell in _TRUE or cell in _FALSE for cell in present):
        values = [None if not cell else cell in _TRUE for cell in cells]
        return Column(name, "bool", True, missing, distinct), values
    integers = _parsed(cells, int)
    if integers is not None:
        return Column(name, "int64", categorical, missing, distinct), integers
    numbers = _parsed(cells, float)
    if numbers is not None:
        if categorical:
            raise DatasetError(
                f"{label}: column {name!r} holds fractional numbers; --categorical takes text "
                "or whole-number columns"
            )
        for line, value in enumerate(numbers, start=1):
            if value is not None and not math.isfinite(value):
                raise DatasetError(
                    f"{label} data row {line}, column {name!r}: {cells[line - 1]!r} is not finite"
                )
        return Column(name, "float64", False, missing), numbers
    return Column(name, "string", True, missing, distinct), [cell or None for cell in cells]


def _parsed(cells: list[str], kind: type[int] | type[float]) -> list[Any] | None:
    try:
        return [kind(cell) if cell else None for cell in cells]
    except ValueError:
        return None


def is_matrix(columns: Sequence[Column], native_missing: bool) -> bool:
    """Whether the data can stay a float matrix: complete (or natively handled) numbers only."""
    return all(
        column.dtype in ("float64", "int64")
        and not column.categorical
        and (column.missing == 0 or native_missing)
        for column in columns
    )


def table(columns: Sequence[Column], values: Sequence[list[Any]], matrix: bool) -> Any:
    """The feature values as the estimator will take them: a float matrix or a DataFrame."""
    if matrix:
        return np.array(
            [[math.nan if v is None else v for v in column] for column in values],
            dtype=np.float64,
        ).T.copy()
    import pandas as pd  # noqa: PLC0415 - only mixed-type data needs it

    data: dict[str, Any] = {}
    for column, cells in zip(columns, values, strict=True):
        if column.dtype == "string":
            array = np.empty(len(cells), dtype=object)
            array[:] = [math.nan if v is None else v for v in cells]
        elif column.dtype == "bool":
            array = (
                np.array(cells, dtype=bool)
                if column.missing == 0
                else np.array([math.nan if v is None else v for v in cells], dtype=object)
            )
        elif column.dtype == "int64" and column.missing == 0:
            array = np.array(cells, dtype=np.int64)
        else:
            array = np.array([math.nan if v is None else v for v in cells], dtype=np.float64)
        data[column.name] = pd.Series(array, dtype=array.dtype, copy=False)
    return pd.DataFrame(data, copy=False)


def build_estimator(
    estimator: Any, columns: Sequence[Column], *, linear: bool, native_missing: bool
) -> Any:
    """``estimator`` behind the preprocessing that mixed-type columns need (a ``Pipeline``).

    Numbers: a median ``SimpleImputer`` where the column had missing values (not for an
    estimator that handles them natively), a ``StandardScaler`` for linear models. Categorical
    columns (text, booleans, ``--categorical``): one-hot with unseen categories ignored, or, for
    HistGradientBoosting, ordinal codes and its native categorical support (unseen and missing
    both as missing).
    """
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415 - training only
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import (  # noqa: PLC0415
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    numeric = [c for c in columns if not c.categorical]
    complete = [c.name for c in numeric if c.missing == 0 or native_missing]
    incomplete = [c.name for c in numeric if c.missing and not native_missing]
    categorical = [c for c in columns if c.categorical]
    parts: list[tuple[str, Any, list[str]]] = []
    if complete:
        parts.append(("num", StandardScaler() if linear else "passthrough", complete))
    if incomplete:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if linear:
            steps.append(("scale", StandardScaler()))
        parts.append(("impute", Pipeline(steps), incomplete))
    native = [c.name for c in categorical if c.distinct <= NATIVE_CATEGORIES]
    if hasattr(estimator, "categorical_features"):  # HistGradientBoosting*
        if categorical:
            parts.append(
                (
                    "cat",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value",
                        unknown_value=np.nan,
                        encoded_missing_value=np.nan,
                    ),
                    [c.name for c in categorical],
                )
            )
        first = len(complete) + len(incomplete)
        estimator.set_params(
            categorical_features=[first + i for i, c in enumerate(categorical) if c.name in native]
            or None
        )
    elif categorical:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore"), [c.name for c in categorical]))
    return Pipeline([("prep", ColumnTransformer(parts)), ("model", estimator)])


def describe_steps(estimator: Any) -> list[str]:
    """A ``Pipeline``'s steps, and each ``ColumnTransformer`` part with its columns."""
    steps: list[str] = []

    def walk(obj: Any, prefix: str) -> None:
        name = type(obj).__name__
        if hasattr(obj, "steps") and isinstance(obj.steps, list):
            for step, inner in obj.steps:
                walk(inner, f"{prefix}{step}")
        elif hasattr(obj, "transformers_") or hasattr(obj, "transformers"):
            parts = obj.transformers  # as declared: "passthrough" stays a name
            steps.append(f"{prefix}: {name}")
            for part, inner, cols in parts:
                if isinstance(inner, str):
                    if inner == "drop" or (part == "remainder" and not len(cols)):
                        continue
                    steps.append(f"{prefix}/{part}: {inner}({_names(cols)})")
                elif hasattr(inner, "steps"):
                    inner_names = " → ".join(type(s).__name__ for _, s in inner.steps)
                    steps.append(f"{prefix}/{part}: {inner_names}({_names(cols)})")
                else:
                    steps.append(f"{prefix}/{part}: {type(inner).__name__}({_names(cols)})")
        else:
            steps.append(f"{prefix}: {name}")

    if hasattr(estimator, "steps") and isinstance(estimator.steps, list):
        for step, inner in estimator.steps:
            walk(inner, step)
    return steps


def _names(cols: Any) -> str:
    if isinstance(cols, str):
        return cols
    return ", ".join(str(c) for c in cols)


# -- the schema of a fitted model --------------------------------------------------------------


def input_schema(
    estimator: Any,
    X: Any,
    columns: Sequence[Column],
    task: Task,
    *,
    form: InputForm,
    nullable: set[str] | None = None,
) -> FeatureSchema:
    """The typed schema of ``estimator`` fitted on ``X`` (a float matrix or a DataFrame).

    Statistics and category frequencies come from ``X``; categories from the model's fitted
    encoders where it has them, else from ``X``. Then every claim is tried: each feature
    missing, each categorical feature unseen, one row per claim; the claims the model does not
    answer (an error, or a prediction that is not finite) are dropped. ``nullable`` names the
    features that may be tried missing (the trainer's: those with missing values in training);
    None tries every feature (a model fitted elsewhere).
    """
    encoders = fitted_categories(estimator)
    features: list[FeatureSpec] = []
    for index, column in enumerate(columns):
        values = [] if X is None else _values(X, index, column.name)
        spec = _spec(column, values, encoders.get(column.name))
        if nullable is not None and column.name not in nullable:
            spec = spec.model_copy(update={"nullable": False})
        features.append(spec)
    schema = FeatureSchema(count=len(features), features=features, form=form)
    return _verified(estimator, schema, task)


def _values(X: Any, index: int, name: str) -> list[Any]:
    if isinstance(X, np.ndarray):
        return [None if math.isnan(v) else v for v in X[:, index].tolist()]
    series = X[name]
    return [None if _missing(v) else v for v in series.tolist()]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _spec(column: Column, values: list[Any], encoded: list[Category] | None) -> FeatureSpec:
    present = [v for v in values if v is not None]
    stats: dict[str, Any] = {}
    if column.dtype in ("float64", "int64") and present:
        numbers = np.asarray(present, dtype=np.float64)
        stats = {
            "min": float(numbers.min()),
            "max": float(numbers.max()),
            "mean": float(numbers.mean()),
            "std": float(numbers.std()),
        }
    categories: list[Category] | None = None
    counts: list[int] | None = None
    if column.categorical and column.dtype != "bool":
        seen: dict[Any, int] = {}
        for value in present:
            seen[value] = seen.get(value, 0) + 1
        categories = encoded if encoded is not None else sorted(seen, key=str)
        counts = [seen.get(category, 0) for category in categories]
    return FeatureSpec(
        name=column.name,
        dtype=column.dtype,
        nullable=True,
        categories=categories,
        category_counts=counts,
        accepts_unseen=categories is not None,
        **stats,
    )


def fitted_categories(estimator: Any) -> dict[str, list[Category]]:
    """Column name -> categories, from the ``OneHotEncoder``/``OrdinalEncoder`` of a fitted
    pipeline's ``ColumnTransformer`` that takes that column (after imputers, if any)."""
    found: dict[str, list[Category]] = {}
    for transformer in _column_transformers(estimator):
        for _, inner, cols in getattr(transformer, "transformers_", []):
            if isinstance(inner, str) or isinstance(cols, str) or not len(cols):
                continue
            encoder = _encoder_of(inner)
            categories = getattr(encoder, "categories_", None)
            if categories is None or len(categories) != len(cols):
                continue
            for col, values in zip(cols, categories, strict=True):
                kept = [_plain(v) for v in np.asarray(values).tolist() if not _missing(v)]
                if all(isinstance(v, str | int) and not isinstance(v, bool) for v in kept):
                    found[str(col)] = kept
    return found


def _column_transformers(estimator: Any) -> list[Any]:
    if hasattr(estimator, "transformers_"):
        return [estimator]
    if hasattr(estimator, "steps") and isinstance(estimator.steps, list):
        return [t for _, step in estimator.steps for t in _column_transformers(step)]
    return []


def _encoder_of(transformer: Any) -> Any:
    """The encoder of a transformer, or the first of a pipeline of imputers then an encoder."""
    if type(transformer).__name__ in ("OneHotEncoder", "OrdinalEncoder"):
        return transformer
    for _, step in getattr(transformer, "steps", []):
        if type(step).__name__ in ("OneHotEncoder", "OrdinalEncoder"):
            return step
        if type(step).__name__ != "SimpleImputer":
            return None
    return None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _verified(estimator: Any, schema: FeatureSchema, task: Task) -> FeatureSchema:
    """``schema`` with only the nullable/unseen claims the model answers (see input_schema)."""
    base = typical_row(schema)
    if not _answers(estimator, schema, task, [base]):
        raise DatasetError(
            "the model fails on a typical row of its data (each feature's mean or most "
            "frequent category); it cannot be served"
        )
    trials: list[tuple[int, str, list[Any]]] = []
    for index, feature in enumerate(schema.features):
        if feature.nullable:
            trials.append((index, "nullable", [*base[:index], None, *base[index + 1 :]]))
        if feature.categories is not None:
            unseen: Any = (
                UNSEEN if feature.dtype == "string" else max(int(c) for c in feature.categories) + 1
            )
            trials.append((index, "accepts_unseen", [*base[:index], unseen, *base[index + 1 :]]))
    rows = [row for _, _, row in trials]
    if _answers(estimator, schema, task, rows):
        refused: set[tuple[int, str]] = set()
    else:
        refused = {
            (index, claim)
            for index, claim, row in trials
            if not _answers(estimator, schema, task, [row])
        }
    features = [
        feature.model_copy(
            update={
                "nullable": feature.nullable and (index, "nullable") not in refused,
                "accepts_unseen": feature.categories is not None
                and (index, "accepts_unseen") not in refused,
            }
        )
        for index, feature in enumerate(schema.features)
    ]
    return schema.model_copy(update={"features": features})


def _answers(estimator: Any, schema: FeatureSchema, task: Task, rows: list[list[Any]]) -> bool:
    """Whether the model predicts ``rows`` (checked as the server would) with usable answers."""
    check = SchemaCheck(schema, max_rows=len(rows) + 1)
    try:
        batch = check.check(Batch.of_records(rows))
        inputs = batch.rows if schema.form == "matrix" else as_frame(schema, batch)
        predictions = np.asarray(estimator.predict(inputs))
        if task == "classification":
            probabilities = np.asarray(estimator.predict_proba(inputs), dtype=np.float64)
            return bool(np.isfinite(probabilities).all())
        return bool(np.isfinite(predictions.astype(np.float64)).all())
    except Exception:  # any failure means the model does not take these rows
        return False
