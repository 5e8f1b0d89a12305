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
PLOT_FILE = "report.png"
"""The training report's plot attachment: predicted vs actual, or the confusion matrix."""
SUMMARY_FILE = "report.json"
"""The training report's summary attachment: the held-out metrics (and confusion matrix)."""
REPORT_FILES = (PLOT_FILE, SUMMARY_FILE)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureSpec(_Frozen):
    """One input feature and the statistics of its training data (unknown for imports)."""

    name: str = Field(min_length=1)
    dtype: Literal["float64"] = "float64"
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None


class FeatureSchema(_Frozen):
    """The model's inputs, in the order the estimator expects them."""

    count: int = Field(ge=1)
    features: list[FeatureSpec]

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]


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
    """Fully qualified class and JSON-safe parameters of the fitted estimator."""

    class_name: str
    params: dict[str, Any]


class TrainingData(_Frozen):
    """Where the training data came from, so the model can be reproduced."""

    source: str
    sha256: str | None = None
    target: str | None = None
    n_rows: int
    n_train: int
    n_test: int
    seed: int | None = None


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


class LinearForm(_Frozen):
    """``linear.json``: the model as ``X @ coef + intercept``.

    Written only when training verified it against the estimator's own ``predict`` to 1e-9; its
    sha256 is in the manifest's ``attachments`` like any other published file.
    """

    coef: list[float]
    intercept: float
