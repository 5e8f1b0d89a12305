"""Answers from a compiled form: raw scores from its model, then the head's answer.

Each step copies what the estimator's own ``predict`` / ``predict_proba`` does (the averaging
of a forest, the ``>`` or ``>=`` of a binary classifier, SciPy's ``expit``, scikit-learn's
``softmax``; for a linear model, the same matrix product on the same memory layout), so that
the two agree to the last bit.
"""

from __future__ import annotations

from types import ModuleType
from typing import Literal

import numpy as np

from modelserve.core.compiled.form import CompiledForm, Linear, Trees

_FLOAT32_MAX = float(np.finfo(np.float32).max)

Inputs = np.ndarray | tuple[np.ndarray, ...]
"""A checked batch's values: its float64 matrix, or one 1-D array per feature."""

_kernel: ModuleType | None = None


def _machine_code() -> ModuleType:
    """The kernel module, imported (with numba) and warmed up when a form is first evaluated."""
    global _kernel  # noqa: PLW0603 - imported once, on first use
    if _kernel is None:
        from modelserve.core.compiled import kernel  # noqa: PLC0415

        kernel.warm_up()
        _kernel = kernel
    return _kernel


def scores(trees: Trees, X: np.ndarray) -> np.ndarray:
    """Raw scores, rows x outputs: the trees' sum onto ``init`` (averaged for a forest)."""
    out: np.ndarray = _machine_code().scores(
        np.ascontiguousarray(X, dtype=np.float64),
        trees.nodes,
        trees.roots,
        trees.columns,
        trees.values,
        trees.category_refs,
        trees.category_sets,
        trees.init,
        trees.average,
        trees.float32_input,
    )
    return out


def linear_scores(linear: Linear, X: np.ndarray) -> np.ndarray:
    """Raw scores, rows x outputs: ``X @ coef.T + intercept`` as scikit-learn computes it.

    A dense product is NumPy's (BLAS) on ``X`` and ``coef`` laid out as the estimator has them:
    the same call on the same strides sums in the same order. A sparse product (scikit-learn
    given a sparse matrix) adds each row's terms in column order onto zero, as SciPy does.
    """
    coef = linear.coefficients
    intercept = linear.intercept
    raw: np.ndarray
    if linear.layout == "sparse":
        product: np.ndarray = _machine_code().sequential_dot(
            np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(coef)
        )
        raw = product[:, 0] + intercept[0] if linear.vector else product + intercept
    else:
        if linear.layout == "F":
            X = _column_ordered(X)
        raw = X @ coef[0] + intercept[0] if linear.vector else X @ coef.T + intercept
    return raw[:, np.newaxis] if linear.vector else raw


def _column_ordered(X: np.ndarray) -> np.ndarray:
    """``X`` with the strides of a matrix that pandas gives (the transpose of a row-ordered
    one), which a row of one or a column of one would otherwise not have."""
    out = np.empty((X.shape[1], X.shape[0])).T
    out[...] = X
    return out


def model_matrix(form: CompiledForm, inputs: Inputs) -> np.ndarray:
    """The float64 matrix the trees take: the inputs through the form's column programs."""
    plan = form.plan
    if plan is None:
        return inputs if isinstance(inputs, np.ndarray) else np.column_stack(inputs)
    columns = (
        inputs if isinstance(inputs, tuple) else tuple(inputs[:, i] for i in range(inputs.shape[1]))
    )
    return plan.run(columns)


Why = Literal["float32", "finite", "missing"]
"""Why a model refuses a preprocessed value: beyond float32 (or infinite), for trees that compare
in float32; not a finite number, for a linear model; missing (NaN), for a model that takes none."""


class Refused(ValueError):  # noqa: N818 - a condition of the rows, named for them
    """Rows that a pipeline's preprocessing takes to values its model refuses (the estimator
    itself fails on them, and so must the form): ``rows``, in order, and ``why``."""

    def __init__(self, rows: list[int], why: Why) -> None:
        super().__init__(f"rows {rows} are refused after preprocessing ({why})")
        self.rows = rows
        self.why = why


def answer(
    form: CompiledForm, inputs: Inputs, *, probabilities: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(predictions, probabilities or None)`` for a checked batch's values.

    Raises Refused where a pipeline's preprocessing takes a value to one its model refuses (the
    model's own features are checked before, by the predictor and the schema).
    """
    matrix = model_matrix(form, inputs)
    model = form.model
    if form.columns is not None:
        refusal = (
            refused_rows(matrix, float32=False, missing=True, infinite=True)
            if isinstance(model, Linear)
            else refused_rows(matrix, float32=model.float32_input, missing=not model.takes_missing)
        )
        if refusal is not None:
            raise refusal
    raw = linear_scores(model, matrix) if isinstance(model, Linear) else scores(model, matrix)
    return _head(form, raw, probabilities=probabilities)


def refused_rows(
    matrix: np.ndarray, *, float32: bool, missing: bool, infinite: bool = False
) -> Refused | None:
    """The rows of a model's input ``matrix`` holding a value it refuses, or None: beyond
    float32 or infinite (``float32``), infinite (``infinite``: then NaN is "not finite" too),
    NaN (``missing``)."""
    if not (float32 or missing or infinite):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        peak = np.abs(matrix).max(initial=0.0)  # NaN where any value is NaN
        if (peak <= _FLOAT32_MAX) if float32 else (peak < np.inf):
            return None  # the common case, in one pass
        nan = np.isnan(matrix)
        beyond = (~nan & ~(np.abs(matrix) <= _FLOAT32_MAX)) if float32 else np.isinf(matrix)
    if (float32 or infinite) and beyond.any():
        return Refused(_rows(beyond), "float32" if float32 else "finite")
    if missing and nan.any():
        return Refused(_rows(nan), "finite" if infinite else "missing")
    return None


def _rows(mask: np.ndarray) -> list[int]:
    return [int(r) for r in np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))]


def _head(
    form: CompiledForm, raw: np.ndarray, *, probabilities: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    if form.head == "value":
        return raw[:, 0].copy(), None
    classes = _labels(form)
    if form.head == "proba":
        return classes.take(np.argmax(raw, axis=1)), raw if probabilities else None
    if form.head == "logit":
        logit = raw[:, 0].copy()
        positive = logit >= 0 if form.zero_is_positive else logit > 0
        predictions = classes.take(positive.astype(np.intp))
        if not probabilities:
            return predictions, None
        proba = np.empty((logit.shape[0], 2))
        upper = np.empty(logit.shape[0])
        _machine_code().expit(logit, upper)
        proba[:, 1] = upper
        proba[:, 0] = 1 - proba[:, 1]
        return predictions, proba
    predictions = classes.take(np.argmax(raw, axis=1))
    if not probabilities:
        return predictions, None
    return predictions, _softmax(np.asfortranarray(raw) if form.fortran_scores else raw)


def _softmax(X: np.ndarray) -> np.ndarray:
    """scikit-learn's ``utils.extmath.softmax``, step for step."""
    X = np.asarray(X, copy=True)
    X -= np.max(X, axis=1).reshape((-1, 1))
    np.exp(X, out=X)
    X /= np.sum(X, axis=1).reshape((-1, 1))
    return X


def _labels(form: CompiledForm) -> np.ndarray:
    classes = form.classes or ()
    if any(isinstance(c, str) for c in classes):
        labels = np.empty(len(classes), dtype=object)
        labels[:] = classes
        return labels
    return np.asarray(classes)


__all__ = [
    "Inputs",
    "Refused",
    "Why",
    "answer",
    "linear_scores",
    "model_matrix",
    "refused_rows",
    "scores",
]
