"""Bring your own model: publish an estimator or ``Pipeline`` fitted elsewhere.

``modelserve import MODEL --name N [--sample data.csv]`` calls :func:`import_model`. ``MODEL``
is a file saved with skops (preferred), pickle or joblib (those two run code when loaded, so
only with ``trust_pickle``), or a scikit-learn model directory written by MLflow (an ``MLmodel``
file with the ``sklearn`` flavor). The feature schema comes from the model itself
(``feature_names_in_``, its fitted encoders' categories), from MLflow's signature and from the
sample's column types; the outputs from ``classes_``. Before anything is published the model
is tried on the sample as a server would try it, read back with the server's allowlist, and
refused with the reason and the fix if a server would refuse it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelserve.core.batch import Batch
from modelserve.core.errors import (
    DatasetError,
    InvalidInputError,
    ModelServeError,
    TrainingError,
    UntrustedTypeError,
)
from modelserve.core.manifest import (
    ArtifactFormat,
    EstimatorInfo,
    FeatureSchema,
    FeatureType,
    OutputSpec,
    RuntimeVersions,
    Task,
    TrainingData,
)
from modelserve.core.predictor import as_frame, typical_row
from modelserve.core.schema import SchemaCheck
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
from modelserve.training.tabular import (
    Column,
    describe_steps,
    fitted_categories,
    input_schema,
    read_csv,
    table,
)
from modelserve.training.train import TrainResult, check_servable, json_safe

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

logger = logging.getLogger(__name__)

MLMODEL = "MLmodel"
SAMPLE_CHECK_ROWS = 10_000
"""Most sample rows the smoke test predicts (all of a smaller sample)."""
_MLFLOW_TYPES: dict[str, FeatureType] = {
    "double": "float64",
    "float": "float64",
    "long": "int64",
    "integer": "int64",
    "boolean": "bool",
    "string": "string",
}


@dataclass(frozen=True, slots=True)
class Source:
    """What was read: the estimator, how, and what it says of its inputs."""

    estimator: Any
    kind: str
    path: Path
    sha256: str
    signature: dict[str, FeatureType] | None = None


def import_model(
    path: Path,
    name: str,
    store: ModelStore,
    *,
    trust_pickle: bool = False,
    sample: Path | None = None,
    feature_names: list[str] | None = None,
    fmt: ArtifactFormat = "skops",
    signing_key: Ed25519PrivateKey | None = None,
    trusted: tuple[str, ...] = DEFAULT_TRUSTED_TYPES,
) -> TrainResult:
    """Publish the model at ``path`` as the next version of ``name`` (see the module)."""
    validate_model_name(name)
    source = read_model(path, trust_pickle=trust_pickle, trusted=trusted)
    estimator = source.estimator
    if not callable(getattr(estimator, "predict", None)):
        raise TrainingError(f"{path} holds a {type(estimator).__name__}, which has no predict")
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int):
        raise TrainingError(f"{path}: the estimator is not fitted (no n_features_in_)")
    known = getattr(estimator, "feature_names_in_", None)
    names = (
        [str(n) for n in known]
        if known is not None
        else feature_names or (list(source.signature) if source.signature else None)
    )
    if known is not None and feature_names and feature_names != names:
        raise TrainingError(
            f"{path}: the model was fitted on the columns {', '.join(names or [])}; "
            "--feature-names cannot rename them"
        )
    columns, values = _sample(sample, names) if sample is not None else (None, None)
    if names is None and columns is not None and len(columns) == n_features:
        names = [column.name for column in columns]
    if names is None:
        raise TrainingError(
            f"{path}: the model was fitted without feature names (on a NumPy array) and no "
            f"names were given: pass --feature-names with its {n_features} names in order, or "
            "--sample with a CSV or Parquet file whose columns are exactly its features"
        )
    if len(names) != n_features or len(set(names)) != len(names):
        raise TrainingError(
            f"{path}: the estimator takes {n_features} features; give as many unique names "
            f"(got {len(names)}: {', '.join(names)})"
        )
    if columns is not None and values is not None:
        by_name = {c.name: (c, v) for c, v in zip(columns, values, strict=True)}
        columns = [by_name[n][0] for n in names]
        values = [by_name[n][1] for n in names]
    frame = known is not None or any(
        c.dtype in ("string", "bool") for c in columns or []
    )  # a model fitted on a DataFrame takes one
    typed = _typed_columns(names, columns, source.signature, estimator)
    if not frame:  # a float matrix model: its numbers are floats, as the trainer records them
        typed = [
            Column(c.name, "float64", False, c.missing) if c.dtype == "int64" else c for c in typed
        ]
    if not frame and any(c.dtype == "string" for c in typed):
        raise TrainingError(
            f"{path}: the model was fitted on a NumPy array, which holds numbers only, but "
            "its features include text"
        )
    X = None if values is None else table(typed, values, matrix=not frame)
    classes = getattr(estimator, "classes_", None)
    task: Task = "classification" if classes is not None else "regression"
    try:
        schema = input_schema(estimator, X, typed, task, form="frame" if frame else "matrix")
    except DatasetError as exc:
        raise TrainingError(f"{path}: {exc.message}") from exc
    rows = 0 if values is None else len(values[0])
    if values is not None:
        _smoke_test(sample or path, estimator, schema, values, task)
    draft = ManifestDraft(
        runtime=RuntimeVersions.current(),
        estimator=EstimatorInfo(
            class_name=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            params=json_safe(estimator.get_params(deep=False))
            if hasattr(estimator, "get_params")
            else {},
            steps=describe_steps(estimator),
        ),
        task=task,
        input_schema=schema,
        output=OutputSpec(
            dtype="float64" if classes is None else str(np.asarray(classes).dtype),
            classes=None if classes is None else np.asarray(classes).tolist(),
        ),
        metrics={},
        training_data=TrainingData(
            source=f"imported {source.kind} {source.path.resolve()}"
            + (f", sample {sample.resolve()}" if sample is not None else ""),
            sha256=source.sha256,
            n_rows=rows,
            n_train=0,
            n_test=0,
        ),
    )
    try:
        payload = serialize(estimator, fmt)
    except Exception as exc:
        raise TrainingError(
            f"skops cannot hold this model ({exc}); publish it as pickle with --format pickle "
            "(servers then load it only with MODELSERVE_ALLOW_PICKLE=true)"
        ) from exc
    trial = X if values is not None else _typical(schema)
    check_servable(name, estimator, payload, fmt, trusted, trial)
    forms, compiled = lean_forms(estimator, task, schema, X)
    draft = draft.model_copy(update={"compiled": compiled})
    manifest = store.publish(name, payload, fmt, draft, signing_key, forms)
    return TrainResult(manifest=manifest, path=store.version_dir(manifest.name, manifest.version))


# -- reading the model -------------------------------------------------------------------------


def read_model(path: Path, *, trust_pickle: bool, trusted: tuple[str, ...]) -> Source:
    """The estimator at ``path``: an MLflow directory, a skops file, or a pickle/joblib file."""
    if path.is_dir():
        return _mlflow(path, trust_pickle=trust_pickle, trusted=trusted)
    raw = _read(path)
    digest = hashlib.sha256(raw).hexdigest()
    if path.suffix.lower() == ".skops":
        return Source(_skops(path, raw, trusted), "skops file", path, digest)
    if not trust_pickle:
        raise TrainingError(
            f"importing {path} would unpickle it, and unpickling runs code from the file: pass "
            "--trust-pickle only if you trust where it came from (or save it with skops)"
        )
    if path.suffix.lower() == ".joblib":
        import joblib  # noqa: PLC0415 - scikit-learn's dependency, only for this

        try:
            estimator = joblib.load(path)  # the caller vouched for this file with trust_pickle
        except Exception as exc:
            raise TrainingError(f"{path} could not be loaded with joblib: {exc}") from exc
        return Source(estimator, "joblib file", path, digest)
    try:
        estimator = pickle.loads(raw)  # the caller vouched for this file with trust_pickle
    except Exception as exc:
        raise TrainingError(f"{path} could not be unpickled: {exc}") from exc
    return Source(estimator, "pickle", path, digest)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DatasetError(f"{path} does not exist") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _skops(path: Path, raw: bytes, trusted: tuple[str, ...]) -> Any:
    """A skops file loaded with the server's allowlist only, never the file's own list."""
    try:
        return deserialize(str(path), raw, "skops", LoadPolicy(trusted_types=trusted))
    except UntrustedTypeError as exc:
        raise TrainingError(
            f"{exc.message}. A server would refuse it too: if you trust these types, add them "
            "to MODELSERVE_TRUSTED_TYPES (a JSON list) here and on every server"
        ) from exc
    except ModelServeError as exc:
        raise TrainingError(exc.message) from exc


def _mlflow(directory: Path, *, trust_pickle: bool, trusted: tuple[str, ...]) -> Source:
    import yaml  # noqa: PLC0415 - only MLflow directories need it

    spec_path = directory / MLMODEL
    try:
        spec = yaml.safe_load(_read(spec_path))
    except DatasetError as exc:
        raise TrainingError(
            f"{directory} is a directory but not an MLflow model (no readable {MLMODEL} file)"
        ) from exc
    except yaml.YAMLError as exc:
        raise TrainingError(f"{spec_path} is not valid YAML: {exc}") from exc
    flavor = (spec or {}).get("flavors", {}).get("sklearn") if isinstance(spec, dict) else None
    if not isinstance(flavor, dict) or not isinstance(flavor.get("pickled_model"), str):
        flavors = ", ".join((spec or {}).get("flavors", {}) or {}) or "none"
        raise TrainingError(
            f"{directory}: the MLflow model has no sklearn flavor (its flavors: {flavors}); "
            "only scikit-learn models can be imported"
        )
    model_file = directory / flavor["pickled_model"]
    if model_file.parent.resolve() != directory.resolve():
        raise TrainingError(f"{spec_path}: the model file must be inside the directory")
    raw = _read(model_file)
    digest = hashlib.sha256(raw).hexdigest()
    kind = f"MLflow model {directory.name} ({flavor.get('serialization_format', 'pickle')})"
    if flavor.get("serialization_format") == "skops" or model_file.suffix == ".skops":
        estimator = _skops(model_file, raw, trusted)  # never the MLmodel's skops_trusted_types
    elif not trust_pickle:
        raise TrainingError(
            f"importing {directory} would unpickle {model_file.name} "
            f"({flavor.get('serialization_format', 'pickle')}), which runs code from the file: "
            "pass --trust-pickle only if you trust where it came from"
        )
    else:
        try:
            estimator = pickle.loads(raw)  # the caller vouched for this file with trust_pickle
        except Exception as exc:
            raise TrainingError(f"{model_file} could not be unpickled: {exc}") from exc
    return Source(estimator, kind, directory, digest, _signature(spec, spec_path))


def _signature(spec: dict[str, Any], spec_path: Path) -> dict[str, FeatureType] | None:
    """MLflow's column-based input signature as feature types; None when there is none."""
    inputs = (spec.get("signature") or {}).get("inputs")
    if not inputs:
        return None
    try:
        fields = json.loads(inputs)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{spec_path}: the signature's inputs are not JSON: {exc}") from exc
    types: dict[str, FeatureType] = {}
    for field in fields if isinstance(fields, list) else []:
        if not isinstance(field, dict) or "name" not in field:
            return None  # a tensor signature: no column names to take
        kind = _MLFLOW_TYPES.get(str(field.get("type")))
        if kind is None:
            raise TrainingError(
                f"{spec_path}: input {field['name']!r} has type {field.get('type')!r}; "
                f"supported: {', '.join(_MLFLOW_TYPES)}"
            )
        types[str(field["name"])] = kind
    return types or None


