"""The compiled form of a model: arrays and a short plan, read without running any code.

``compiled.bin`` (an attachment, its sha256 in the manifest, so a signature covers it)::

    b"MSFORM\\x00\\x01"   magic and format version
    u32, little-endian   length of the header
    header               JSON: the plan, and where each array lies (dtype, shape, offset)
    arrays               raw little-endian bytes, each at an 8-aligned offset after the header

Reading it parses JSON and wraps byte ranges as NumPy arrays; every index a tree holds is
checked to stay inside its own tree and to point forward, so no form, however made, can read
out of bounds or loop. Whether a form *answers like its estimator* is a separate question,
settled by :mod:`modelserve.core.compiled.verify` at publish and again at load.

A form's model is a tree ensemble or a linear model. A tree ensemble is one array of nodes for
all its trees, each tree laid out depth first so that a split's left child is the node right
after it (only the right child is stored). Each tree adds its leaf's row of ``values`` to the
output columns starting at its ``column``, in tree order, onto ``init`` — the same additions, in
the same order, as scikit-learn makes. A linear model is its coefficients and intercepts, and
the memory layout in which scikit-learn multiplies them (see :class:`Linear`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import orjson

from modelserve.core.compiled.steps import Plan, Program, StepError, from_json, to_json

MAGIC = b"MSFORM\x00\x01"
_HEADER_LIMIT = 1 << 20

NODE = np.dtype([("threshold", "<f8"), ("right", "<i4"), ("feature", "<i2"), ("flags", "<u2")])
"""One tree node: a split's threshold and right child (the left child is the next node)."""

LEAF = 1
NAN_LEFT = 2
"""A missing value (NaN) goes to the left child."""
CATEGORICAL = 4
"""A split on category codes: ``category_refs[node]`` names its left set and its feature's known
set in ``category_sets`` (256-bit sets); a code in neither goes where missing values go."""

Head = Literal["value", "proba", "logit", "softmax"]
"""How raw scores become answers: the score itself (a regressor), averaged class
probabilities (a forest), one logit (a binary boosted classifier: ``expit``), or one score
per class (a multiclass boosted classifier: ``softmax``)."""

Class = str | int | float | bool


class CompiledFormError(ValueError):
    """A compiled form that cannot be read or would not be safe to run; the message says why."""


@dataclass(frozen=True, eq=False)
class Trees:
    """A fitted tree ensemble as arrays (see the module docstring for the layout)."""

    nodes: np.ndarray
    roots: np.ndarray
    columns: np.ndarray
    values: np.ndarray
    category_sets: np.ndarray
    category_refs: np.ndarray
    init: np.ndarray
    n_features: int
    float32_input: bool
    """Compare ``float32(x)`` with the thresholds, as scikit-learn's decision trees do."""
    average: bool
    """Divide the sum by the number of trees (a forest)."""
    takes_missing: bool = True
    """Whether the estimator takes a missing value (NaN) at all (gradient boosting does not)."""

    def arrays(self) -> dict[str, np.ndarray]:
        """The ensemble's arrays by their names in ``compiled.bin``."""
        return {
            "nodes": self.nodes,
            "roots": self.roots,
            "columns": self.columns,
            "values": self.values,
            "category_sets": self.category_sets,
            "category_refs": self.category_refs,
            "init": self.init,
        }

    @property
    def n_outputs(self) -> int:
        return int(self.init.shape[0])

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])


Layout = Literal["C", "F", "sparse"]
"""How the linear model's input matrix lies in memory when scikit-learn multiplies it: rows
(``C``), columns (``F``), or a sparse matrix (its product adds each row's terms in column order,
starting from zero)."""


@dataclass(frozen=True, eq=False)
class Linear:
    """A fitted linear model: ``X @ coef.T + intercept``, with the estimator's own memory layout
    for ``X`` and ``coef``, so that the product is the same BLAS call on the same shapes and
    strides (a different call sums in a different order, and differs in the last bits)."""

    coef: np.ndarray
    """Coefficients, outputs x features, C-ordered (as stored)."""
    intercept: np.ndarray
    """One intercept per output."""
    vector: bool
    """The estimator's ``coef_`` is one vector (a regressor): ``X @ coef[0] + intercept[0]``."""
    fortran_coef: bool
    """The estimator's ``coef_`` is column-ordered (a multiclass logistic regression's is)."""
    layout: Layout

    def arrays(self) -> dict[str, np.ndarray]:
        """The model's arrays by their names in ``compiled.bin``."""
        return {"coef": self.coef, "intercept": self.intercept}

    @cached_property
    def coefficients(self) -> np.ndarray:
        """``coef`` in the estimator's memory order, ready to multiply."""
        return np.asfortranarray(self.coef) if self.fortran_coef else self.coef

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.coef.shape[0])


