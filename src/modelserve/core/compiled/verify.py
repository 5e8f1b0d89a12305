"""Checking a compiled form against its estimator: the rows it is checked on, and the check.

A form is used only where it gives *exactly* the estimator's own ``predict`` (and
``predict_proba``) on rows chosen to find a difference: the given rows (held-out data at
publish, synthetic rows around the training statistics at load), then one row per stress value
set into one feature of a base row —

- every split threshold the trees use and the float64 numbers either side of it (for decision
  trees, which compare ``float32(x)``, also the float32 numbers around it), carried back through
  the preprocessing to the feature it comes from where that is arithmetic (imputing, scaling);
- every category code a categorical split can see, and codes outside them;
- for a linear model, zero, the tiniest and the largest numbers, either sign, in each feature;
- every category of a categorical feature, and one it has never seen where the model takes it;
- a missing value in each feature that may be missing.

Then the rows are checked again in small batches of several sizes: a linear model's matrix
product may take another path through BLAS for another number of rows, and must agree on each.

When there are more stress values than the budget allows, a seeded sample of them is taken, so
a check is repeatable. Rows are given as one 1-D array per feature (a checked batch's columns);
``expected`` turns them into the estimator's own answers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from modelserve.core.compiled.evaluate import Inputs, Refused, answer
from modelserve.core.compiled.form import CATEGORICAL, LEAF, CompiledForm, Trees
from modelserve.core.compiled.steps import Op
from modelserve.core.manifest import FeatureSchema, FeatureSpec

Columns = tuple[np.ndarray, ...]
Expected = Callable[[Columns, bool], tuple[np.ndarray, np.ndarray | None]]
"""The estimator's ``(predictions, probabilities or None)`` for rows given as columns."""

_CODES_OUTSIDE = (-1.0, 255.0, 256.0, 300.0, 70000.0)
_EXTREMES = (0.0, -0.0, 5e-324, -5e-324, 1e-300, 1e300, -1e300, float(np.finfo(np.float64).max))
_SIZES = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 100)
"""Batch sizes the checked rows are also compared in (each a slice at another offset)."""
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_UNSEEN = "\x00never seen in training"

LOAD_ROWS = 256
"""Synthetic base rows a form is checked on at load (the held-out rows are not stored)."""
LOAD_STRESS_ROWS = 4096
"""Most stress rows a form is checked on at load."""
MEASURED_SIZES = (1, 32, 256, 2048, 8192)
"""Batch sizes at which a form and its estimator are timed, at load."""


def synthetic_columns(schema: FeatureSchema, count: int, seed: int = 0) -> Columns:
    """``count`` rows of each feature's type: numbers spread three standard deviations around
    the training mean, categories drawn from those seen, a missing value now and then in a
    feature that may be missing."""
    rng = np.random.default_rng(seed)
    columns: list[np.ndarray] = []
    for index, feature in enumerate(schema.features):
        column = _synthetic(feature, count, rng)
        if feature.nullable:
            column[index % 7 :: 7] = np.nan
        columns.append(column)
    return tuple(columns)


def _synthetic(feature: FeatureSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    if feature.categories:
        picked = [feature.categories[i] for i in rng.integers(0, len(feature.categories), count)]
        return _column(feature, picked)
    if feature.dtype == "string":
        return _column(feature, [f"text {i}" for i in rng.integers(0, 50, count)])
    if feature.dtype == "bool":
        return rng.integers(0, 2, count).astype(np.float64)
    mean, spread = feature.mean or 0.0, feature.std or 1.0
    values = mean + spread * rng.normal(scale=3.0, size=count)
    values[0] = mean
    return np.round(values) if feature.dtype == "int64" else values


def _column(feature: FeatureSpec, values: list[Any]) -> np.ndarray:
    if feature.dtype == "string":
        column = np.empty(len(values), dtype=object)
        column[:] = values
        return column
    return np.asarray(values, dtype=np.float64)


def stress_values(trees: Trees) -> list[tuple[int, float]]:
    """``(tree input, value)`` pairs at and around every split of ``trees``."""
    nodes = trees.nodes
    flags = nodes["flags"]
    numeric = (flags & (LEAF | CATEGORICAL)) == 0
    pairs = np.unique(
        np.stack([nodes["feature"][numeric].astype(np.float64), nodes["threshold"][numeric]]),
        axis=1,
    )
    values: list[tuple[int, float]] = []
    for feature, threshold in pairs.T:
        around = {threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf)}
        if trees.float32_input:
            single = np.float32(threshold)
            around |= {
                float(single),
                float(np.nextafter(single, np.float32(-np.inf))),
                float(np.nextafter(single, np.float32(np.inf))),
            }
            around = {v for v in around if abs(v) <= _FLOAT32_MAX}  # the estimator refuses more
        values.extend((int(feature), float(v)) for v in sorted(around) if np.isfinite(v))
    categorical = (flags & CATEGORICAL) != 0
    for feature in np.unique(nodes["feature"][categorical & ((flags & LEAF) == 0)]):
        codes = [float(c) for c in range(258)] + list(_CODES_OUTSIDE)
        values.extend((int(feature), c) for c in codes)
    return values


