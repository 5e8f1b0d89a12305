"""Checking a compiled form against its estimator: the rows it is checked on, and the check.

A form is used only where it gives *exactly* the estimator's own ``predict`` (and
``predict_proba``) on rows chosen to find a difference: the given rows (held-out data at
publish), then one row per stress value set into one feature of a base row — every split
threshold the trees use and the float64 numbers either side of it (for decision trees, which
compare ``float32(x)``, also the float32 numbers around it), every category code a categorical
split can see plus codes outside them, and a missing value in each feature that may be missing.
When there are more thresholds than the budget allows, a seeded sample of them is taken, so a
check is repeatable.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from modelserve.core.compiled.evaluate import answer
from modelserve.core.compiled.form import CATEGORICAL, LEAF, CompiledForm, Trees
from modelserve.core.manifest import FeatureSchema

_CODES_OUTSIDE = (-1.0, 255.0, 256.0, 300.0, 70000.0)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def synthetic_rows(schema: FeatureSchema, count: int, seed: int = 0) -> np.ndarray:
    """``count`` rows spread around each feature's training mean (three standard deviations)."""
    rng = np.random.default_rng(seed)
    mean = np.array([f.mean or 0.0 for f in schema.features])
    spread = np.array([f.std or 1.0 for f in schema.features])
    rows = mean + spread * rng.normal(scale=3.0, size=(count, len(mean)))
    return np.vstack([mean, rows])


def stress_values(trees: Trees) -> list[tuple[int, float]]:
    """``(feature, value)`` pairs at and around every split of ``trees``."""
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
        if trees.float32_input:  # the estimator refuses what float32 cannot hold
            around = {v for v in around if abs(v) <= _FLOAT32_MAX}
        values.extend((int(feature), float(v)) for v in sorted(around) if np.isfinite(v))
    categorical = (flags & CATEGORICAL) != 0
    for feature in np.unique(nodes["feature"][categorical & ((flags & LEAF) == 0)]):
        codes = [float(c) for c in range(258)] + list(_CODES_OUTSIDE)
        values.extend((int(feature), c) for c in codes)
    return values


def stress_rows(
    trees: Trees,
    base: np.ndarray,
    *,
    nullable: list[bool],
    limit: int,
    seed: int = 0,
) -> np.ndarray:
    """Base rows with one stress value set in each (at most ``limit`` rows, sampled evenly)."""
    values = stress_values(trees)
    values += [(i, float("nan")) for i, may_miss in enumerate(nullable) if may_miss]
    if len(values) > limit:
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(values), size=limit, replace=False)
        values = [values[i] for i in np.sort(picked)]
    rows = base[np.arange(len(values)) % len(base)].copy()
    for row, (feature, value) in enumerate(values):
        rows[row, feature] = value
    return rows


def disagreement(
    form: CompiledForm, estimator: Any, rows: np.ndarray, *, classifier: bool
) -> str | None:
    """Why the form's answers on ``rows`` are not exactly the estimator's, or None if they are."""
    ours, ours_proba = answer(form, rows, probabilities=classifier)
    theirs = np.asarray(estimator.predict(rows))
    difference = _first_difference(ours, theirs, "prediction")
    if difference is None and classifier:
        theirs_proba = np.asarray(estimator.predict_proba(rows))
        assert ours_proba is not None  # noqa: S101 - answer() returns them when asked
        difference = _first_difference(ours_proba, theirs_proba, "probabilities")
    if difference is None:
        return None
    return f"the compiled form disagrees with the estimator on {len(rows):,} checked rows: " + (
        difference
    )


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


LOAD_ROWS = 256
"""Synthetic base rows a form is checked on at load (the held-out rows are not stored)."""
LOAD_STRESS_ROWS = 4096
"""Most stress rows a form is checked on at load."""


def check(
    form: CompiledForm,
    estimator: Any,
    schema: FeatureSchema,
    *,
    classifier: bool,
    base: np.ndarray | None = None,
    limit: int = LOAD_STRESS_ROWS,
) -> tuple[str | None, int]:
    """``(why the form disagrees or None, rows checked)``: ``base`` rows (synthetic ones around
    the training means when None) and their stress rows."""
    rows = synthetic_rows(schema, LOAD_ROWS) if base is None else base
    stress = stress_rows(
        form.trees, rows, nullable=[f.nullable for f in schema.features], limit=limit
    )
    checked = np.vstack([rows, stress])
    return disagreement(form, estimator, checked, classifier=classifier), len(checked)


MEASURED_SIZES = (1, 32, 256, 2048)
"""Batch sizes at which a form and its estimator are timed, at load."""


def fastest_up_to(
    form: CompiledForm, estimator: Any, schema: FeatureSchema, *, repeats: int = 3
) -> int | None:
    """The largest measured batch size up to which the form is faster than the estimator at
    every measured size; None when it is faster at all of them, 0 when at none."""
    rows = synthetic_rows(schema, max(MEASURED_SIZES))
    limit: int | None = None
    for size in MEASURED_SIZES:
        batch = np.ascontiguousarray(rows[:size])
        ours = _best(lambda b=batch: answer(form, b, probabilities=False), repeats)
        theirs = _best(lambda b=batch: estimator.predict(b), repeats)
        if ours > theirs:
            return limit or 0
        limit = size
    return None


def _best(call: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


__all__ = [
    "LOAD_STRESS_ROWS",
    "MEASURED_SIZES",
    "check",
    "disagreement",
    "fastest_up_to",
    "stress_rows",
    "stress_values",
    "synthetic_rows",
]