@dataclass(frozen=True, eq=False)
class CompiledForm:
    """A model that predicts without scikit-learn: its preprocessing (``columns``: one program
    per column the model takes, see :mod:`~modelserve.core.compiled.steps`; None when it takes
    the features as they are), a tree ensemble or a linear model, and its answer's head."""

    model: Trees | Linear
    head: Head
    classes: tuple[Class, ...] | None = None
    zero_is_positive: bool = False
    """``logit`` head: whether a score of exactly 0 picks the second class (gradient boosting
    does, hist gradient boosting does not)."""
    fortran_scores: bool = False
    """``softmax`` head: the estimator computes it on a Fortran-ordered array (hist gradient
    boosting); the same order gives the same bits."""
    columns: tuple[Program, ...] | None = None
    features: int | None = None
    """How many features the column programs read (the model's own); None without programs."""

    @cached_property
    def plan(self) -> Plan | None:
        """The column programs made ready to run (built on first use)."""
        return None if self.columns is None else Plan(self.columns)

    @property
    def trees(self) -> Trees | None:
        """The tree ensemble, for a form whose model is one."""
        return self.model if isinstance(self.model, Trees) else None

    @property
    def n_inputs(self) -> int:
        """How many features the form takes: the model's own, before any preprocessing."""
        return self.model.n_features if self.features is None else self.features

    def dumps(self) -> bytes:
        """The form as ``compiled.bin`` bytes."""
        model = self.model
        arrays = model.arrays()
        layout: dict[str, dict[str, Any]] = {}
        blobs: list[bytes] = []
        offset = 0
        for name, array in arrays.items():
            dtype = _DTYPES[name] if isinstance(model, Trees) else _LINEAR_DTYPES[name]
            data = np.ascontiguousarray(array, dtype=dtype).tobytes()
            layout[name] = {"shape": list(array.shape), "offset": offset}
            padded = data + b"\0" * (-len(data) % 8)
            blobs.append(padded)
            offset += len(padded)
        header = orjson.dumps(
            {
                "head": self.head,
                "classes": None if self.classes is None else list(self.classes),
                "zero_is_positive": self.zero_is_positive,
                "fortran_scores": self.fortran_scores,
                "columns": None if self.columns is None else to_json(self.columns),
                "features": self.features,
                **_model_header(model),
                "arrays": layout,
            }
        )
        header += b" " * (-(len(MAGIC) + 4 + len(header)) % 8)
        return b"".join([MAGIC, struct.pack("<I", len(header)), header, *blobs])


def _model_header(model: Trees | Linear) -> dict[str, Any]:
    if isinstance(model, Linear):
        return {
            "linear": {
                "vector": model.vector,
                "fortran_coef": model.fortran_coef,
                "layout": model.layout,
            }
        }
    return {
        "trees": {
            "n_features": model.n_features,
            "float32_input": model.float32_input,
            "average": model.average,
            "takes_missing": model.takes_missing,
        }
    }


_DTYPES: dict[str, np.dtype[Any]] = {
    "nodes": NODE,
    "roots": np.dtype("<i4"),
    "columns": np.dtype("<i4"),
    "values": np.dtype("<f8"),
    "category_sets": np.dtype("<u4"),
    "category_refs": np.dtype("<i4"),
    "init": np.dtype("<f8"),
}
_NDIM = {
    "nodes": 1,
    "roots": 1,
    "columns": 1,
    "values": 2,
    "category_sets": 2,
    "category_refs": 2,
    "init": 1,
}
_LINEAR_DTYPES: dict[str, np.dtype[Any]] = {"coef": np.dtype("<f8"), "intercept": np.dtype("<f8")}
_LINEAR_NDIM = {"coef": 2, "intercept": 1}
_LAYOUTS: tuple[Layout, ...] = ("C", "F", "sparse")
_HEADS: tuple[Head, ...] = ("value", "proba", "logit", "softmax")


def loads(data: bytes) -> CompiledForm:
    """Read and check a ``compiled.bin``; raise CompiledFormError with the reason if unusable."""
    if len(data) < len(MAGIC) + 4 or not data.startswith(MAGIC):
        raise CompiledFormError("not a compiled form (wrong magic bytes or format version)")
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    if size > _HEADER_LIMIT or start + size > len(data):
        raise CompiledFormError("the header runs past the end of the file")
    try:
        header = orjson.loads(data[start : start + size])
    except orjson.JSONDecodeError as exc:
        raise CompiledFormError(f"the header is not JSON: {exc}") from exc
    body = memoryview(data)[start + size :]
    try:
        return _build(header, body)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CompiledFormError):
            raise
        raise CompiledFormError(f"malformed header: {exc!r}") from exc


