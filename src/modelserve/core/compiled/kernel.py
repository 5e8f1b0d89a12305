"""Machine code for walking a compiled tree ensemble (numba, compiled once and cached on disk).

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
def accumulate(
    X: Any, nodes: Any, roots: Any, columns: Any, values: Any, refs: Any, sets: Any, out: Any
) -> None:
    """Add every tree's leaf row to ``out`` (rows x outputs), tree after tree."""
    n_rows = X.shape[0]
    width = values.shape[1]
    for t in range(roots.shape[0]):
        root = roots[t]
        column = columns[t]
        for i in range(n_rows):
            k = root
            while True:
                node = nodes[k]
                flags = node.flags
                if flags & LEAF:
                    break
                x = X[i, node.feature]
                if flags & CATEGORICAL:
                    k = _category_child(x, k, flags, node.right, refs, sets)
                elif x <= node.threshold or (flags & NAN_LEFT and math.isnan(x)):
                    k += 1
                else:
                    k = node.right
            for j in range(width):
                out[i, column + j] += values[k, j]


@numba.njit(cache=True, nogil=True)
def expit(x: Any, out: Any) -> None:
    """``out[i] = 1 / (1 + exp(-x[i]))``, as ``scipy.special.expit`` computes it."""
    for i in range(x.shape[0]):
        out[i] = 1.0 / (1.0 + math.exp(-x[i]))


def warm_up() -> None:
    """Load (or compile, the first time) each variant the server runs, before traffic."""
    from modelserve.core.compiled.form import NODE  # noqa: PLC0415 - only the dtype

    nodes = np.zeros(1, dtype=NODE)
    nodes["flags"] = LEAF
    args = (
        np.zeros(1, np.int32),
        np.zeros(1, np.int32),
        np.zeros((1, 1)),
        np.zeros((1, 2), np.int32),
        np.zeros((1, 8), np.uint32),
    )
    for dtype in (np.float32, np.float64):
        accumulate(np.zeros((1, 1), dtype), nodes, *args, np.zeros((1, 1)))
    expit(np.zeros(1), np.zeros(1))


__all__ = ["accumulate", "expit", "warm_up"]
