"""The preprocessing of a compiled form: one program per column the trees take.

scikit-learn's standard steps (``SimpleImputer``, ``StandardScaler``, ``MinMaxScaler``,
``OrdinalEncoder``, ``OneHotEncoder``, and the ``ColumnTransformer`` and ``Pipeline`` that
arrange them) each work on one column at a time. So a fitted pipeline's preprocessing is, for
each column it outputs, one input feature (``source``) put through a short chain of operations —
the same arithmetic, in the same order, as the fitted steps apply to that column.

An operation is a tuple ``(kind, *parameters)``, stored as a JSON array:

- ``("impute", value)``: a missing value (NaN) becomes ``value`` (a number or a string);
- ``("standardize", mean | None, scale | None)``: ``x - mean``, then ``/ scale``;
- ``("minmax", scale, offset, low | None, high | None)``: ``x * scale + offset``, then clipped;
- ``("ordinal", categories, missing, unknown)``: a category's position among ``categories``; a
  missing value ``missing``, any other value ``unknown`` (NaN where either is null);
- ``("indicator", categories, position)``: 1.0 where the value is ``categories[position]``
  (where it is missing, for position -1), else 0.0: one column of a one-hot encoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

Category = str | int | float | bool
Op = tuple[Any, ...]


class StepError(ValueError):
    """A column program that cannot be read; the message says why."""


@dataclass(frozen=True)
class Program:
    """One output column: input feature ``source`` through ``ops``, in order."""

    source: int
    ops: tuple[Op, ...] = ()


def to_json(programs: tuple[Program, ...]) -> list[dict[str, Any]]:
    return [
        {"source": p.source, "ops": [[_json_value(v) for v in op] for op in p.ops]}
        for p in programs
    ]


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def from_json(items: Any, n_inputs: int) -> tuple[Program, ...]:
    """Programs read from a form's header; raise StepError unless every one is well formed."""
    if not isinstance(items, list) or not items:
        raise StepError("columns must be a non-empty list of programs")
    return tuple(_program(item, n_inputs) for item in items)


def _program(item: Any, n_inputs: int) -> Program:
    if not isinstance(item, dict) or set(item) != {"source", "ops"}:
        raise StepError(f"a column program needs a source and ops, not {item!r}")
    source = item["source"]
    if type(source) is not int or not 0 <= source < n_inputs:
        raise StepError(f"a column program reads feature {source!r} of {n_inputs}")
    if not isinstance(item["ops"], list):
        raise StepError("a column program's ops must be a list")
    return Program(source, tuple(_op(op) for op in item["ops"]))