# -- the sample and the schema -----------------------------------------------------------------


def _sample(path: Path, names: list[str] | None) -> tuple[list[Column], list[list[Any]]]:
    """The sample's columns (those the model takes, when its names are known) and values."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        header, rows = _parquet_rows(path)
    elif suffix == ".csv":
        import csv  # noqa: PLC0415

        text = _read(path).decode("utf-8-sig", errors="strict")
        lines = [row for row in csv.reader(text.splitlines()) if any(c.strip() for c in row)]
        if len(lines) < 2:
            raise TrainingError(f"{path}: the sample needs a header row and at least one row")
        header = [cell.strip() for cell in lines[0]]
        for number, row in enumerate(lines[1:], start=1):
            if len(row) != len(header):
                raise TrainingError(
                    f"{path} data row {number}: {len(row)} fields, the header has {len(header)}"
                )
        rows = lines[1:]
    else:
        raise TrainingError(f"{path}: the sample must be a .csv or .parquet file")
    if names is not None:
        missing = [name for name in names if name not in header]
        if missing:
            raise TrainingError(
                f"the sample {path} lacks the column(s) {', '.join(map(repr, missing))} that "
                f"the model takes (it has: {', '.join(header)})"
            )
    drop = tuple(h for h in header if names is not None and h not in names)
    try:
        return read_csv(rows, header, str(path), drop=drop)
    except DatasetError as exc:
        raise TrainingError(exc.message) from exc


def _parquet_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """A Parquet sample as CSV-like text cells (empty for null), so one reader types both."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pq.read_table(path)
    header = list(table.column_names)
    columns = [
        ["" if v is None else ("true" if v is True else "false" if v is False else str(v))
         for v in table.column(name).to_pylist()]
        for name in header
    ]  # fmt: skip
    return header, [list(row) for row in zip(*columns, strict=True)]