def feature_stress(form: CompiledForm, schema: FeatureSchema) -> list[tuple[int, Any]]:
    """``(feature, value)`` pairs that put the model's own features at the stress values."""
    stress: list[tuple[int, Any]] = []
    trees = form.trees
    for column, value in [] if trees is None else stress_values(trees):
        if form.columns is None:
            stress.append((column, value))
            continue
        program = form.columns[column]
        raw = _invert(program.ops, value)
        if raw is not None:
            feature = schema.features[program.source]
            stress.extend((program.source, v) for v in _near(raw, feature))
    for index, feature in enumerate(schema.features):
        if trees is None and not feature.categories and feature.dtype in ("float64", "int64"):
            stress.extend((index, v) for v in _EXTREMES if feature.dtype == "float64" or v == 0)
        if feature.categories:
            stress.extend((index, c) for c in feature.categories)
            if feature.accepts_unseen:
                stress.append((index, _unseen(feature)))
        if feature.nullable:
            stress.append((index, math.nan))
    return stress


def _invert(ops: tuple[Op, ...], value: float) -> float | None:
    """The input that ``ops`` turn into ``value``, where they are arithmetic; else None."""
    x = value
    for op in reversed(ops):
        if op[0] == "standardize":
            x = x * op[2] if op[2] is not None else x
            x = x + op[1] if op[1] is not None else x
        elif op[0] == "minmax":
            x = (x - op[2]) / op[1]
        elif op[0] != "impute":
            return None
    return x if math.isfinite(x) else None


def _near(value: float, feature: FeatureSpec) -> list[float]:
    """``value`` and its neighbours, as the feature can hold them."""
    if feature.dtype == "bool" or feature.categories:
        return []
    if feature.dtype == "int64":
        return [float(math.floor(value)), float(math.ceil(value))]
    down = np.nextafter(value, -np.inf)
    up = np.nextafter(value, np.inf)
    return [float(np.nextafter(down, -np.inf)), float(down), value, float(up)]


def _unseen(feature: FeatureSpec) -> Any:
    if feature.dtype == "string":
        return _UNSEEN
    numbers = [float(c) for c in feature.categories or [0]]
    return max(numbers) + 1


def stress_columns(
    form: CompiledForm, schema: FeatureSchema, base: Columns, *, limit: int, seed: int = 0
) -> Columns:
    """Base rows with one stress value set in each (at most ``limit`` rows, a seeded sample)."""
    values = feature_stress(form, schema)
    if len(values) > limit:
        picked = np.random.default_rng(seed).choice(len(values), size=limit, replace=False)
        values = [values[i] for i in np.sort(picked)]
    take = np.arange(len(values)) % len(base[0])
    columns = [column[take].copy() for column in base]
    for row, (feature, value) in enumerate(values):
        columns[feature][row] = value
    return tuple(columns)