def _build(header: dict[str, Any], body: memoryview) -> CompiledForm:
    if ("trees" in header) == ("linear" in header):
        raise CompiledFormError("a form holds either trees or a linear model")
    model = _linear(header, body) if "linear" in header else _trees(header, body)
    columns, features = header["columns"], header["features"]
    if (columns is None) != (features is None):
        raise CompiledFormError("column programs and the number of features they read go together")
    try:
        programs = None if columns is None else from_json(columns, _int(features, "features"))
    except StepError as exc:
        raise CompiledFormError(str(exc)) from exc
    if programs is not None and len(programs) != model.n_features:
        raise CompiledFormError(
            f"{len(programs)} column programs for a model that takes {model.n_features} columns"
        )
    head = header["head"]
    if head not in _HEADS:
        raise CompiledFormError(f"unknown head {head!r}")
    classes = header["classes"]
    form = CompiledForm(
        model=model,
        head=head,
        classes=None if classes is None else tuple(_class(c) for c in classes),
        zero_is_positive=_bool(header["zero_is_positive"], "zero_is_positive"),
        fortran_scores=_bool(header["fortran_scores"], "fortran_scores"),
        columns=programs,
        features=features,
    )
    check_head(form)
    return form


def _arrays(
    header: dict[str, Any], body: memoryview, dtypes: dict[str, np.dtype[Any]], ndim: dict[str, int]
) -> dict[str, np.ndarray]:
    return {
        name: _array(name, header["arrays"][name], body, dtype, ndim[name])
        for name, dtype in dtypes.items()
    }


def _linear(header: dict[str, Any], body: memoryview) -> Linear:
    arrays = _arrays(header, body, _LINEAR_DTYPES, _LINEAR_NDIM)
    spec = header["linear"]
    layout = spec["layout"]
    if layout not in _LAYOUTS:
        raise CompiledFormError(f"unknown layout {layout!r}")
    linear = Linear(
        coef=arrays["coef"],
        intercept=arrays["intercept"],
        vector=_bool(spec["vector"], "vector"),
        fortran_coef=_bool(spec["fortran_coef"], "fortran_coef"),
        layout=layout,
    )
    check_linear(linear)
    return linear


def _trees(header: dict[str, Any], body: memoryview) -> Trees:
    arrays = _arrays(header, body, _DTYPES, _NDIM)
    spec = header["trees"]
    trees = Trees(
        nodes=arrays["nodes"],
        roots=arrays["roots"],
        columns=arrays["columns"],
        values=arrays["values"],
        category_sets=arrays["category_sets"],
        category_refs=arrays["category_refs"],
        init=arrays["init"],
        n_features=_int(spec["n_features"], "n_features"),
        float32_input=_bool(spec["float32_input"], "float32_input"),
        average=_bool(spec["average"], "average"),
        takes_missing=_bool(spec.get("takes_missing", True), "takes_missing"),
    )
    check_trees(trees)
    return trees


