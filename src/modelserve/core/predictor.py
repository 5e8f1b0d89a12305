"""The prediction layer: one verified model version, its schema check, and ``predict``.

A :class:`Predictor` predicts checked batches only: its :attr:`~Predictor.schema`
(:class:`~modelserve.core.schema.SchemaCheck`) validates every batch against the manifest
before the estimator sees it. It knows nothing of HTTP or of any wire format: invalid input
raises :class:`~modelserve.core.errors.InvalidInputError` with field-level problems.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import orjson

from modelserve.core.batch import Batch, Prediction, checked, checked_table
from modelserve.core.compiled import CompiledForm, evaluate, verify
from modelserve.core.errors import (
    IntegrityError,
    InvalidInputError,
    Problem,
    SmokeTestError,
    UnsupportedOutputError,
)
from modelserve.core.manifest import LINEAR_FILE, FeatureSchema, Manifest, Task
from modelserve.core.schema import SchemaCheck, summarize
from modelserve.core.store import LoadedArtifact

logger = logging.getLogger(__name__)


class Predictor:
    """Wraps one loaded model version; thread-safe for concurrent ``predict`` calls.

    An artifact loaded with its estimator deferred (a linear model published with
    ``linear.json``, a model published with ``compiled.bin``) serves from that form at once;
    ``load_estimator`` then deserializes the estimator when :meth:`confirm` runs (the registry
    does it in the background), which checks both agree (the linear form to 1e-9, the compiled
    form exactly, on stress rows) and falls back to the estimator otherwise. A compiled form
    that agrees is then timed against the estimator, and serves the batch sizes at which it is
    the faster (:attr:`compiled_up_to`).
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
        self.schema = SchemaCheck(self.manifest, max_rows=max_rows, max_problems=max_problems)
        self.check: Callable[[Batch], Batch] = self.schema.check
        """``batch`` checked against this version's schema (see :class:`SchemaCheck`)."""
        self._estimator: Any = artifact.estimator
        self._load_estimator = load_estimator
        self._confirm_lock = threading.Lock()
        self.confirm_error: str | None = None  # why the deferred estimator could not be loaded
        self._linear: tuple[np.ndarray, np.float64] | None = None
        self._compiled: CompiledForm | None = None
        self._compiled_checked = False
        self._compiled_timed = False
        self.compiled_up_to: int | None = None
        """The largest batch the compiled form serves (measured at load); None for any size."""
        self._float32 = (
            self.manifest.input_schema.form == "matrix"
            and self.manifest.estimator.class_name in FLOAT32_ESTIMATORS
        )
        info = self.manifest.compiled
        self.compiled_reason: str | None = artifact.compiled_error or (
            info.reason if info is not None else None
        )
        """Why the version is not served by a compiled form (None when it is, or has none)."""
        if artifact.estimator is not None:
            self._linear = _verified_linear(artifact.estimator, self.manifest)
            if artifact.compiled is not None:
                self._compiled = artifact.compiled
                self._check_compiled(artifact.estimator)
        elif load_estimator is None:
            raise ValueError("an artifact without its estimator needs a loader")
        elif artifact.compiled is not None:
            self._compiled = artifact.compiled
        elif artifact.linear is not None:
            self._linear = (
                np.asarray(artifact.linear.coef, dtype=np.float64),
                np.float64(artifact.linear.intercept),
            )
        else:
            raise ValueError("an artifact without its estimator needs its linear or compiled form")

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
        """Confirmed (and a compiled form timed), or the attempt failed (``confirm_error``):
        nothing left to do."""
        if self.confirm_error is not None:
            return True
        return self._estimator is not None and (self._compiled is None or self._compiled_timed)

    @property
    def engine(self) -> Literal["compiled", "linear", "scikit-learn"]:
        """What answers: ``"compiled"``, ``"linear"`` (the lean linear form) or
        ``"scikit-learn"`` (the estimator itself)."""
        if self._compiled is not None:
            return "compiled"
        return "linear" if self._linear is not None else "scikit-learn"

    def confirm(self) -> None:
        """Load a deferred estimator, check the form served meanwhile against it, time it.

        Raises the store's ArtifactError when the estimator cannot be loaded, or IntegrityError
        when the version on disk is no longer the one verified at first. When the two disagree
        beyond 1e-9 the predictor switches to the estimator's ``predict`` (and logs it).
        """
        with self._confirm_lock:
            if self._estimator is None and self._load_estimator is not None:
                self._load_deferred()
            estimator = self._estimator
            if estimator is None:
                return
            if self._compiled is not None and not self._compiled_checked:
                self._check_compiled(estimator)
            form = self._compiled
            if form is not None and not self._compiled_timed:
                schema = self.manifest.input_schema
                self.compiled_up_to = verify.fastest_up_to(
                    form,
                    schema,
                    estimator_answers(estimator, schema),
                    matrix=all(f.dtype != "string" for f in schema.features),
                )
                self._compiled_timed = True
                logger.info(
                    "%s v%d: the compiled form serves batches of %s rows; scikit-learn %s",
                    self.name,
                    self.version,
                    "any number of"
                    if self.compiled_up_to is None
                    else f"up to {self.compiled_up_to}",
                    "none" if self.compiled_up_to is None else "the larger ones",
                )

    def _check_compiled(self, estimator: Any) -> None:
        """Use the compiled form only if it answers exactly as ``estimator`` on stress rows."""
        form = self._compiled
        assert form is not None  # noqa: S101 - called only with a form
        schema = self.manifest.input_schema
        reason, rows = verify.check(
            form, schema, estimator_answers(estimator, schema), classifier=self.is_classifier
        )
        self._compiled_checked = True
        if reason is not None:
            self._compiled = None
            self.compiled_reason = reason
            logger.warning(
                "%s v%d: %s; predicting with the estimator instead", self.name, self.version, reason
            )
        else:
            logger.info(
                "%s v%d: the compiled form agrees with the estimator on %d rows",
                self.name,
                self.version,
                rows,
            )

    def _load_deferred(self) -> None:
        """Load the deferred estimator; a linear form served meanwhile must agree with it."""
        assert self._load_estimator is not None  # noqa: S101 - only deferred loads come here
        artifact = self._load_estimator()
        if artifact.manifest != self.manifest or artifact.estimator is None:
            raise IntegrityError(
                f"{self.name} v{self.version} changed on disk after it was verified; "
                "refusing to load it"
            )
        served = self._linear
        self._estimator = artifact.estimator
        if served is None:
            return
        linear = _verified_linear(artifact.estimator, self.manifest)
        if not (
            linear is not None and np.array_equal(linear[0], served[0]) and linear[1] == served[1]
        ):
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
        trees a lot more, so one call for many requests saves real time; so does a compiled
        form, whose per-call work (its preprocessing above all) is shared by the merged rows.
        """
        return self._linear is None

    @property
    def merges_inline(self) -> bool:
        """Whether merged calls run on the event loop rather than in a worker thread: for a
        compiled form, whose call costs microseconds a row, handing it to a thread (and the
        interpreter lock back and forth) would cost more than the call. A merged batch larger
        than the form serves goes to the thread all the same (:meth:`compiled_answers`)."""
        return self._compiled is not None

    def compiled_answers(self, rows: int) -> bool:
        """Whether a batch of ``rows`` rows is answered by the compiled form."""
        limit = self.compiled_up_to
        return self._compiled is not None and (limit is None or rows <= limit)

    @property
    def version(self) -> int:
        return self.manifest.version

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, version={self.version})"

    # -- validation ---------------------------------------------------------------------------

    def validate(self, instances: Any, *, return_probabilities: bool = False) -> Batch:
        """Check Python rows: a 2-D array, or a list of rows (lists, or feature mappings)."""
        if isinstance(instances, np.ndarray):
            batch = Batch.of_matrix(instances, return_probabilities=return_probabilities)
        elif isinstance(instances, list | tuple):
            batch = Batch.of_records(instances, return_probabilities=return_probabilities)
        else:
            message = (
                f"instances must be a list of rows or a 2-D array, not {type(instances).__name__}"
            )
            raise InvalidInputError(
                message, problems=[Problem(("instances",), message, "list-type")]
            )
        return self.schema.check(batch)

    # -- prediction ---------------------------------------------------------------------------

    def predict(self, instances: Any, *, return_probabilities: bool = False) -> Prediction:
        """Validate ``instances`` against the manifest and predict them."""
        return self.predict_batch(
            self.validate(instances, return_probabilities=return_probabilities)
        )

    def check_outputs(self, batch: Batch) -> None:
        """Refuse outputs the model cannot give (probabilities from a regressor)."""
        if batch.return_probabilities and not self.is_classifier:
            raise UnsupportedOutputError(
                f"model {self.name!r} v{self.version} is a regressor; it has no class "
                "probabilities (drop return_probabilities)"
            )

    def predict_batch(self, batch: Batch) -> Prediction:
        """Predict a checked batch; refuse it if a prediction is not a number."""
        prediction = self.predict_unchecked(batch)
        self.check_finite(prediction.predictions)
        return prediction

    def check_single_precision(self, rows: np.ndarray) -> None:
        """Raise InvalidInputError when a model that compares its inputs as float32 (decision
        trees and their ensembles) is sent a finite number float32 cannot hold (1e300): the
        estimator would fail on it, and a compiled form must not answer it either."""
        if not self._float32 or rows.dtype != np.float64:
            return
        if np.abs(rows).max(initial=0.0) <= _FLOAT32_MAX:  # NaN fails it: then look closer
            return
        with np.errstate(over="ignore"):
            overflow = np.isinf(rows.astype(np.float32)) & np.isfinite(rows)
        if not overflow.any():
            return
        found = np.argwhere(overflow)
        names = self.feature_names
        problems = [
            Problem(
                ("instances", int(row), names[column]),
                f"row {row}: {names[column]} = {float(rows[row, column])!r} is beyond the float32 "
                f"range (±{float(np.finfo(np.float32).max):.4g}) in which model {self.name!r} "
                f"v{self.version} compares its inputs",
                "out-of-range",
            )
            for row, column in found[: self.max_problems]
        ]
        raise summarize(problems, len(found))

    def _refused(self, refusal: evaluate.Refused) -> InvalidInputError:
        """The 422 for rows that this version's preprocessing takes to values its model refuses."""
        label = f"model {self.name!r} v{self.version}"
        because = {
            "float32": f"beyond the float32 range (±{_FLOAT32_MAX:.4g}) once {label} has "
            "preprocessed it, and its trees compare their inputs in float32",
            "finite": f"not a finite number once {label} has preprocessed it (a number too "
            "large for its scaling?), and its model takes finite numbers only",
            "missing": f"missing once {label} has preprocessed it, and its model takes no "
            "missing values",
        }[refusal.why]
        problems = [
            Problem(("instances", row), f"row {row}: a value is {because}", "out-of-range")
            for row in refusal.rows[: self.max_problems]
        ]
        return summarize(problems, len(refusal.rows))

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
        raise summarize(problems, len(rows))

    def predict_unchecked(self, batch: Batch) -> Prediction:
        """Predict a checked batch, as the estimator answers (see predict_batch)."""
        self.check_outputs(batch)
        if self._float32:
            self.check_single_precision(batch.rows)
        linear = self._linear
        compiled = self._compiled
        if compiled is not None and self.compiled_answers(len(batch)):
            try:
                predictions, probabilities = evaluate.answer(
                    compiled,
                    batch.table if batch.table is not None else batch.rows,
                    probabilities=batch.return_probabilities,
                )
            except evaluate.Refused as exc:
                raise self._refused(exc) from exc
            if probabilities is None:
                return Prediction(predictions=predictions)
            return Prediction(
                predictions=predictions,
                classes=list(self.manifest.output.classes or []),
                probabilities=np.ascontiguousarray(probabilities),
            )
        if linear is not None:  # a regressor: no probabilities (check_outputs)
            coef, intercept = linear
            return Prediction(predictions=batch.rows.dot(coef) + intercept)
        inputs = self.inputs(batch)
        estimator = self.estimator
        try:
            predictions = np.asarray(estimator.predict(inputs))
            probabilities = (
                np.ascontiguousarray(estimator.predict_proba(inputs))
                if batch.return_probabilities
                else None
            )
        except ValueError as exc:
            refusal = _pipeline_refusal(estimator, inputs)
            if refusal is None:
                raise
            raise self._refused(refusal) from exc
        if probabilities is None:
            return Prediction(predictions=predictions)
        return Prediction(
            predictions=predictions,
            classes=list(self.manifest.output.classes or []),
            probabilities=probabilities,
        )

    def inputs(self, batch: Batch) -> Any:
        """A checked batch as the estimator takes it: its matrix, or a pandas DataFrame."""
        if self.manifest.input_schema.form == "matrix":
            return batch.rows
        return as_frame(self.manifest.input_schema, batch)

    # -- load-time check ----------------------------------------------------------------------

    def smoke_test(self) -> None:
        """Predict one typical row; raise SmokeTestError if the answer is unusable.

        The row holds each feature's training mean, or its most frequent category (see
        :func:`typical_row`).
        """
        label = f"{self.name} v{self.version}"
        try:
            schema = self.manifest.input_schema
            batch = (
                checked(np.array([[f.mean or 0.0 for f in schema.features]]))
                if schema.plain
                else self.schema.check(Batch.of_records([typical_row(schema)]))
            )
            batch.return_probabilities = self.is_classifier
            result = self.predict_batch(batch)
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


