"""Training: fit an estimator on synthetic or CSV data and publish a verified artifact.

``modelserve train`` (and ``python -m modelserve.train_model``) call :func:`train`.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelserve.core.errors import (
    DatasetError,
    ModelServeError,
    TrainingError,
    UnknownEstimatorError,
    UntrustedTypeError,
)
from modelserve.core.manifest import (
    ArtifactFormat,
    EstimatorInfo,
    Manifest,
    OutputSpec,
    RuntimeVersions,
    Task,
    TrainingData,
)
from modelserve.core.settings import DEFAULT_TRUSTED_TYPES
from modelserve.core.store import (
    LoadPolicy,
    ManifestDraft,
    ModelStore,
    deserialize,
    serialize,
    validate_model_name,
)
from modelserve.training.compile import lean_forms
from modelserve.training.report import build_report
from modelserve.training.tabular import (
    Column,
    build_estimator,
    describe_steps,
    input_schema,
    is_matrix,
    read_csv,
    table,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EstimatorKind:
    """A trainable estimator: its task and how to build it for a seed."""

    task: Task
    build: Callable[[int], Any]
    description: str


def _sklearn(module: str, name: str) -> Any:
    """A scikit-learn class, imported when training needs it (``serve`` never imports it)."""
    return getattr(importlib.import_module(f"sklearn.{module}"), name)


ESTIMATORS: dict[str, EstimatorKind] = {
    "linear": EstimatorKind(
        "regression",
        lambda seed: _sklearn("linear_model", "LinearRegression")(),
        "LinearRegression",
    ),
    "ridge": EstimatorKind(
        "regression", lambda seed: _sklearn("linear_model", "Ridge")(random_state=seed), "Ridge"
    ),
    "lasso": EstimatorKind(
        "regression", lambda seed: _sklearn("linear_model", "Lasso")(random_state=seed), "Lasso"
    ),
    "random-forest": EstimatorKind(
        "regression",
        lambda seed: _sklearn("ensemble", "RandomForestRegressor")(
            n_estimators=100, random_state=seed
        ),
        "RandomForestRegressor",
    ),
    "gradient-boosting": EstimatorKind(
        "regression",
        lambda seed: _sklearn("ensemble", "GradientBoostingRegressor")(random_state=seed),
        "GradientBoostingRegressor",
    ),
    "logistic-regression": EstimatorKind(
        "classification",
        lambda seed: _sklearn("linear_model", "LogisticRegression")(
            max_iter=1000, random_state=seed
        ),
        "LogisticRegression",
    ),
    "random-forest-classifier": EstimatorKind(
        "classification",
        lambda seed: _sklearn("ensemble", "RandomForestClassifier")(
            n_estimators=100, random_state=seed
        ),
        "RandomForestClassifier",
    ),
    "gradient-boosting-classifier": EstimatorKind(
        "classification",
        lambda seed: _sklearn("ensemble", "GradientBoostingClassifier")(random_state=seed),
        "GradientBoostingClassifier",
    ),
    "hist-gradient-boosting": EstimatorKind(
        "regression",
        lambda seed: _sklearn("ensemble", "HistGradientBoostingRegressor")(random_state=seed),
        "HistGradientBoostingRegressor",
    ),
    "hist-gradient-boosting-classifier": EstimatorKind(
        "classification",
        lambda seed: _sklearn("ensemble", "HistGradientBoostingClassifier")(random_state=seed),
        "HistGradientBoostingClassifier",
    ),
}
LINEAR_ESTIMATORS = frozenset({"linear", "ridge", "lasso", "logistic-regression"})
"""Estimators whose numeric columns are scaled when they stand behind a pipeline."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """What to train and how. The defaults reproduce the original design's model."""

    name: str = "default"
    estimator: str = "linear"
    samples: int = 1000
    features: int = 10
    noise: float = 0.1
    seed: int = 42
    test_size: float = 0.2
    csv: Path | None = None
    target: str | None = None
    format: ArtifactFormat = "skops"
    categorical: tuple[str, ...] = ()
    """CSV columns of whole numbers to treat as categories (text columns always are)."""
    drop: tuple[str, ...] = ()
    """CSV columns to leave out of the features."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """Features (typed columns and their values), target, and where they came from."""

    columns: list[Column]
    values: list[list[Any]]
    y: np.ndarray
    source: str
    sha256: str | None = None
    target: str | None = None

    @property
    def feature_names(self) -> list[str]:
        return [column.name for column in self.columns]


@dataclass(frozen=True, slots=True)
class TrainResult:
    manifest: Manifest
    path: Path


def estimator_kind(name: str) -> EstimatorKind:
    try:
        return ESTIMATORS[name]
    except KeyError as exc:
        raise UnknownEstimatorError(
            f"unknown estimator {name!r}; choose one of: {', '.join(ESTIMATORS)}"
        ) from exc


def synthetic_dataset(task: Task, samples: int, features: int, noise: float, seed: int) -> Dataset:
    """``make_regression`` (or ``make_classification``) data with features named x0, x1, ..."""
    if samples < 10:
        raise DatasetError(f"--samples must be at least 10, got {samples}")
    if features < 1:
        raise DatasetError(f"--features must be at least 1, got {features}")
    names = [f"x{i}" for i in range(features)]
    if task == "regression":
        X, y = _sklearn("datasets", "make_regression")(
            n_samples=samples, n_features=features, noise=noise, random_state=seed
        )
        call = f"make_regression(n_samples={samples}, n_features={features}, noise={noise}"
    else:
        informative = max(1, min(features, 5))
        X, y = _sklearn("datasets", "make_classification")(
            n_samples=samples,
            n_features=features,
            n_informative=informative,
            n_redundant=0,
            n_classes=2,
            random_state=seed,
        )
        call = (
            f"make_classification(n_samples={samples}, n_features={features}, "
            f"n_informative={informative}, n_redundant=0"
        )
    matrix = np.asarray(X, dtype=np.float64)
    return Dataset(
        columns=[Column(name, "float64") for name in names],
        values=[matrix[:, i].tolist() for i in range(features)],
        y=np.asarray(y),
        source=f"sklearn.datasets.{call}, random_state={seed})",
    )


def load_csv(
    path: Path,
    target: str,
    task: Task,
    *,
    categorical: tuple[str, ...] = (),
    drop: tuple[str, ...] = (),
) -> Dataset:
    """Read a CSV with a header row: ``target`` and typed feature columns (see tabular)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DatasetError(f"CSV file {path} does not exist") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read CSV file {path}: {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text") from exc
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if not rows:
        raise DatasetError(f"{path} is empty: expected a header row and data rows")
    header = [cell.strip() for cell in rows[0]]
    body = rows[1:]
    if target not in header:
        raise DatasetError(
            f"{path} has no target column {target!r}; its columns are: {', '.join(header)}"
        )
    if target in (*categorical, *drop):
        raise DatasetError(f"{target!r} is the target; it cannot be --categorical or --drop")
    if not body:
        raise DatasetError(f"{path} has a header but no data rows")
    if len(set(header)) != len(header) or any(not cell for cell in header):
        raise DatasetError(f"{path}: column names must be unique and non-empty, got {header}")
    if len(header) < 2:
        raise DatasetError(f"{path} has only the target column; at least one feature is needed")
    target_index = header.index(target)
    labels: list[str] = []
    features: list[list[str]] = []
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise DatasetError(
                f"{path} data row {i + 1}: {len(row)} fields, the header has {len(header)}"
            )
        label = row[target_index].strip()
        if not label:
            raise DatasetError(f"{path} data row {i + 1}, column {target!r}: the target is empty")
        labels.append(label)
        features.append([cell for index, cell in enumerate(row) if index != target_index])
    names = [name for name in header if name != target]
    columns, values = read_csv(features, names, str(path), categorical=categorical, drop=drop)
    y = (
        np.array([_number(path, i + 2, target, cell) for i, cell in enumerate(labels)])
        if task == "regression"
        else _labels(labels)
    )
    return Dataset(
        columns=columns,
        values=values,
        y=y,
        source=str(path.resolve()),
        sha256=hashlib.sha256(raw).hexdigest(),
        target=target,
    )


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError as exc:
        raise DatasetError(
            f"{path} data row {line - 1}, column {column!r}: {cell.strip()!r} is not a number"
        ) from exc
    if not math.isfinite(value):
        raise DatasetError(
            f"{path} data row {line - 1}, column {column!r}: {cell.strip()!r} is not finite"
        )
    return value


def _labels(cells: list[str]) -> np.ndarray:
    """Class labels: integers when every label is an integer, strings otherwise."""
    try:
        return np.array([int(cell) for cell in cells])
    except ValueError:
        return np.array(cells)


def train(
    config: TrainConfig,
    store: ModelStore,
    signing_key: Ed25519PrivateKey | None = None,
    trusted: tuple[str, ...] = DEFAULT_TRUSTED_TYPES,
) -> TrainResult:
    """Fit the configured estimator, score it on held-out data, and publish a new version.

    Nothing a server would refuse is published: the serialized model is read back with the
    server's allowlist (``trusted``: the defaults plus ``MODELSERVE_TRUSTED_TYPES``) and must
    predict the held-out rows as the fitted estimator does.
    """
    validate_model_name(config.name)
    kind = estimator_kind(config.estimator)
    if not 0.0 < config.test_size < 1.0:
        raise TrainingError(f"--test-size must be between 0 and 1, got {config.test_size}")
    if config.csv is not None:
        if not config.target:
            raise DatasetError("--csv needs --target: the name of the column to predict")
        data = load_csv(
            config.csv,
            config.target,
            kind.task,
            categorical=config.categorical,
            drop=config.drop,
        )
    else:
        if config.categorical or config.drop:
            raise DatasetError("--categorical and --drop name columns of a --csv file")
        data = synthetic_dataset(
            kind.task, config.samples, config.features, config.noise, config.seed
        )
    estimator = kind.build(config.seed)
    native_missing = bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    matrix = is_matrix(data.columns, native_missing)
    columns = (
        [Column(c.name, "float64", missing=c.missing) for c in data.columns]
        if matrix
        else data.columns
    )
    if not matrix:
        estimator = build_estimator(
            estimator,
            columns,
            linear=config.estimator in LINEAR_ESTIMATORS,
            native_missing=native_missing,
        )
    X = table(columns, data.values, matrix)
    stratify = data.y if kind.task == "classification" and _can_stratify(data.y) else None
    try:
        X_train, X_test, y_train, y_test = _sklearn("model_selection", "train_test_split")(
            X, data.y, test_size=config.test_size, random_state=config.seed, stratify=stratify
        )
    except ValueError as exc:
        raise DatasetError(f"cannot split {len(data.y)} rows into train and test: {exc}") from exc
    if kind.task == "classification" and len(np.unique(y_train)) < 2:
        raise DatasetError("classification needs at least two classes in the training data")
    logger.info("fitting %s on %d rows", kind.description, len(y_train))
    try:
        estimator.fit(X_train, y_train)
    except ValueError as exc:
        raise TrainingError(f"{kind.description} could not be fitted: {exc}") from exc
    predictions = np.asarray(estimator.predict(X_test))
    classes = np.asarray(estimator.classes_).tolist() if kind.task == "classification" else None
    schema = input_schema(
        estimator,
        X_train,
        columns,
        kind.task,
        form="matrix" if matrix else "frame",
        nullable={c.name for c in columns if c.missing},
    )
    draft = ManifestDraft(
        runtime=RuntimeVersions.current(),
        estimator=EstimatorInfo(
            class_name=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            params=json_safe(estimator.get_params(deep=False)),
            steps=describe_steps(estimator),
        ),
        task=kind.task,
        input_schema=schema,
        output=OutputSpec(dtype=str(predictions.dtype), classes=classes),
        metrics=_metrics(kind.task, y_test, predictions),
        training_data=TrainingData(
            source=data.source,
            sha256=data.sha256,
            target=data.target,
            n_rows=len(data.y),
            n_train=len(y_train),
            n_test=len(y_test),
            seed=config.seed,
        ),
    )
    report = build_report(
        kind.task,
        f"{config.name}: {kind.description}",
        np.asarray(y_test),
        predictions,
        draft.metrics,
        classes,
    )
    forms, compiled = lean_forms(estimator, kind.task, schema, X_test)
    draft = draft.model_copy(update={"compiled": compiled})
    attachments = {**report, **forms}
    payload = serialize(estimator, config.format)
    check_servable(config.name, estimator, payload, config.format, trusted, X_test)
    manifest = store.publish(config.name, payload, config.format, draft, signing_key, attachments)
    return TrainResult(manifest=manifest, path=store.version_dir(manifest.name, manifest.version))


TRIAL_ROWS = 64
"""Rows of held-out (or sample) data a model read back from its file must predict as fitted."""


def check_servable(
    name: str,
    estimator: Any,
    payload: bytes,
    fmt: ArtifactFormat,
    trusted: tuple[str, ...],
    X: Any,
) -> None:
    """Raise TrainingError unless ``payload`` loads as a server loads it and predicts ``X``'s
    first rows exactly as ``estimator`` does."""
    label = f"{name} (not published)"
    try:
        loaded = deserialize(label, payload, fmt, LoadPolicy(trusted_types=trusted))
    except UntrustedTypeError as exc:
        raise TrainingError(
            f"a server would refuse this model: {exc.message}. If you trust these types, add "
            "them to MODELSERVE_TRUSTED_TYPES (a JSON list) here and on every server; or "
            "publish with --format pickle, which servers load only with "
            "MODELSERVE_ALLOW_PICKLE=true"
        ) from exc
    except ModelServeError as exc:
        raise TrainingError(f"a server could not load this model: {exc.message}") from exc
    rows = X.iloc[:TRIAL_ROWS] if hasattr(X, "iloc") else X[:TRIAL_ROWS]
    try:
        expected = np.asarray(estimator.predict(rows))
        answered = np.asarray(loaded.predict(rows))
    except Exception as exc:
        raise TrainingError(f"the model read back from its file cannot predict: {exc}") from exc
    if expected.shape != answered.shape or not np.array_equal(expected, answered):
        raise TrainingError(
            "the model read back from its file predicts differently from the fitted one; "
            "it is not published"
        )


def _can_stratify(y: np.ndarray) -> bool:
    _, counts = np.unique(y, return_counts=True)
    return bool(counts.min() >= 2)


def _metrics(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import (  # noqa: PLC0415 - see _sklearn
        accuracy_score,
        f1_score,
        mean_absolute_error,
        mean_squared_error,
        r2_score,
    )

    if task == "regression":
        return {
            "r2": float(r2_score(y_true, y_pred)),
            "mae": float(mean_absolute_error(y_true, y_pred)),
            "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
        }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="macro")),
    }


def json_safe(params: dict[str, Any]) -> dict[str, Any]:
    """Estimator parameters as JSON: plain values kept, anything else by its repr."""
    safe: dict[str, Any] = {}
    for key, value in params.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            safe[key] = repr(value)
        else:
            safe[key] = value
    return safe