def _array(
    name: str, spec: dict[str, Any], body: memoryview, dtype: np.dtype[Any], ndim: int
) -> np.ndarray:
    shape = tuple(_int(n, f"{name} shape") for n in spec["shape"])
    offset = _int(spec["offset"], f"{name} offset")
    if len(shape) != ndim:
        raise CompiledFormError(f"{name} has {len(shape)} dimensions, not {ndim}")
    count = int(np.prod(shape, dtype=np.int64))
    end = offset + count * dtype.itemsize
    if offset % 8 or end > len(body):
        raise CompiledFormError(f"{name} lies outside the file")
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _int(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 1 << 40:
        raise CompiledFormError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise CompiledFormError(f"{what} must be true or false, not {value!r}")
    return value


def _class(value: Any) -> Class:
    if not isinstance(value, str | int | float | bool):
        raise CompiledFormError(f"a class label must be a string or a number, not {value!r}")
    return value


def check_trees(trees: Trees) -> None:
    """Raise CompiledFormError unless every index stays in bounds and every path ends."""
    nodes, roots = trees.nodes, trees.roots
    n_nodes, n_trees = len(nodes), len(roots)
    if n_trees == 0 or n_nodes == 0:
        raise CompiledFormError("an ensemble needs at least one tree")
    if trees.n_features < 1 or trees.n_features > np.iinfo(np.int16).max:
        raise CompiledFormError(f"cannot take {trees.n_features} features")
    if roots[0] != 0 or (n_trees > 1 and not (np.diff(roots) > 0).all()) or roots[-1] >= n_nodes:
        raise CompiledFormError("trees must start at node 0 and follow one another")
    # The node ids at which each node's tree ends: children must stay before it.
    ends = np.repeat(np.append(roots[1:], n_nodes), np.diff(np.append(roots, n_nodes)))
    index = np.arange(n_nodes)
    flags = nodes["flags"]
    if (flags & ~np.uint16(LEAF | NAN_LEFT | CATEGORICAL)).any():
        raise CompiledFormError("a node has unknown flags")
    split = (flags & LEAF) == 0
    right = nodes["right"]
    if not (index[split] + 1 < right[split]).all() or not (right[split] < ends[split]).all():
        raise CompiledFormError("a split's children must lie after it, inside its own tree")
    feature = nodes["feature"][split]
    if not ((feature >= 0) & (feature < trees.n_features)).all():
        raise CompiledFormError("a split names a feature the model does not take")
    if np.isnan(nodes["threshold"][split]).any():
        raise CompiledFormError("a split's threshold is not a number")
    if not (flags[np.append(roots[1:], n_nodes) - 1] & LEAF).all():
        raise CompiledFormError("a tree's last node must be a leaf")
    _check_leaves(trees, split)


def _check_leaves(trees: Trees, split: np.ndarray) -> None:
    """Raise CompiledFormError unless category sets, values and columns fit the nodes."""
    n_nodes, n_trees = len(trees.nodes), len(trees.roots)
    flags = trees.nodes["flags"]
    categorical = split & ((flags & CATEGORICAL) != 0)
    refs, sets = trees.category_refs, trees.category_sets
    if refs.shape != (n_nodes, 2) or sets.ndim != 2 or sets.shape[1] != 8:
        raise CompiledFormError("category sets must be 256-bit and named by two refs per node")
    if categorical.any() and not ((refs[categorical] >= 0) & (refs[categorical] < len(sets))).all():
        raise CompiledFormError("a categorical split names a category set that does not exist")
    values, columns = trees.values, trees.columns
    if values.shape[0] != n_nodes or values.shape[1] < 1:
        raise CompiledFormError("values must hold one row per node")
    if not np.isfinite(values[(flags & LEAF) != 0]).all() or not np.isfinite(trees.init).all():
        raise CompiledFormError("a leaf value is not a finite number")
    if columns.shape != (n_trees,) or (columns < 0).any():
        raise CompiledFormError("each tree needs the output column it adds to")
    if (columns + values.shape[1] > trees.n_outputs).any():
        raise CompiledFormError("a tree adds to an output column the model does not have")


def check_linear(linear: Linear) -> None:
    """Raise CompiledFormError unless the coefficients and intercepts fit and are finite."""
    outputs, features = linear.coef.shape
    if outputs < 1 or not 1 <= features <= _MAX_LINEAR_FEATURES:
        raise CompiledFormError(f"a linear model of {outputs} outputs over {features} features")
    if linear.intercept.shape != (outputs,):
        raise CompiledFormError(f"{linear.intercept.shape[0]} intercepts for {outputs} outputs")
    if linear.vector and outputs != 1:
        raise CompiledFormError("a linear model with one coefficient vector has one output")
    if not (np.isfinite(linear.coef).all() and np.isfinite(linear.intercept).all()):
        raise CompiledFormError("a coefficient or intercept is not a finite number")


_MAX_LINEAR_FEATURES = 1 << 24


def check_head(form: CompiledForm) -> None:
    """Raise CompiledFormError unless the head fits the model's outputs and classes."""
    outputs = form.model.n_outputs
    classes = form.classes
    if isinstance(form.model, Linear) and form.model.vector and form.head != "value":
        raise CompiledFormError("a linear model with one coefficient vector answers a value")
    if form.head == "value":
        if outputs != 1 or classes is not None:
            raise CompiledFormError("a regressor's form has one output and no classes")
        return
    if classes is None or len(classes) < 2:
        raise CompiledFormError("a classifier's form needs its classes")
    expected = 1 if form.head == "logit" else len(classes)
    if outputs != expected or (form.head == "logit" and len(classes) != 2):
        raise CompiledFormError(
            f"a {form.head} head over {len(classes)} classes needs {expected} outputs, "
            f"not {outputs}"
        )


__all__ = [
    "CATEGORICAL",
    "LEAF",
    "NAN_LEFT",
    "NODE",
    "Class",
    "CompiledForm",
    "CompiledFormError",
    "Head",
    "Layout",
    "Linear",
    "Trees",
    "check_head",
    "check_linear",
    "check_trees",
    "loads",
]
