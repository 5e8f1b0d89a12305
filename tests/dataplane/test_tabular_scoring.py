"""Scoring files of mixed columns (text, whole numbers, empty cells) with a pipeline model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from modelserve.cli import app
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def store(tabular_store: Path, tmp_path: Path) -> Path:
    path = tmp_path / "models"
    shutil.copytree(tabular_store, path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_penguins_file_is_scored_as_the_pipeline_scores_it(
    store: Path, penguins_csv: Path, tmp_path: Path, suffix: str
) -> None:
    frame = pd.read_csv(penguins_csv)
    source = penguins_csv
    if suffix == ".parquet":
        source = tmp_path / "penguins.parquet"
        frame.to_parquet(source)
    target = tmp_path / "preds.csv"
    code, _, err = invoke(
        "predict", "--store", str(store), "--model", "penguins", "-i", str(source),
        "-o", str(target), "--probabilities", "--chunk-rows", "50", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert f"{len(frame)} rows scored with penguins v1" in err
    assert "ignored columns: species" in err
    written = pacsv.read_csv(target).to_pandas()
    pipeline = ModelRegistry(Settings(store=store)).load_predictor("penguins").estimator
    features = frame.drop(columns="species")
    assert written["prediction"].tolist() == pipeline.predict(features).tolist()
    np.testing.assert_allclose(
        written[["probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]].to_numpy(),
        pipeline.predict_proba(features),
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"year": ""},
            "row 3, feature 'year', is empty, and the model cannot take a missing value there",
        ),
        ({"year": "2008.5"}, "row 3, feature 'year', expected a whole number, got number 2008.5"),
        ({"bill_depth_mm": "deep"}, "row 3, feature 'bill_depth_mm', 'deep' is not a number"),
    ],
)
def test_a_bad_cell_is_named_by_row_and_column(
    store: Path, penguins_csv: Path, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    frame = pd.read_csv(penguins_csv, dtype=str, keep_default_na=False)
    for column, value in change.items():
        frame.loc[2, column] = value
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)
    target = tmp_path / "preds.csv"
    code, _, err = invoke(
        "predict", "--store", str(store), "--model", "penguins", "-i", str(source),
        "-o", str(target), "--no-progress",
    )  # fmt: skip
    assert code == 1
    assert message in " ".join(err.split()), err
    assert not target.exists()
