"""The manifest: the contract stored beside every model file as ``manifest.json``."""

from __future__ import annotations

import platform
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

ArtifactFormat = Literal["skops", "pickle"]
Task = Literal["regression", "classification"]

MODEL_FILES: dict[ArtifactFormat, str] = {"skops": "model.skops", "pickle": "model.pkl"}
MANIFEST_FILE = "manifest.json"
LINEAR_FILE = "linear.json"
"""The attachment holding a linear model's coefficients, for serving before scikit-learn loads."""
COMPILED_FILE = "compiled.bin"
"""The attachment holding a model's compiled form (see :mod:`modelserve.core.compiled`)."""
PLOT_FILE = "report.png"
"""The training report's plot attachment: predicted vs actual, or the confusion matrix."""
SUMMARY_FILE = "report.json"
"""The training report's summary attachment: the held-out metrics (and confusion matrix)."""
REPORT_FILES = (PLOT_FILE, SUMMARY_FILE)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


FeatureType = Literal["float64", "int64", "bool", "string"]
"""What one feature holds: a number, an integer, a boolean or a string (text or a category)."""

Category = str | int
"""A category seen in training: text, or an integer code (``--categorical`` on a number)."""


class FeatureSpec(_Frozen):
    """One input feature: its type, whether it may be missing, its training statistics.

    ``nullable``: the model answers when this value is missing (``null``), known from the
    estimator (a native missing-value support, an imputer) and verified by a trial prediction
    when the version was published. ``categories`` (with how often each was seen in training,
    ``category_counts``) are the values of a categorical feature; ``accepts_unseen`` says whether
    the model takes a value outside them (``OneHotEncoder(handle_unknown="ignore")``, also
    verified at publish). A string feature without ``categories`` takes any text.
    """

    name: str = Field(min_length=1)
    dtype: FeatureType = "float64"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    categories: list[Category] | None = None
    category_counts: list[int] | None = None
    accepts_unseen: bool = False


InputForm = Literal["matrix", "frame"]
"""How the estimator takes its rows: a float64 matrix in feature order, or a pandas DataFrame
with one column per feature, of the feature's type (a fitted ``Pipeline`` that selects columns
by name)."""


class FeatureSchema(_Frozen):
    """The model's inputs, in the order the estimator expects them."""

    count: int = Field(ge=1)
    features: list[FeatureSpec]
    form: InputForm = "matrix"

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def plain(self) -> bool:
        """Every feature a number that may not be missing: the float matrix of the first design."""
        return all(f.dtype == "float64" and not f.nullable for f in self.features)


class OutputSpec(_Frozen):
    """What ``predict`` returns; ``classes`` (the label order of probabilities) for classifiers."""

    name: Literal["predict"] = "predict"
    dtype: str
    classes: list[int | float | str] | None = None


class RuntimeVersions(_Frozen):
    """Library versions the model was trained with."""

    python: str
    sklearn: str
    numpy: str
    skops: str

    @classmethod
    def current(cls) -> RuntimeVersions:
        import sklearn  # noqa: PLC0415 - only training needs it; the server starts without it
        import skops  # noqa: PLC0415

        return cls(
            python=platform.python_version(),
            sklearn=sklearn.__version__,
            numpy=np.__version__,
            skops=skops.__version__,
        )


class EstimatorInfo(_Frozen):
    """Fully qualified class and JSON-safe parameters of the fitted estimator.

    ``steps``: for a ``Pipeline``, each step and, inside a ``ColumnTransformer``, each
    transformer with the columns it takes (``"prep/cat: OneHotEncoder(island, sex)"``).
    """

    class_name: str
    params: dict[str, Any]
    steps: list[str] = Field(default_factory=list)


class TrainingData(_Frozen):
    """Where the training data came from, so the model can be reproduced."""

    source: str
    sha256: str | None = None
    target: str | None = None
    n_rows: int
    n_train: int
    n_test: int
    seed: int | None = None


class CompiledInfo(_Frozen):
    """Whether the version was published with a compiled form (``compiled.bin``), and why not.

    ``verified``: the form gave exactly the estimator's own answers on ``rows_checked`` rows
    (held-out data and stress rows at every split threshold) when it was published. ``reason``
    says why a version has no form (an estimator without one, or a form that disagreed).
    """

    verified: bool
    reason: str | None = None
    rows_checked: int = Field(default=0, ge=0)


class Manifest(_Frozen):
    """Everything needed to verify, load and describe one published model version."""

    schema_version: Literal[1] = 1
    name: str
    version: int = Field(ge=1)
    created_at: datetime
    format: ArtifactFormat
    model_file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    runtime: RuntimeVersions
    estimator: EstimatorInfo
    task: Task
    input_schema: FeatureSchema
    output: OutputSpec
    metrics: dict[str, float]
    training_data: TrainingData
    attachments: dict[str, str] = Field(
        default_factory=dict,
        description="Files published beside the model (the training report): name -> sha256.",
    )
    compiled: CompiledInfo | None = Field(
        default=None,
        description="The compiled form's check at publish; null for versions published before.",
    )


class LinearForm(_Frozen):
    """``linear.json``: the model as ``X @ coef + intercept``.

    Written only when training verified it against the estimator's own ``predict`` to 1e-9; its
    sha256 is in the manifest's ``attachments`` like any other published file.
    """

    coef: list[float]
    intercept: float