def _typed_columns(
    names: list[str],
    columns: list[Column] | None,
    signature: dict[str, FeatureType] | None,
    estimator: Any,
) -> list[Column]:
    """Each feature's type: the sample's, else MLflow's signature's, else a number."""
    encoded = fitted_categories(estimator)
    typed: list[Column] = []
    for index, name in enumerate(names):
        if columns is not None:
            column = columns[index]
        else:
            kind = (signature or {}).get(name, "float64")
            column = Column(name, kind, kind in ("string", "bool"))
        if signature and name in signature and signature[name] != column.dtype:
            wanted = signature[name]
            if not (wanted == "float64" and column.dtype == "int64"):
                raise TrainingError(
                    f"feature {name!r} is {wanted} in the MLflow signature but the sample "
                    f"holds {column.dtype} values"
                )
            column = Column(name, wanted, column.categorical, column.missing, column.distinct)
        categorical = column.dtype in ("string", "bool") or name in encoded
        typed.append(Column(name, column.dtype, categorical, column.missing, column.distinct))
    return typed


def _typical(schema: FeatureSchema) -> Any:
    """One typical row, as the estimator takes it (the read-back check without a sample)."""
    batch = SchemaCheck(schema, max_rows=1).check(Batch.of_records([typical_row(schema)]))
    return batch.rows if schema.form == "matrix" else as_frame(schema, batch)


def _smoke_test(
    path: Path, estimator: Any, schema: FeatureSchema, values: list[list[Any]], task: Task
) -> None:
    """Predict the sample (its first rows) as the server would; TrainingError if it fails."""
    rows = min(len(values[0]), SAMPLE_CHECK_ROWS)
    records = [[column[i] for column in values] for i in range(rows)]
    check = SchemaCheck(schema, max_rows=rows, max_problems=3)
    try:
        batch = check.check(Batch.of_records(records))
    except InvalidInputError as exc:
        raise TrainingError(
            f"the model's schema refuses its own sample {path.name}: {exc.message}"
        ) from exc
    inputs = batch.rows if schema.form == "matrix" else as_frame(schema, batch)
    try:
        predictions = np.asarray(estimator.predict(inputs))
        if task == "classification" and hasattr(estimator, "predict_proba"):
            estimator.predict_proba(inputs)
    except Exception as exc:
        raise TrainingError(f"the model fails on its own sample: {exc}") from exc
    if task == "regression" and not np.isfinite(predictions.astype(np.float64)).all():
        raise TrainingError("the model predicts values that are not finite on its own sample")


import_pickle = import_model
"""The name of the first design's importer (pickle files only); :func:`import_model` now."""
