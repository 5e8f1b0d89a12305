"""The prediction layer: one verified model version, its schema, and ``predict`` for a batch.

A :class:`Predictor` validates every batch against its manifest (row count, feature count and
names, finite numbers) before the estimator sees it. It knows nothing of HTTP: invalid input
raises :class:`~modelserve.core.errors.InvalidInputError` with field-level problems.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import simdjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from modelserve.core.errors import (
    IntegrityError,
    InvalidInputError,
    Problem,
    SmokeTestError,
    UnsupportedOutputError,
)
from modelserve.core.manifest import LINEAR_FILE, FeatureSchema, Manifest, Task
from modelserve.core.store import LoadedArtifact
from modelserve.protocol.native import ROW_ERROR, request_model_for

logger = logging.getLogger(__name__)

# What a number or a blank can be made of: deleted, a plain body leaves only its skeleton.
_NUMBER_CHARS = b"0123456789+-.eE \t\r\n"
_SKELETON_HEAD = b'{"instancs":['  # {"instances": [ less the 'e' (an exponent character)
_SKELETON_TAIL = b"]}"
_parsers = threading.local()
_NUMBER_ERRORS = frozenset({"float_type", "float_parsing", "int_type", "int_parsing"})


@dataclass(frozen=True, slots=True)
class Batch:
    """A validated batch: a 2-D float64 array in the model's feature order."""

    rows: np.ndarray
    return_probabilities: bool = False


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer for a batch, row for row."""

    predictions: np.ndarray
    classes: list[Any] | None = None
    probabilities: np.ndarray | None = None


class Predictor:
    """Wraps one loaded model version; thread-safe for concurrent ``predict`` calls.

    An artifact loaded with its estimator deferred (a linear model published with
    ``linear.json``) serves from the verified linear form at once; ``load_estimator`` then
    deserializes the estimator when :meth:`confirm` runs (the registry does it in the
    background), which checks both agree to 1e-9 and falls back to the estimator otherwise.
    """

    def __init__(
        self,
        artifact: LoadedArtifact,
        *,
        max_rows: int,
        max_problems: int = 20,
        load_estimator: Callable[[], LoadedArtifact] | None = None,
    ) -> None:
        self.manifest: Manifest = artifact.manifest
        self.max_rows = max_rows
        self.max_problems = max_problems
        self.feature_names: list[str] = self.manifest.input_schema.names
        self.is_classifier = self.manifest.task == "classification"
        self._request_model: type[BaseModel] = request_model_for(self.manifest, max_rows)
        self._estimator: Any = artifact.estimator
        self._load_estimator = load_estimator
        self._confirm_lock = threading.Lock()
        self.confirm_error: str | None = None  # why the deferred estimator could not be loaded
        self._linear: tuple[np.ndarray, np.float64] | None
        if artifact.estimator is not None:
            self._linear = _verified_linear(artifact.estimator, self.manifest)
        elif artifact.linear is not None and load_estimator is not None:
            self._linear = (
                np.asarray(artifact.linear.coef, dtype=np.float64),
                np.float64(artifact.linear.intercept),
            )
        else:
            raise ValueError("an artifact without its estimator needs its linear form and a loader")

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def estimator(self) -> Any:
        """The deserialized estimator (loaded and confirmed now if it was deferred)."""
        if self._estimator is None:
            self.confirm()
        return self._estimator

    @property
    def confirmed(self) -> bool:
        """Whether the estimator is loaded (always, unless the load was deferred)."""
        return self._estimator is not None

    @property
    def settled(self) -> bool:
        """Confirmed, or the attempt failed (``confirm_error``): nothing left to do."""
        return self._estimator is not None or self.confirm_error is not None

    def confirm(self) -> None:
        """Load a deferred estimator and check the linear form against its own ``predict``.

        Raises the store's ArtifactError when the estimator cannot be loaded, or IntegrityError
        when the version on disk is no longer the one verified at first. When the two disagree
        beyond 1e-9 the predictor switches to the estimator's ``predict`` (and logs it).
        """
        with self._confirm_lock:
            if self._estimator is not None or self._load_estimator is None:
                return
            artifact = self._load_estimator()
            if artifact.manifest != self.manifest or artifact.estimator is None:
                raise IntegrityError(
                    f"{self.name} v{self.version} changed on disk after it was verified; "
                    "refusing to load it"
                )
            linear = _verified_linear(artifact.estimator, self.manifest)
            agreed = (
                linear is not None
                and self._linear is not None
                and np.array_equal(linear[0], self._linear[0])
                and linear[1] == self._linear[1]
            )
            self._estimator = artifact.estimator
            if not agreed:
                logger.warning(
                    "%s v%d: %s does not agree with the estimator; predicting with the "
                    "estimator instead",
                    self.name,
                    self.version,
                    LINEAR_FILE,
                )
                self._linear = linear

    @property
    def batchable(self) -> bool:
        """Whether merging concurrent requests into one predict call pays off.

        Not for the lean linear path (~1 µs a call): merging would only add latency. For every
        other estimator, scikit-learn's per-call input checks cost ~100 µs and an ensemble's
        trees a lot more, so one call for many requests saves real time.
        """
        return self._linear is None

    @property
    def version(self) -> int:
        return self.manifest.version

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, version={self.version})"

    # -- validation ---------------------------------------------------------------------------

    def parse_json(self, body: bytes | str) -> Batch:
        """Validate a JSON request body ``{"instances": [...], "return_probabilities": bool}``."""
        if isinstance(body, bytes):
            batch = self._parse_plain_rows(body)
            if batch is not None:
                return batch
        try:
            request = self._request_model.model_validate_json(body)
        except ValidationError as exc:
            raise self._invalid(exc) from exc
        return self._to_batch(request)

    def validate(self, instances: Any, *, return_probabilities: bool = False) -> Batch:
        """Validate Python rows: a 2-D array, a list of lists or a list of feature mappings."""
        if isinstance(instances, np.ndarray):
            return self.validate_array(instances, return_probabilities=return_probabilities)
        try:
            request = self._request_model.model_validate(
                {"instances": instances, "return_probabilities": return_probabilities}
            )
        except ValidationError as exc:
            raise self._invalid(exc) from exc
        return self._to_batch(request)

    def validate_array(
        self, rows: np.ndarray, *, return_probabilities: bool = False, finite: bool = False
    ) -> Batch:
        """Validate a numeric array of shape (rows, features), as tensors arrive from /v2.

        ``finite``: the decoder already knows no value is NaN or infinite (its parser refuses
        them), so they are not looked for again.
        """
        count = len(self.feature_names)
        if rows.ndim != 2:
            raise InvalidInputError(
                f"expected a 2-D batch (rows, {count}), got shape {list(rows.shape)}",
                problems=[Problem(("instances",), "not a 2-D batch", "invalid-shape")],
            )
        problem: Problem | None = None
        if rows.shape[0] == 0:
            problem = Problem(
                ("instances",), "instances is empty: send at least one row", "empty-batch"
            )
        elif rows.shape[0] > self.max_rows:
            problem = Problem(
                ("instances",),
                f"batch has {rows.shape[0]} rows; the limit is {self.max_rows} rows per request "
                "(MODELSERVE_MAX_ROWS)",
                "too-many-rows",
            )
        elif rows.shape[1] != count:
            problem = Problem(
                ("instances", 0),
                f"rows have {rows.shape[1]} values but model {self.name!r} v{self.version} "
                f"takes {count} features: {', '.join(self.feature_names)}",
                "feature-count",
            )
        if problem is not None:
            raise InvalidInputError(problem.msg, problems=[problem])
        matrix = np.asarray(rows, dtype=np.float64)
        if finite:
            return Batch(rows=matrix, return_probabilities=return_probabilities)
        finite_cells = np.isfinite(matrix)
        if not finite_cells.all():
            bad = np.argwhere(~finite_cells)
            problems = [
                Problem(
                    ("instances", int(r), int(c)),
                    f"row {r}, feature {self.feature_names[c]!r}: NaN and Infinity are not allowed",
                    "not-finite",
                )
                for r, c in bad[: self.max_problems]
            ]
            raise self._summarize(problems, len(bad))
        return Batch(rows=matrix, return_probabilities=return_probabilities)

    def _parse_plain_rows(self, body: bytes) -> Batch | None:
        """The common case, ``{"instances": [[numbers...], ...]}``, straight into NumPy.

        Accepts exactly what the Pydantic model accepts for rows as arrays, and nothing else:
        any body with a string, boolean or null in it, another key, a ragged or mis-sized batch,
        a number that is not strict JSON or does not fit a double (NaN, 1e999, +1, 01, .5),
        returns None and takes the full validation path, which also writes the error message.

        Two C-speed passes and no Python object per number: deleting every character a number
        or a blank can hold must leave exactly the skeleton of n rows of ``count`` values
        (``{"instancs":[[,,,],[,,,]]}``), and simdjson, a strict JSON parser, then writes the
        numbers straight into a float64 buffer (~3x faster than ``orjson.loads`` + ``np.array``
        on 10,000 rows).
        """
        count = len(self.feature_names)
        rows = _plain_row_count(body.translate(None, _NUMBER_CHARS), count, self.max_rows)
        if rows is None:
            return None
        try:
            document = json_parser().parse(body)
            instances = document["instances"] if isinstance(document, simdjson.Object) else None
            if not isinstance(instances, simdjson.Array):
                return None
            values = instances.as_buffer(of_type="d")
        except (ValueError, RuntimeError, KeyError, TypeError):
            return None  # not strict JSON, or a number a double cannot hold (BIGINT, 1e999)
        matrix = np.frombuffer(values, dtype=np.float64)
        if matrix.size != rows * count:
            return None
        return Batch(rows=matrix.reshape(rows, count))

    def _to_batch(self, request: BaseModel) -> Batch:
        instances: list[list[float] | dict[str, float]] = request.instances  # type: ignore[attr-defined]
        names = self.feature_names
        rows = [
            row if isinstance(row, list) else [row[name] for name in names] for row in instances
        ]
        return Batch(
            rows=np.asarray(rows, dtype=np.float64),
            return_probabilities=request.return_probabilities,  # type: ignore[attr-defined]
        )

    # -- prediction ---------------------------------------------------------------------------

    def predict(self, instances: Any, *, return_probabilities: bool = False) -> Prediction:
        """Validate ``instances`` against the manifest and predict them."""
        return self.predict_batch(
            self.validate(instances, return_probabilities=return_probabilities)
        )

    def predict_json(self, body: bytes | str) -> Prediction:
        """Validate a JSON request body and predict it."""
        return self.predict_batch(self.parse_json(body))

    def check_outputs(self, batch: Batch) -> None:
        """Refuse outputs the model cannot give (probabilities from a regressor)."""
        if batch.return_probabilities and not self.is_classifier:
            raise UnsupportedOutputError(
                f"model {self.name!r} v{self.version} is a regressor; it has no class "
                "probabilities (drop return_probabilities)"
            )

    def predict_batch(self, batch: Batch) -> Prediction:
        """Predict an already validated batch; refuse it if a prediction is not a number."""
        prediction = self.predict_unchecked(batch)
        self.check_finite(prediction.predictions)
        return prediction

    def check_finite(self, predictions: np.ndarray) -> None:
        """Raise InvalidInputError when a regression answer is NaN or infinite.

        Finite inputs far outside what the model was fit on (1e308 into a linear model) can
        overflow; answering ``null`` with a 200 would hide it, so the rows are named instead.
        """
        if predictions.dtype.kind != "f":
            return
        if (
            math.isfinite(predictions[0])
            if predictions.shape == (1,)
            else np.isfinite(predictions).all()
        ):
            return
        bad = np.argwhere(~np.isfinite(predictions.reshape(len(predictions), -1)))
        rows = sorted({int(row) for row, _ in bad})
        problems = [
            Problem(
                ("instances", row),
                f"row {row}: model {self.name!r} v{self.version} predicts a value that is not a "
                "finite number (an input far outside the range the model was trained on?)",
                "prediction-not-finite",
            )
            for row in rows[: self.max_problems]
        ]
        raise self._summarize(problems, len(rows))

    def predict_unchecked(self, batch: Batch) -> Prediction:
        """Predict an already validated batch, as the estimator answers (see predict_batch)."""
        self.check_outputs(batch)
        linear = self._linear
        if linear is not None:
            coef, intercept = linear
            predictions = batch.rows.dot(coef) + intercept
        else:
            predictions = np.asarray(self.estimator.predict(batch.rows))
        if not batch.return_probabilities:
            return Prediction(predictions=predictions)
        return Prediction(
            predictions=predictions,
            classes=list(self.manifest.output.classes or []),
            probabilities=np.asarray(self.estimator.predict_proba(batch.rows)),
        )

    # -- error translation --------------------------------------------------------------------

    def _invalid(self, exc: ValidationError) -> InvalidInputError:
        errors = exc.errors(include_url=False)
        return self._summarize([self._problem(e) for e in errors[: self.max_problems]], len(errors))

    @staticmethod
    def _summarize(problems: list[Problem], total: int) -> InvalidInputError:
        if total == 1:
            return InvalidInputError(problems[0].msg, problems=problems)
        message = f"{total} problems in the request"
        message += f"; the first {len(problems)} are listed" if total > len(problems) else ""
        return InvalidInputError(f"{message}: {problems[0].msg}; ...", problems=problems)

    # -- load-time check ----------------------------------------------------------------------

    def smoke_test(self) -> None:
        """Predict one row of training means; raise SmokeTestError if the answer is unusable."""
        row = np.array([[f.mean or 0.0 for f in self.manifest.input_schema.features]])
        label = f"{self.name} v{self.version}"
        try:
            result = self.predict_batch(Batch(rows=row, return_probabilities=self.is_classifier))
        except Exception as exc:
            raise SmokeTestError(f"{label}: trial prediction failed: {exc}") from exc
        if result.predictions.shape != (1,):
            raise SmokeTestError(
                f"{label}: trial prediction has shape {list(result.predictions.shape)}, not [1]"
            )
        if self.is_classifier:
            classes = self.manifest.output.classes or []
            if result.predictions[0] not in classes or result.probabilities is None:
                raise SmokeTestError(f"{label}: trial prediction is not one of {classes}")
            if result.probabilities.shape != (1, len(classes)):
                raise SmokeTestError(
                    f"{label}: probabilities do not match the {len(classes)} classes"
                )
        elif not np.isfinite(result.predictions.astype(np.float64)).all():
            raise SmokeTestError(f"{label}: trial prediction is not a finite number")

    def _problem(self, error: ErrorDetails) -> Problem:  # noqa: PLR0911 - one case per kind
        kind = error["type"]
        raw_loc = error["loc"]
        ctx = error.get("ctx") or {}
        loc = _strip_row_tag(tuple(raw_loc))
        count = len(self.feature_names)
        if kind == "json_invalid":
            return Problem(
                loc,
                f"request body is not valid JSON: {ctx.get('error', error['msg'])}",
                "invalid-json",
            )
        if loc == ("instances",):
            if kind == "too_short":
                return Problem(loc, "instances is empty: send at least one row", "empty-batch")
            if kind == "too_long":
                return Problem(
                    loc,
                    f"batch has {ctx.get('actual_length')} rows; the limit is {self.max_rows} "
                    "rows per request (MODELSERVE_MAX_ROWS)",
                    "too-many-rows",
                )
        if len(loc) == 2 and loc[0] == "instances":
            row = loc[1]
            if kind in ("too_short", "too_long"):
                return Problem(
                    loc,
                    f"row {row} has {ctx.get('actual_length')} values but model {self.name!r} "
                    f"v{self.version} takes {count} features: {', '.join(self.feature_names)}",
                    "feature-count",
                )
            if kind == ROW_ERROR:
                return Problem(
                    loc, f"row {row} {error['msg'].removeprefix('each row ')}", "invalid-row"
                )
        if len(loc) == 3 and loc[0] == "instances":
            row, where = loc[1], loc[2]
            feature = (
                self.feature_names[where] if isinstance(where, int) and where < count else where
            )
            if kind == "missing":
                return Problem(loc, f"row {row} is missing feature {feature!r}", "missing-feature")
            if kind == "extra_forbidden":
                return Problem(
                    loc,
                    f"row {row} has unknown feature {feature!r}; model {self.name!r} "
                    f"v{self.version} takes: {', '.join(self.feature_names)}",
                    "unknown-feature",
                )
            if kind == "finite_number":
                return Problem(
                    loc,
                    f"row {row}, feature {feature!r}: NaN and Infinity are not allowed",
                    "not-finite",
                )
            if kind in _NUMBER_ERRORS:
                return Problem(
                    loc,
                    f"row {row}, feature {feature!r}: expected a number, "
                    f"got {_describe(error.get('input'))}",
                    "not-a-number",
                )
        where = ".".join(str(part) for part in loc) or "body"
        return Problem(loc, f"{where}: {error['msg']}", kind.replace("_", "-"))


_LINEAR_REGRESSORS = frozenset(
    {
        "sklearn.linear_model._base.LinearRegression",
        "sklearn.linear_model._ridge.Ridge",
        "sklearn.linear_model._coordinate_descent.Lasso",
        "sklearn.linear_model._coordinate_descent.ElasticNet",
    }
)
_LEAN_TOLERANCE = 1e-9


def linear_attachment(estimator: Any, task: Task, schema: FeatureSchema) -> dict[str, bytes]:
    """``{"linear.json": ...}`` for an estimator the lean path can serve, else ``{}``.

    Published beside the model so that a server can answer with it before it has imported
    scikit-learn; the same 1e-9 check against ``predict`` is made here, at training time.
    """
    linear = _linear_of(estimator, task, schema)
    if linear is None:
        return {}
    coef, intercept = linear
    return {LINEAR_FILE: orjson.dumps({"coef": coef.tolist(), "intercept": float(intercept)})}


def _verified_linear(estimator: Any, manifest: Manifest) -> tuple[np.ndarray, np.float64] | None:
    """``(coef, intercept)`` when ``X @ coef + intercept`` is the estimator's own predict.

    scikit-learn's ``predict`` spends ~100 µs per call on input checks that the Predictor has
    already made; for plain linear regressors the math is one dot product. It is used only when
    it agrees with the estimator's ``predict`` to 1e-9 on rows spread over the training range.
    """
    return _linear_of(estimator, manifest.task, manifest.input_schema)


def _linear_of(
    estimator: Any, task: Task, schema: FeatureSchema
) -> tuple[np.ndarray, np.float64] | None:
    name = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if name not in _LINEAR_REGRESSORS or task != "regression":
        return None
    coef = np.asarray(getattr(estimator, "coef_", None), dtype=np.float64)
    intercept = np.asarray(getattr(estimator, "intercept_", np.nan), dtype=np.float64)
    if coef.ndim != 1 or coef.shape[0] != schema.count or intercept.ndim != 0:
        return None
    rng = np.random.default_rng(0)
    features = schema.features
    centre = np.array([f.mean or 0.0 for f in features])
    spread = np.array([f.std or 1.0 for f in features])
    trial = np.vstack([centre, centre + spread * rng.normal(scale=3.0, size=(63, len(features)))])
    expected = np.asarray(estimator.predict(trial), dtype=np.float64)
    lean = trial.dot(coef) + np.float64(intercept)  # exactly what predict_batch computes
    if not np.allclose(lean, expected, rtol=0, atol=_LEAN_TOLERANCE):
        return None
    return coef, np.float64(intercept)


def json_parser() -> simdjson.Parser:
    """This thread's simdjson parser (a parser is not thread-safe; its documents live until
    its next ``parse``, so callers copy what they keep before parsing again)."""
    parser: simdjson.Parser | None = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = simdjson.Parser()
    return parser


def _plain_row_count(skeleton: bytes, count: int, max_rows: int) -> int | None:
    """n when ``skeleton`` is exactly that of n rows of ``count`` values (1 <= n <= max_rows)."""
    row = b"[" + b"," * (count - 1) + b"]"
    inner = len(skeleton) - len(_SKELETON_HEAD) - len(_SKELETON_TAIL) + 1  # n rows and n commas
    rows, extra = divmod(inner, len(row) + 1)
    if extra or not 0 < rows <= max_rows:
        return None
    expected = b"".join((_SKELETON_HEAD, (row + b",") * (rows - 1), row, _SKELETON_TAIL))
    return rows if skeleton == expected else None


def _strip_row_tag(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union tag ("array"/"object") pydantic puts after the row index."""
    if len(loc) >= 3 and loc[0] == "instances" and loc[2] in ("array", "object"):
        return loc[:2] + loc[3:]
    return loc


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = value if len(value) <= 20 else value[:20] + "…"
        return f"string {text!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, Sequence):
        return "an array"
    return type(value).__name__