def typical_row(schema: FeatureSchema) -> list[Any]:
    """One row a model should answer: each feature's training mean (a whole one for an
    integer), its most frequent category, ``False``, or an empty string."""
    row: list[Any] = []
    for feature in schema.features:
        if feature.categories:
            counts = feature.category_counts or [0] * len(feature.categories)
            row.append(feature.categories[counts.index(max(counts))])
        elif feature.dtype == "string":
            row.append("")
        elif feature.dtype == "bool":
            row.append(False)
        elif feature.dtype == "int64":
            row.append(round(feature.mean or 0.0))
        else:
            row.append(feature.mean or 0.0)
    return row


def as_frame(schema: FeatureSchema, batch: Batch) -> Any:
    """A checked batch as a pandas DataFrame, each column of its feature's type.

    Built as pandas reads a CSV: integers as int64 (float64 where a value is missing), booleans
    as bool (objects where one is missing), strings as objects, a missing value as NaN.
    """
    import pandas as pd  # noqa: PLC0415 - ~0.3 s to import; only models that take frames

    columns = (
        batch.table
        if batch.table is not None
        else tuple(batch.rows[:, i] for i in range(schema.count))
    )
    data: dict[str, Any] = {}
    for feature, values in zip(schema.features, columns, strict=True):
        if feature.dtype in ("int64", "bool") and values.dtype == np.float64:
            missing = np.isnan(values)
            if not missing.any():
                values = values.astype(feature.dtype)  # noqa: PLW2901
            elif feature.dtype == "bool":
                values = np.where(missing, np.nan, values.astype(bool).astype(object))  # noqa: PLW2901
        data[feature.name] = pd.Series(values, dtype=values.dtype, copy=False)
    return pd.DataFrame(data, copy=False)


_FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_ESTIMATORS = frozenset(
    f"sklearn.{path}"
    for path in (
        "tree._classes.DecisionTreeRegressor",
        "tree._classes.DecisionTreeClassifier",
        "tree._classes.ExtraTreeRegressor",
        "tree._classes.ExtraTreeClassifier",
        "ensemble._forest.RandomForestRegressor",
        "ensemble._forest.RandomForestClassifier",
        "ensemble._forest.ExtraTreesRegressor",
        "ensemble._forest.ExtraTreesClassifier",
        "ensemble._gb.GradientBoostingRegressor",
        "ensemble._gb.GradientBoostingClassifier",
    )
)
"""Estimators that cast their inputs to float32 before comparing them with their thresholds."""


def _pipeline_refusal(estimator: Any, inputs: Any) -> evaluate.Refused | None:
    """Why a pipeline failed on ``inputs``, when its preprocessing took values to ones its last
    step refuses (beyond float32 for trees, infinite, or missing); None for any other failure."""
    steps = getattr(estimator, "steps", None)
    if not isinstance(steps, list) or len(steps) < 2:
        return None
    final = steps[-1][1]
    try:
        matrix = estimator[:-1].transform(inputs)
        if hasattr(matrix, "toarray"):  # a sparse matrix
            matrix = matrix.toarray()
        matrix = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return evaluate.refused_rows(
        matrix, float32=_class_path(final) in FLOAT32_ESTIMATORS, missing=True, infinite=True
    )