def _number(value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if type(value) not in (int, float):
        raise StepError(f"expected a number, not {value!r}")
    return float(value)


def _code(value: Any) -> float:
    """A code an encoder gives: a number, or null for NaN."""
    return math.nan if value is None else float(_number(value) or 0.0)


def _categories(value: Any) -> tuple[Category, ...]:
    if not isinstance(value, list) or not all(
        isinstance(c, str | int | float | bool) for c in value
    ):
        raise StepError(f"categories must be a list of strings or numbers, not {value!r}")
    return tuple(value)


def _op(op: Any) -> Op:
    if not isinstance(op, list) or not op:
        raise StepError(f"an operation must be a non-empty list, not {op!r}")
    kind, *args = op
    if kind == "impute" and len(args) == 1 and isinstance(args[0], str | int | float):
        return ("impute", args[0])
    if kind == "standardize" and len(args) == 2:
        return ("standardize", _number(args[0], optional=True), _number(args[1], optional=True))
    if kind == "minmax" and len(args) == 4:
        return (
            "minmax",
            _number(args[0]),
            _number(args[1]),
            _number(args[2], optional=True),
            _number(args[3], optional=True),
        )
    if kind == "ordinal" and len(args) == 3:
        return ("ordinal", _categories(args[0]), _code(args[1]), _code(args[2]))
    if kind == "indicator" and len(args) == 2:
        categories = _categories(args[0])
        position = args[1]
        if type(position) is not int or not -1 <= position < len(categories):
            raise StepError(f"indicator position {position!r} is not one of the categories")
        return ("indicator", categories, position)
    raise StepError(f"unknown or malformed operation {op!r}")


# -- evaluation -----------------------------------------------------------------------------------

Transform = Callable[[np.ndarray], np.ndarray]


class Plan:
    """Programs made ready to run: each operation's lookup built once, and each shared start of
    a chain (a column one-hot encoded into several) computed once per batch."""

    def __init__(self, programs: tuple[Program, ...]) -> None:
        self.width = len(programs)
        self._steps: list[tuple[int, int, Transform]] = []  # (slot, input slot, transform)
        self._outputs: list[int] = []
        slots: dict[tuple[int, tuple[Op, ...]], int] = {}
        sources = sorted({p.source for p in programs})
        self._sources = sources  # slot i holds feature sources[i]
        for i, source in enumerate(sources):
            slots[(source, ())] = i
        for program in programs:
            slot = slots[(program.source, ())]
            for depth, op in enumerate(program.ops, start=1):
                key = (program.source, program.ops[:depth])
                known = slots.get(key)
                if known is None:
                    known = slots[key] = len(slots)
                    self._steps.append((known, slot, _prepare(op)))
                slot = known
            self._outputs.append(slot)
        self._slots = len(slots)

    def run(self, columns: tuple[np.ndarray, ...]) -> np.ndarray:
        """The float64 matrix of a checked batch's columns (rows x programs)."""
        values: list[np.ndarray] = [columns[source] for source in self._sources]
        values.extend([values[0]] * (self._slots - len(values)))  # filled in order below
        for slot, origin, transform in self._steps:
            values[slot] = transform(values[origin])
        out = np.empty((len(columns[0]), self.width))
        for j, slot in enumerate(self._outputs):
            out[:, j] = values[slot]
        return out


def _prepare(op: Op) -> Transform:
    kind = op[0]
    if kind == "impute":
        return partial(_impute, value=op[1])
    if kind == "standardize":
        return partial(_standardize, mean=op[1], scale=op[2])
    if kind == "minmax":
        return partial(_minmax, scale=op[1], offset=op[2], low=op[3], high=op[4])
    codes = _Codes(op[1])
    if kind == "ordinal":
        return partial(_ordinal, codes=codes, missing=op[2], unknown=op[3])
    return partial(_indicator, codes=codes, position=op[2])


def _impute(values: np.ndarray, *, value: Any) -> np.ndarray:
    missing = _missing(values)
    if not missing.any():
        return values
    filled = values.copy()
    filled[missing] = value
    return filled


def _standardize(values: np.ndarray, *, mean: float | None, scale: float | None) -> np.ndarray:
    x = np.array(values, dtype=np.float64)
    if mean is not None:
        x -= mean
    if scale is not None:
        x /= scale
    return x


def _minmax(
    values: np.ndarray, *, scale: float, offset: float, low: float | None, high: float | None
) -> np.ndarray:
    x = np.array(values, dtype=np.float64)
    x *= scale
    x += offset
    if low is not None:
        np.clip(x, low, high, out=x)
    return x


def _ordinal(values: np.ndarray, *, codes: _Codes, missing: float, unknown: float) -> np.ndarray:
    found, absent = codes.find(values)
    encoded = found.astype(np.float64)
    encoded[found < 0] = unknown
    encoded[absent] = missing
    return encoded


def _indicator(values: np.ndarray, *, codes: _Codes, position: int) -> np.ndarray:
    found, absent = codes.find(values)
    hot = absent if position == -1 else found == position
    return hot.astype(np.float64)


def _missing(values: np.ndarray) -> np.ndarray:
    """Which values are missing: NaN (a table's text column holds NaN, or None, there)."""
    if values.dtype == object:
        return np.fromiter(
            (v is None or (isinstance(v, float) and math.isnan(v)) for v in values),
            dtype=bool,
            count=len(values),
        )
    missing: np.ndarray = np.isnan(values)
    return missing


class _Codes:
    """Finds each value's position among an encoder's categories (-1 for none of them)."""

    def __init__(self, categories: tuple[Category, ...]) -> None:
        self.lookup = {c: i for i, c in enumerate(categories)}
        self.text = any(isinstance(c, str) for c in categories)
        known = np.asarray([] if self.text else categories, dtype=np.float64)
        self.order = np.argsort(known, kind="stable")
        self.ranked = known[self.order]

    def find(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each value's position (-1 when unknown or missing), and which values are missing."""
        if values.dtype == object:
            lookup = self.lookup
            found = np.fromiter(
                (lookup.get(v, -1) for v in values), dtype=np.int64, count=len(values)
            )
            return found, _missing(values) if (found < 0).any() else np.zeros(len(values), bool)
        missing = np.isnan(values)
        if self.text or not len(self.ranked):
            return np.full(len(values), -1, dtype=np.int64), missing
        at = np.minimum(np.searchsorted(self.ranked, values), len(self.ranked) - 1)
        found = np.where(self.ranked[at] == values, self.order[at], -1)
        return found.astype(np.int64), missing


__all__ = ["Op", "Plan", "Program", "StepError", "from_json", "to_json"]
