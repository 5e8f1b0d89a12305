"""`modelserve import`: models fitted elsewhere (skops, pickle, joblib, MLflow directories),
their typed schema, and every refusal a server would otherwise make later."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from typer.testing import CliRunner

from modelserve.cli import app
from modelserve.core.errors import TrainingError
from modelserve.core.settings import Settings
from modelserve.core.store import ModelStore
from modelserve.http.app import create_app
from modelserve.training.importer import import_model
from tests.helpers import PENGUIN, assert_problem

runner = CliRunner()
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]


@pytest.fixture(scope="module")
def penguins(penguins_csv: Path) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_csv(penguins_csv)
    return frame.drop(columns="species"), frame["species"]


@pytest.fixture(scope="module")
def pipeline(penguins: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    """Fitted outside modelserve: one-hot that refuses unseen categories, imputed numbers."""
    X, y = penguins
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="error"), ["island", "sex"]),
            ("num", SimpleImputer(strategy="median"), NUMERIC),
        ]
    )
    model = Pipeline([("prep", prep), ("forest", RandomForestClassifier(30, random_state=0))])
    return model.fit(X, y)


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, TestClient]]:
    store = tmp_path / "models"
    with TestClient(create_app(Settings(store=store, poll_interval=0.1))) as client:
        yield store, client


def _predict(client: TestClient, rows: list[dict[str, Any]], name: str = "imported") -> Any:
    return client.post(f"/v1/models/{name}/predict", json={"instances": rows})


def test_a_skops_pipeline_with_a_sample_serves_as_it_predicts(
    pipeline: Pipeline, penguins: tuple[pd.DataFrame, pd.Series], penguins_csv: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    path = tmp_path / "penguins.skops"
    sio.dump(pipeline, path)
    store = tmp_path / "models"
    code, out, err = invoke(
        "import", str(path), "--name", "imported", "--sample", str(penguins_csv),
        "--store", str(store),
    )  # fmt: skip
    assert code == 0, err
    assert "name:    imported" in out
    manifest = ModelStore(store).read_manifest("imported", 1)
    features = {f.name: f for f in manifest.input_schema.features}
    assert manifest.input_schema.form == "frame"
    assert features["island"].dtype == "string"
    assert features["island"].categories == ["Biscoe", "Dream", "Torgersen"]
    assert not features["island"].accepts_unseen  # handle_unknown="error", tried at import
    assert not features["island"].nullable  # never missing in fit: the encoder refuses NaN
    assert features["sex"].nullable  # NaN was a category in fit
    assert features["year"].dtype == "int64"
    assert features["bill_length_mm"].nullable  # behind the imputer
    assert manifest.output.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert manifest.training_data.n_rows == 344
    assert manifest.estimator.steps == [
        "prep: ColumnTransformer",
        "prep/cat: OneHotEncoder(island, sex)",
        "prep/num: SimpleImputer(bill_length_mm, bill_depth_mm, flipper_length_mm, "
        "body_mass_g, year)",
        "forest: RandomForestClassifier",
    ]
    X, _ = penguins
    with TestClient(create_app(Settings(store=store))) as client:
        rows = [
            {k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in X.head(20).to_dict(orient="records")
        ]
        answer = _predict(client, rows)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == pipeline.predict(X.head(20)).tolist()
        refused = _predict(client, [{**PENGUIN, "island": "Anvers"}])
    message = (
        "row 0, feature 'island': string 'Anvers' is not a category model 'imported' v1 "
        "knows; known: 'Biscoe', 'Dream', 'Torgersen'"
    )
    body = assert_problem(refused, 422, "unknown-category", detail_contains=message)
    assert body["errors"] == [
        {"loc": ["instances", 0, "island"], "msg": message, "type": "unknown-category"}
    ]


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_pickle_and_joblib_need_trust(
    pipeline: Pipeline, penguins_csv: Path, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps(pipeline))
    else:
        joblib.dump(pipeline, path)
    store = str(tmp_path / "models")
    code, _, err = invoke("import", str(path), "--name", "p", "--store", store)
    assert code == 1
    assert "unpickling runs code from the file: pass --trust-pickle" in err
    code, _, err = invoke(
        "import", str(path), "--name", "p", "--trust-pickle", "--sample", str(penguins_csv),
        "--store", store,
    )  # fmt: skip
    assert code == 0, err
    manifest = ModelStore(Path(store)).read_manifest("p", 1)
    assert manifest.format == "skops"  # republished: serving needs no pickle
    assert manifest.input_schema.features[0].dtype == "string"


@pytest.mark.parametrize("serialization", ["skops", "cloudpickle"])
def test_an_mlflow_model_directory_maps_its_signature(
    pipeline: Pipeline, penguins: tuple[pd.DataFrame, pd.Series], tmp_path: Path,
    serialization: str,
) -> None:  # fmt: skip
    import mlflow.sklearn  # noqa: PLC0415 - slow to import; this test only
    from mlflow.models import infer_signature  # noqa: PLC0415

    X, _ = penguins
    directory = tmp_path / "mlmodel"
    options: dict[str, Any] = (
        {"skops_trusted_types": ["numpy.dtype", "sklearn.tree._tree.Tree"]}
        if serialization == "skops"
        else {"serialization_format": "cloudpickle"}
    )
    mlflow.sklearn.save_model(
        pipeline, directory, signature=infer_signature(X, pipeline.predict(X)), **options
    )
    store = ModelStore(tmp_path / "models")
    trust = serialization != "skops"
    manifest = import_model(directory, "mlf", store, trust_pickle=trust).manifest
    features = {f.name: f for f in manifest.input_schema.features}
    assert [features[n].dtype for n in ("island", "bill_length_mm", "sex", "year")] == [
        "string",
        "float64",
        "string",
        "int64",
    ]
    assert features["island"].categories == ["Biscoe", "Dream", "Torgersen"]  # the encoder's
    assert manifest.training_data.source.startswith(
        f"imported MLflow model mlmodel ({serialization})"
    )
    with TestClient(create_app(Settings(store=store.root))) as client:
        answer = _predict(client, [PENGUIN], "mlf")
    assert answer.json()["predictions"] == pipeline.predict(pd.DataFrame([PENGUIN])).tolist()


def test_refusals_name_the_reason_and_the_fix(
    pipeline: Pipeline, penguins_csv: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "models")
    bare = tmp_path / "bare.skops"
    sio.dump(LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0]), bare)
    with pytest.raises(TrainingError, match=r"fitted without feature names .* --feature-names"):
        import_model(bare, "bare", store)
    short = tmp_path / "short.csv"
    pd.read_csv(penguins_csv).drop(columns=["year"]).to_csv(short, index=False)
    skops_path = tmp_path / "p.skops"
    sio.dump(pipeline, skops_path)
    with pytest.raises(TrainingError, match=r"the sample .*short.csv lacks the column\(s\) 'year'"):
        import_model(skops_path, "p", store, sample=short)
    odd = tmp_path / "odd.csv"
    frame = pd.read_csv(penguins_csv)
    frame.loc[3, "island"] = "Atlantis"  # one-hot with handle_unknown="error" fails on it
    frame.to_csv(odd, index=False)
    with pytest.raises(TrainingError) as info:
        import_model(skops_path, "p", store, sample=odd)
    assert info.value.message == (
        "the model's schema refuses its own sample odd.csv: row 3, feature 'island': string "
        "'Atlantis' is not a category the model knows; known: 'Biscoe', 'Dream', 'Torgersen'"
    )
    text = tmp_path / "text.csv"
    frame = pd.read_csv(penguins_csv)
    frame["year"] = "the year " + frame["year"].astype(str)  # the imputer cannot take text
    frame.to_csv(text, index=False)
    with pytest.raises(TrainingError, match="the model fails on a typical row of its data"):
        import_model(skops_path, "p", store, sample=text)
    assert not (tmp_path / "models" / "p").exists()


def test_an_untrusted_type_is_refused_unless_the_server_would_trust_it(
    penguins_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pd.read_csv(penguins_csv).dropna()
    model = Pipeline(
        [("fix", FunctionTransformer(np.nan_to_num)), ("lin", LinearRegression())]
    ).fit(frame[["bill_length_mm", "flipper_length_mm"]], frame["body_mass_g"])
    path = tmp_path / "fix.skops"
    sio.dump(model, path)
    store = str(tmp_path / "models")
    code, out, err = invoke("import", str(path), "--name", "fix", "--store", store)
    assert code == 1, out
    assert "contains types outside the server's allowlist: numpy.nan_to_num" in err
    assert "add them to MODELSERVE_TRUSTED_TYPES" in err
    monkeypatch.setenv("MODELSERVE_TRUSTED_TYPES", '["numpy.nan_to_num"]')
    code, _, err = invoke("import", str(path), "--name", "fix", "--store", store)
    assert code == 0, err


def test_a_model_fitted_on_an_array_keeps_the_float_matrix(tmp_path: Path) -> None:
    X = np.array([[1, 0.5], [2, 1.5], [3, 2.5], [4, 3.0]])
    path = tmp_path / "bare.skops"
    sio.dump(LinearRegression().fit(X, [1.0, 2.0, 3.0, 4.0]), path)
    sample = tmp_path / "sample.csv"
    sample.write_text("rooms,area,price\n1,0.5,1\n2,1.5,2\n3,2.5,3\n")
    store = ModelStore(tmp_path / "models")
    manifest = import_model(
        path, "bare", store, sample=sample, feature_names=["rooms", "area"]
    ).manifest
    schema = manifest.input_schema
    assert (schema.form, schema.plain) == ("matrix", True)  # whole numbers are floats here
    assert [f.dtype for f in schema.features] == ["float64", "float64"]
    assert schema.features[0].mean == 2.0
