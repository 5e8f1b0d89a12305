from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelserve.core.errors import DatasetError, TrainingError, UnknownEstimatorError
from modelserve.core.settings import DEFAULT_TRUSTED_TYPES
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.training.train import ESTIMATORS, TrainConfig, load_csv, train

POLICY = LoadPolicy(trusted_types=DEFAULT_TRUSTED_TYPES)


def test_default_is_linear_regression_on_make_regression(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    result = train(TrainConfig(), store)
    manifest = result.manifest
    assert (manifest.name, manifest.version, manifest.format) == ("default", 1, "skops")
    assert result.path == tmp_path / "default" / "1"
    assert manifest.estimator.class_name == "sklearn.linear_model._base.LinearRegression"
    assert manifest.task == "regression"
    assert manifest.input_schema.count == 10
    assert manifest.training_data.source.startswith(
        "sklearn.datasets.make_regression(n_samples=1000, n_features=10, noise=0.1"
    )
    assert (manifest.training_data.n_train, manifest.training_data.n_test) == (800, 200)
    assert manifest.metrics["r2"] > 0.999
    assert set(manifest.metrics) == {"r2", "mae", "rmse"}
    assert manifest.metrics["rmse"] >= manifest.metrics["mae"] > 0


def test_feature_statistics_describe_the_training_data(tmp_path: Path) -> None:
    manifest = train(TrainConfig(samples=400, features=3), ModelStore(tmp_path)).manifest
    for feature in manifest.input_schema.features:
        assert feature.min < feature.mean < feature.max
        assert 0.5 < feature.std < 1.5  # make_regression draws standard normal features


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_trains_publishes_and_loads(tmp_path: Path, name: str) -> None:
    store = ModelStore(tmp_path)
    manifest = train(TrainConfig(name="m", estimator=name, samples=120, features=4), store).manifest
    kind = ESTIMATORS[name]
    assert manifest.task == kind.task
    assert manifest.estimator.class_name.endswith(kind.description)
    artifact = store.load("m", 1, POLICY)
    X = np.zeros((2, 4))
    assert artifact.estimator.predict(X).shape == (2,)
    if kind.task == "classification":
        assert set(manifest.metrics) == {"accuracy", "f1"}
        assert manifest.output.classes == [0, 1]
        assert 0.5 <= manifest.metrics["accuracy"] <= 1.0
    else:
        assert manifest.output.classes is None


def test_training_from_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = 3 * X[:, 0] - 2 * X[:, 1] + 1
    lines = ["height,y,width"] + [f"{a},{t},{b}" for (a, b), t in zip(X, y, strict=True)]
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    result = train(
        TrainConfig(name="csvmodel", csv=csv_path, target="y"), ModelStore(tmp_path / "s")
    )
    manifest = result.manifest
    assert manifest.input_schema.names == ["height", "width"]
    assert manifest.training_data.target == "y"
    assert manifest.training_data.sha256 is not None
    assert manifest.training_data.source == str(csv_path.resolve())
    assert manifest.metrics["r2"] == pytest.approx(1.0)


def test_classifier_from_csv_with_string_labels(tmp_path: Path) -> None:
    rows = [f"{i % 7},{(i * 3) % 5},{'cat' if i % 2 else 'dog'}" for i in range(40)]
    csv_path = tmp_path / "pets.csv"
    csv_path.write_text("a,b,label\n" + "\n".join(rows))
    config = TrainConfig(name="pets", estimator="logistic-regression", csv=csv_path, target="label")
    manifest = train(config, ModelStore(tmp_path / "s")).manifest
    assert manifest.output.classes == ["cat", "dog"]


@pytest.mark.parametrize(
    ("content", "target", "message"),
    [
        ("", "y", "is empty"),
        ("a,b,y\n", "y", "has a header but no data rows"),
        ("a,b\n1,2\n", "y", "has no target column 'y'; its columns are: a, b"),
        ("a,y\n1,x\n2,3\n", "y", "data row 1, column 'y': 'x' is not a number"),
        ("a,y\n,2\n,3\n", "y", "column 'a' is empty in every row; leave it out with --drop a"),
        ("a,y\n1,2\n3,\n", "y", "data row 2, column 'y': the target is empty"),
        ("a,y\n1.5,2\ninf,3\n", "y", "data row 2, column 'a': 'inf' is not finite"),
        ("a,y\n1,2\n3,nan\n", "y", "data row 2, column 'y': 'nan' is not finite"),
        ("a,y\n1,2\n3\n", "y", "data row 2: 1 fields, the header has 2"),
        ("a,a,y\n1,2,3\n", "y", "column names must be unique"),
        ("y\n1\n2\n", "y", "at least one feature is needed"),
    ],
)
def test_csv_problems_are_clear(tmp_path: Path, content: str, target: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        load_csv(path, target, "regression")


def test_missing_csv_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_csv(tmp_path / "nope.csv", "y", "regression")


def test_csv_needs_a_target(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="--csv needs --target"):
        train(TrainConfig(csv=tmp_path / "x.csv"), ModelStore(tmp_path))


def test_unknown_estimator_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(
        UnknownEstimatorError, match="unknown estimator 'svm'; choose one of: linear"
    ):
        train(TrainConfig(estimator="svm"), ModelStore(tmp_path))


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1])
def test_held_out_fraction_must_be_a_fraction(tmp_path: Path, test_size: float) -> None:
    with pytest.raises(TrainingError, match="--test-size must be between 0 and 1"):
        train(TrainConfig(test_size=test_size), ModelStore(tmp_path))


def test_python_dash_m_train_model_publishes(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelserve.train_model",
            "--store",
            str(tmp_path),
            "--samples",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "name:    default" in completed.stdout
    assert "version: 1" in completed.stdout
    assert ModelStore(tmp_path).list_versions("default") == [1]