def _class_path(estimator: Any) -> str:
    return f"{type(estimator).__module__}.{type(estimator).__qualname__}"


def estimator_answers(estimator: Any, schema: FeatureSchema) -> verify.Expected:
    """The estimator's ``(predictions, probabilities or None)`` for rows given as columns (a
    checked batch's), taken as the server gives them: a float64 matrix or a DataFrame."""

    def expected(
        columns: tuple[np.ndarray, ...], probabilities: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        inputs = estimator_inputs(schema, columns)
        with warnings.catch_warnings():  # unseen categories, on purpose: not worth a warning
            warnings.simplefilter("ignore", UserWarning)
            predictions = np.asarray(estimator.predict(inputs))
            if not probabilities:
                return predictions, None
            return predictions, np.asarray(estimator.predict_proba(inputs))

    return expected


def estimator_inputs(schema: FeatureSchema, columns: tuple[np.ndarray, ...]) -> Any:
    """Rows given as columns, as the server gives them to the estimator: a float64 matrix, or a
    DataFrame (:func:`as_frame`)."""
    if schema.form == "matrix":
        return np.column_stack(columns)
    return as_frame(schema, checked_table(columns))


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
    if _class_path(estimator) not in _LINEAR_REGRESSORS or task != "regression":
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


__all__ = [
    "Batch",
    "Prediction",
    "Predictor",
    "estimator_answers",
    "estimator_inputs",
    "linear_attachment",
]
