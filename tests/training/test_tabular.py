"""Training on mixed-type CSVs: typed columns, the pipeline, the typed schema, what serves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelserve.core.errors import DatasetError, InvalidInputError, TrainingError
from modelserve.core.manifest import FeatureSpec
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import DEFAULT_TRUSTED_TYPES, Settings
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.training.train import ESTIMATORS, TrainConfig, train

POLICY = LoadPolicy(trusted_types=DEFAULT_TRUSTED_TYPES)


def _features(store: Path, name: str) -> dict[str, FeatureSpec]:
    manifest = ModelStore(store).read_manifest(name, 1)
    return {feature.name: feature for feature in manifest.input_schema.features}


def test_the_penguins_schema_says_each_column_type_and_what_the_model_takes(
    tabular_store: Path,
) -> None:
    manifest = ModelStore(tabular_store).read_manifest("penguins", 1)
    schema = manifest.input_schema
    assert schema.form == "frame"
    assert schema.names == [
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    features = {f.name: f for f in schema.features}
    island = features["island"]
    assert (island.dtype, island.nullable) == ("string", False)  # never missing in the data
    assert island.categories == ["Biscoe", "Dream", "Torgersen"]
    assert sum(island.category_counts or []) == manifest.training_data.n_train
    assert island.accepts_unseen  # ordinal codes: an unseen island is a missing one
    sex = features["sex"]
    assert (sex.dtype, sex.nullable, sex.categories) == ("string", True, ["female", "male"])
    bill = features["bill_length_mm"]
    assert (bill.dtype, bill.nullable) == ("float64", True)
    assert 30 < (bill.min or 0) < (bill.mean or 0) < (bill.max or 0) < 60
    year = features["year"]
    assert (year.dtype, year.nullable, year.categories) == ("int64", False, None)
    assert manifest.estimator.class_name == "sklearn.pipeline.Pipeline"
    assert manifest.estimator.steps == [
        "prep: ColumnTransformer",
        "prep/num: passthrough(bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, "
        "year)",
        "prep/cat: OrdinalEncoder(island, sex)",
        "model: HistGradientBoostingClassifier",
    ]
    assert manifest.output.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert manifest.metrics["accuracy"] > 0.9
    # No linear form for a pipeline; the compiled form of its steps and trees, checked.
    assert set(manifest.attachments) == {"report.png", "report.json", "compiled.bin"}
    assert manifest.compiled is not None
    assert manifest.compiled.verified


def test_one_hot_models_refuse_unseen_categories_only_where_they_must(
    tabular_store: Path,
) -> None:
    features = _features(tabular_store, "penguins-lr")
    assert features["island"].accepts_unseen  # OneHotEncoder(handle_unknown="ignore")
    assert features["bill_length_mm"].nullable  # behind a SimpleImputer
    assert not features["year"].nullable  # complete in training: no imputer, refused


def test_served_predictions_equal_the_pipeline_on_the_same_rows(
    tabular_store: Path, penguins_csv: Path
) -> None:
    registry = ModelRegistry(Settings(store=tabular_store))
    frame = pd.read_csv(penguins_csv).drop(columns="species")
    rows = [
        [None if isinstance(v, float) and math.isnan(v) else v for v in row]
        for row in frame.astype(object).itertuples(index=False)
    ]
    for name in ("penguins", "penguins-lr"):
        predictor = registry.load_predictor(name)
        prediction = predictor.predict(rows, return_probabilities=True)
        pipeline = predictor.estimator
        np.testing.assert_array_equal(prediction.predictions, pipeline.predict(frame))
        np.testing.assert_array_equal(prediction.probabilities, pipeline.predict_proba(frame))


def test_numbers_with_missing_values_stay_a_matrix_for_a_model_that_takes_them(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    lines = ["a,b,y"]
    for i in range(120):
        a, b = rng.normal(size=2)
        lines.append(f"{'' if i % 10 == 0 else a},{b},{2 * b + 1}")
    csv = tmp_path / "gaps.csv"
    csv.write_text("\n".join(lines) + "\n")
    store = ModelStore(tmp_path / "s")
    config = TrainConfig(name="hgb", estimator="hist-gradient-boosting", csv=csv, target="y")
    manifest = train(config, store).manifest
    assert manifest.input_schema.form == "matrix"
    assert manifest.estimator.steps == []  # the bare estimator: it handles NaN itself
    assert [f.nullable for f in manifest.input_schema.features] == [True, False]
    manifest = train(TrainConfig(name="lin", csv=csv, target="y"), store).manifest
    assert manifest.input_schema.form == "frame"
    assert manifest.estimator.steps[0:3] == [
        "prep: ColumnTransformer",
        "prep/num: StandardScaler(b)",
        "prep/impute: SimpleImputer → StandardScaler(a)",
    ]
    predictor = ModelRegistry(Settings(store=store.root)).load_predictor("lin")
    answer = predictor.predict([{"a": None, "b": 1.0}, {"a": 0.3, "b": 1.0}])
    np.testing.assert_allclose(answer.predictions, [3.0, 3.0], atol=0.05)


def test_categorical_and_drop_shape_the_features(tmp_path: Path) -> None:
    lines = ["id,code,x,y"] + [f"{i},{i % 3},{i / 10},{i % 3 * 2.0}" for i in range(60)]
    csv = tmp_path / "codes.csv"
    csv.write_text("\n".join(lines) + "\n")
    config = TrainConfig(
        name="codes",
        estimator="random-forest",
        csv=csv,
        target="y",
        categorical=("code",),
        drop=("id",),
    )
    manifest = train(config, ModelStore(tmp_path / "s")).manifest
    code, x = manifest.input_schema.features
    assert (code.name, code.dtype, code.categories, code.accepts_unseen) == (
        "code",
        "int64",
        [0, 1, 2],
        True,
    )
    assert sum(code.category_counts or []) == manifest.training_data.n_train
    assert (x.name, x.dtype) == ("x", "float64")


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("a,y\n1,2\n", {"drop": ("b",)}, "has no column 'b' (named by --categorical or --drop)"),
        ("a,y\n1.5,2\n2.5,3\n", {"categorical": ("a",)}, "column 'a' holds fractional numbers"),
        ("a,y\n1,2\n", {"drop": ("a",)}, "every feature column was dropped"),
        ("a,y\n1,2\n", {"categorical": ("y",)}, "'y' is the target; it cannot be"),
    ],
)
def test_column_options_are_checked(
    tmp_path: Path, content: str, options: dict[str, tuple[str, ...]], message: str
) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text(content)
    config = TrainConfig(csv=csv, target="y", **options)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(config, ModelStore(tmp_path / "s"))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_on_mixed_data_loads_with_the_default_allowlist(
    tmp_path: Path, name: str, penguins_csv: Path
) -> None:
    kind = ESTIMATORS[name]
    target = "species" if kind.task == "classification" else "body_mass_g"
    if kind.task == "regression":  # a regressor's target may not be missing
        frame = pd.read_csv(penguins_csv).dropna(subset=["body_mass_g"])
        csv = tmp_path / "p.csv"
        frame.to_csv(csv, index=False)
    else:
        csv = penguins_csv
    store = ModelStore(tmp_path / "s")
    train(TrainConfig(name="m", estimator=name, csv=csv, target=target), store)
    artifact = store.load("m", 1, POLICY)
    assert artifact.estimator is not None


def test_a_model_the_server_would_refuse_is_not_published(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    config = TrainConfig(name="forest", estimator="random-forest", samples=60, features=2)
    with pytest.raises(TrainingError) as info:
        train(config, store, trusted=())
    assert "a server would refuse this model" in info.value.message
    assert "sklearn.tree._tree.Tree" in info.value.message
    assert "MODELSERVE_TRUSTED_TYPES" in info.value.message
    assert not (tmp_path / "forest").exists()


@pytest.mark.parametrize("estimator", ["hist-gradient-boosting-classifier", "logistic-regression"])
def test_boolean_and_text_columns_with_gaps_serve_as_the_pipeline_predicts(
    tmp_path: Path, estimator: str
) -> None:
    csv = Path(__file__).parents[2] / "examples" / "churn.csv"
    store = ModelStore(tmp_path / "s")
    config = TrainConfig(name="churn", estimator=estimator, csv=csv, target="churned")
    manifest = train(config, store).manifest
    features = {f.name: f for f in manifest.input_schema.features}
    assert (features["auto_pay"].dtype, features["auto_pay"].nullable) == ("bool", False)
    assert features["region"].nullable  # empty cells in training
    assert features["monthly_fee"].nullable
    assert features["plan"].categories == ["basic", "plus", "pro"]
    predictor = ModelRegistry(Settings(store=store.root)).load_predictor("churn")
    rows = [
        {"tenure_months": 3, "plan": "basic", "monthly_fee": None, "auto_pay": False,
         "region": None},
        {"tenure_months": 60, "plan": "pro", "monthly_fee": 80.5, "auto_pay": True,
         "region": "north"},
    ]  # fmt: skip
    frame = pd.DataFrame(
        {
            "tenure_months": [3, 60],
            "plan": np.array(["basic", "pro"], dtype=object),
            "monthly_fee": [np.nan, 80.5],
            "auto_pay": [False, True],
            "region": np.array([np.nan, "north"], dtype=object),
        }
    )
    answer = predictor.predict(rows, return_probabilities=True)
    assert answer.predictions.tolist() == predictor.estimator.predict(frame).tolist()
    np.testing.assert_array_equal(answer.probabilities, predictor.estimator.predict_proba(frame))
    with pytest.raises(InvalidInputError) as info:
        predictor.predict([{**rows[0], "auto_pay": 1}])
    assert info.value.problems[0].msg == (
        "row 0, feature 'auto_pay': expected a boolean, got number 1"
    )
