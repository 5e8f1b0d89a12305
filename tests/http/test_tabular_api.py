"""Mixed-type models through the native API of a real app: rows of numbers, strings, booleans
and nulls, each problem a 422 with its row and feature."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelserve.core.settings import Settings
from modelserve.http.app import create_app
from tests.helpers import PENGUIN, assert_problem


@pytest.fixture(scope="module")
def tabular(tabular_store: Path) -> Iterator[TestClient]:
    app = create_app(Settings(store=tabular_store, default_model="penguins"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _pipeline_answer(rows: list[dict[str, object]], tabular_store: Path) -> tuple[list, list]:
    from modelserve.core.registry import ModelRegistry  # noqa: PLC0415

    pipeline = ModelRegistry(Settings(store=tabular_store)).load_predictor("penguins").estimator
    frame = pd.DataFrame(
        {
            name: pd.Series(
                [math.nan if row[name] is None else row[name] for row in rows],
                dtype=object if isinstance(PENGUIN[name], str) else None,
            )
            for name in PENGUIN
        }
    )
    return pipeline.predict(frame).tolist(), pipeline.predict_proba(frame).tolist()


def test_rows_by_name_and_in_order_with_missing_values(
    tabular: TestClient, tabular_store: Path
) -> None:
    gaps = {**PENGUIN, "sex": None, "bill_length_mm": None, "island": "Dream"}
    rows: list[dict[str, object]] = [PENGUIN, gaps]
    response = tabular.post(
        "/v1/models/penguins/predict",
        json={"instances": [list(PENGUIN.values()), gaps], "return_probabilities": True},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    predictions, probabilities = _pipeline_answer(rows, tabular_store)
    assert body["predictions"] == predictions
    assert body["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    np.testing.assert_allclose(body["probabilities"], probabilities, rtol=1e-12)
    assert tabular.post("/predict", json={"instances": [PENGUIN]}).json()["predictions"] == [
        predictions[0]
    ]


def test_an_unseen_category_is_answered_where_the_model_takes_it(
    tabular: TestClient, tabular_store: Path
) -> None:
    row = {**PENGUIN, "island": "Anvers"}  # the HGB pipeline codes it as missing
    response = tabular.post("/v1/models/penguins/predict", json={"instances": [row]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == _pipeline_answer([row], tabular_store)[0]


@pytest.mark.parametrize(
    ("field", "value", "code", "message"),
    [
        (
            "bill_depth_mm",
            "14.5",
            "not-a-number",
            "row 0, feature 'bill_depth_mm': expected a number, got string '14.5'",
        ),
        (
            "year",
            None,
            "missing-value",
            "row 0, feature 'year': the value is missing (null), and model 'penguins-lr' v1 "
            "cannot take a missing value there",
        ),
        (
            "year",
            2008.5,
            "not-an-integer",
            "row 0, feature 'year': expected a whole number, got number 2008.5",
        ),
        (
            "sex",
            1,
            "not-a-string",
            "row 0, feature 'sex': expected a string (feature 'sex' was text in training; send it "
            "as a JSON string), got number 1",
        ),
    ],
)
def test_each_problem_is_a_422_naming_row_and_feature(
    tabular: TestClient, field: str, value: object, code: str, message: str
) -> None:
    response = tabular.post(
        "/v1/models/penguins-lr/predict", json={"instances": [{**PENGUIN, field: value}]}
    )
    body = assert_problem(response, 422, code, detail_contains=message)
    assert body["errors"] == [{"loc": ["instances", 0, field], "msg": message, "type": code}]


def test_a_string_row_for_a_numeric_model_is_refused_as_before(client: TestClient) -> None:
    response = client.post("/predict", json={"instances": [["a"] * 10]})
    body = assert_problem(response, 422, "not-a-number")
    assert len(body["errors"]) == 10