def disagreement(
    form: CompiledForm, expected: Expected, columns: Columns, *, classifier: bool
) -> str | None:
    """Why the form's answers on ``columns`` are not exactly the estimator's, or None. Rows the
    form refuses (:class:`~modelserve.core.compiled.evaluate.Refused`) must be ones the estimator
    fails on too (a sample is tried one by one); the others are compared."""
    with np.errstate(all="ignore"):  # stress rows overflow on purpose, on both sides alike
        try:
            ours, ours_proba = answer(form, columns, probabilities=classifier)
        except Refused as refusal:
            why = _refusals_disagree(expected, columns, refusal.rows, classifier)
            if why is not None:
                return why
            keep = np.ones(len(columns[0]), dtype=bool)
            keep[refusal.rows] = False
            if not keep.any():
                return None
            columns = tuple(c[keep] for c in columns)
            ours, ours_proba = answer(form, columns, probabilities=classifier)
        try:
            theirs, theirs_proba = expected(columns, classifier)
        except ValueError as exc:
            return f"the estimator fails on rows the compiled form answers: {exc}"
    difference = _first_difference(ours, theirs, "prediction")
    if difference is None and classifier:
        assert ours_proba is not None  # noqa: S101 - answer() returns them when asked
        assert theirs_proba is not None  # noqa: S101
        difference = _first_difference(ours_proba, theirs_proba, "probabilities")
    if difference is None:
        return None
    rows = len(columns[0])
    return f"the compiled form disagrees with the estimator on {rows:,} checked rows: {difference}"


def _refusals_disagree(
    expected: Expected, columns: Columns, rows: list[int], classifier: bool
) -> str | None:
    """Why refusing ``rows`` is not what the estimator does (it answers one), or None."""
    for row in rows[:: max(1, len(rows) // _REFUSALS_TRIED)]:
        try:
            expected(tuple(c[row : row + 1] for c in columns), classifier)
        except ValueError:
            continue
        return f"the compiled form refuses a row the estimator answers (row {row})"
    return None


_REFUSALS_TRIED = 8


def _first_difference(ours: np.ndarray, theirs: np.ndarray, what: str) -> str | None:
    if ours.shape != theirs.shape:
        return f"{what} of shape {list(ours.shape)}, not {list(theirs.shape)}"
    if ours.dtype.kind == "f" and theirs.dtype.kind == "f":
        same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
    else:
        same = ours == theirs
    same = np.asarray(same).reshape(len(ours), -1).all(axis=1)
    if same.all():
        return None
    row = int(np.flatnonzero(~same)[0])
    return (
        f"{int((~same).sum())} rows differ (row {row}: {what} {ours[row].tolist()!r} compiled, "
        f"{theirs[row].tolist()!r} from scikit-learn)"
    )


def check(
    form: CompiledForm,
    schema: FeatureSchema,
    expected: Expected,
    *,
    classifier: bool,
    base: Columns | None = None,
    limit: int = LOAD_STRESS_ROWS,
) -> tuple[str | None, int]:
    """``(why the form disagrees or None, rows checked)``: ``base`` rows (synthetic ones when
    None) and their stress rows."""
    rows = synthetic_columns(schema, LOAD_ROWS) if base is None else base
    stress = stress_columns(form, schema, rows, limit=limit)
    checked = tuple(np.concatenate([a, b]) for a, b in zip(rows, stress, strict=True))
    reason = disagreement(form, expected, checked, classifier=classifier)
    count = len(checked[0])
    for offset, size in enumerate(_SIZES):
        if reason is not None or size > count:
            break
        start = (offset * 37) % (count - size + 1)
        batch = tuple(c[start : start + size] for c in checked)
        reason = disagreement(form, expected, batch, classifier=classifier)
    return reason, count


def fastest_up_to(
    form: CompiledForm,
    schema: FeatureSchema,
    expected: Expected,
    *,
    matrix: bool,
    repeats: int = 3,
) -> int | None:
    """The largest measured batch size up to which the form is faster than the estimator at
    every measured size; None when it is faster at all of them, 0 when at none. ``matrix``:
    the server holds this model's batches as one float64 matrix."""
    rows = synthetic_columns(schema, max(MEASURED_SIZES))
    limit: int | None = None
    for size in MEASURED_SIZES:
        columns = tuple(c[:size] for c in rows)
        inputs: Inputs = np.column_stack(columns) if matrix else columns
        ours = _best(partial(answer, form, inputs, probabilities=False), repeats)
        theirs = _best(partial(expected, columns, False), repeats)
        if ours > theirs:
            return limit or 0
        limit = size
    return None


def _best(call: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


__all__ = [
    "LOAD_STRESS_ROWS",
    "MEASURED_SIZES",
    "Columns",
    "Expected",
    "check",
    "disagreement",
    "fastest_up_to",
    "feature_stress",
    "stress_columns",
    "stress_values",
    "synthetic_columns",
]
