"""Answers from a compiled form: raw scores from the trees, then the head's answer.

Each step copies what the estimator's own ``predict`` / ``predict_proba`` does after its trees
(the averaging of a forest, the ``>`` or ``>=`` of a boosted binary classifier, SciPy's
``expit``, scikit-learn's ``softmax``), so that the two agree to the last bit.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from modelserve.core.compiled.form import CompiledForm, Trees

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


def model_matrix(form: CompiledForm, inputs: Inputs) -> np.ndarray:
    """The float64 matrix the trees take: the inputs through the form's column programs."""
    plan = form.plan
    if plan is None:
        return inputs if isinstance(inputs, np.ndarray) else np.column_stack(inputs)
    columns = (
        inputs if isinstance(inputs, tuple) else tuple(inputs[:, i] for i in range(inputs.shape[1]))
    )
    return plan.run(columns)


class BeyondSingle(ValueError):  # noqa: N818 - a condition of the rows, named for them
    """Rows whose preprocessed values float32 cannot hold, for trees that compare in float32
    (the estimator itself would fail on them): ``rows``, in order."""

    def __init__(self, rows: list[int]) -> None:
        super().__init__(f"rows {rows} are beyond float32 after preprocessing")
        self.rows = rows


def answer(
    form: CompiledForm, inputs: Inputs, *, probabilities: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(predictions, probabilities or None)`` for a checked batch's values.

    Raises BeyondSingle where a pipeline's preprocessing takes a value beyond float32 for trees
    that compare in float32 (the model's own features are checked before, by the predictor).
    """
    matrix = model_matrix(form, inputs)
    if form.columns is not None and form.trees.float32_input:
        magnitude = np.abs(matrix)
        if magnitude.max(initial=0.0) > _FLOAT32_MAX:
            with np.errstate(over="ignore"):
                beyond = np.isinf(matrix.astype(np.float32)) & np.isfinite(matrix)
            if beyond.any():
                raise BeyondSingle([int(r) for r in np.flatnonzero(beyond.any(axis=1))])
    raw = scores(form.trees, matrix)
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


__all__ = ["BeyondSingle", "Inputs", "answer", "model_matrix", "scores"]
