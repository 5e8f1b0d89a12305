"""Machine code for a compiled form (numba, compiled once and cached on disk): walking a tree
ensemble, and a sparse matrix product in SciPy's order.

The arithmetic is scikit-learn's, operation for operation: each tree's leaf row is added to the
output in tree order (no reassociation: no fast-math), a decision tree compares ``float32(x)``
with a float64 threshold, and ``expit`` is ``1 / (1 + exp(-x))`` with the C library's ``exp``,
as SciPy computes it. So the answers are bit-equal, which verification then checks.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from modelserve.core.compiled.form import CATEGORICAL, LEAF, NAN_LEFT

_INT32_LIMIT = 2147483648.0
_LANES = 16
_FEW_ROWS = 8


@numba.njit(cache=True, nogil=True)
def _category_child(x: float, k: int, flags: int, right: int, refs: Any, sets: Any) -> int:
    """The child a category code goes to, as hist gradient boosting's predictor decides it."""
    missing = k + 1 if flags & NAN_LEFT else right
    if math.isnan(x) or x < 0:
        return missing
    # scikit-learn casts the code to uint8 in C: on x86-64 the low byte of a 32-bit truncation.
    code = (int(x) & 255) if x < _INT32_LIMIT else 0
    word, bit = code >> 5, code & 31
    if (sets[refs[k, 0], word] >> bit) & 1:
        return k + 1
    if (sets[refs[k, 1], word] >> bit) & 1:
        return right
    return missing


@numba.njit(cache=True, nogil=True)
def _child(X: Any, i: int, k: int, nodes: Any, refs: Any, sets: Any, single: bool) -> int:
    """The node after split ``k`` for row ``i``."""
    node = nodes[k]
    flags = node.flags
    x = X[i, node.feature]
    if single:
        x = np.float64(np.float32(x))
    if flags & CATEGORICAL:
        return _category_child(x, k, flags, node.right, refs, sets)
    if x <= node.threshold or (flags & NAN_LEFT and math.isnan(x)):
        return k + 1
    return int(node.right)


@numba.njit(cache=True, nogil=True)
def scores(
    X: Any,
    nodes: Any,
    roots: Any,
    columns: Any,
    values: Any,
    refs: Any,
    sets: Any,
    init: Any,
    average: bool,
    single: bool,
) -> Any:
    """Raw scores, rows x outputs: ``0 + init``, then every tree's leaf row added, tree after
    tree, then divided by the number of trees where ``average``. ``single``: compare
    ``float32(x)`` with the thresholds.

    A few rows walk ``_LANES`` trees at once, a step of each in turn, so that the memory reads
    of different trees overlap; more rows walk one tree for all rows, so that its nodes stay in
    the cache. Either way each row's leaves are added in tree order."""
    out = np.zeros((X.shape[0], init.shape[0]))
    for i in range(X.shape[0]):
        for j in range(init.shape[0]):
            out[i, j] += init[j]
    if X.shape[0] < _FEW_ROWS:
        _by_row(X, nodes, roots, columns, values, refs, sets, single, out)
    else:
        _by_tree(X, nodes, roots, columns, values, refs, sets, single, out)
    if average:
        out /= roots.shape[0]
    return out


@numba.njit(cache=True, nogil=True)
def _by_row(
    X: Any,
    nodes: Any,
    roots: Any,
    columns: Any,
    values: Any,
    refs: Any,
    sets: Any,
    single: bool,
    out: Any,
) -> None:
    """Each row walks ``_LANES`` trees at a time, a step of each in turn."""
    at = np.empty(_LANES, np.int64)
    n_trees = roots.shape[0]
    for i in range(X.shape[0]):
        for first in range(0, n_trees, _LANES):
            lanes = min(_LANES, n_trees - first)
            for lane in range(lanes):
                at[lane] = roots[first + lane]
            walking = True
            while walking:
                walking = False
                for lane in range(lanes):
                    k = at[lane]
                    if not nodes[k].flags & LEAF:
                        at[lane] = _child(X, i, k, nodes, refs, sets, single)
                        walking = True
            for lane in range(lanes):
                column = columns[first + lane]
                for j in range(values.shape[1]):
                    out[i, column + j] += values[at[lane], j]


@numba.njit(cache=True, nogil=True)
def _by_tree(
    X: Any,
    nodes: Any,
    roots: Any,
    columns: Any,
    values: Any,
    refs: Any,
    sets: Any,
    single: bool,
    out: Any,
) -> None:
    """Each tree is walked for every row before the next tree."""
    for t in range(roots.shape[0]):
        column = columns[t]
        for i in range(X.shape[0]):
            k = roots[t]
            while not nodes[k].flags & LEAF:
                k = _child(X, i, k, nodes, refs, sets, single)
            for j in range(values.shape[1]):
                out[i, column + j] += values[k, j]


@numba.njit(cache=True, nogil=True)
def expit(x: Any, out: Any) -> None:
    """``out[i] = 1 / (1 + exp(-x[i]))``, as ``scipy.special.expit`` computes it."""
    for i in range(x.shape[0]):
        out[i] = 1.0 / (1.0 + math.exp(-x[i]))


@numba.njit(cache=True, nogil=True)
def sequential_dot(X: Any, coef: Any) -> Any:
    """``X @ coef.T`` as SciPy multiplies a sparse row-ordered matrix: each output starts at
    zero and adds its row's stored terms (the non-zero values, NaN included) in column order."""
    rows, features = X.shape
    outputs = coef.shape[0]
    out = np.zeros((rows, outputs))
    for i in range(rows):
        for j in range(features):
            x = X[i, j]
            if x != 0.0:
                for k in range(outputs):
                    out[i, k] += x * coef[k, j]
    return out


def warm_up() -> None:
    """Load (or compile, the first time) the machine code, before traffic."""
    from modelserve.core.compiled.form import NODE  # noqa: PLC0415 - only the dtype

    nodes = np.zeros(1, dtype=NODE)
    nodes["flags"] = LEAF
    scores(
        np.zeros((1, 1)),
        nodes,
        np.zeros(1, np.int32),
        np.zeros(1, np.int32),
        np.zeros((1, 1)),
        np.zeros((1, 2), np.int32),
        np.zeros((1, 8), np.uint32),
        np.zeros(1),
        True,
        True,
    )
    expit(np.zeros(1), np.zeros(1))


__all__ = ["expit", "scores", "sequential_dot", "warm_up"]
