"""The scoring contracts clients already speak: `mlflow models serve` / SageMaker
(`/invocations`, `/ping`) and KServe V1 (`/v1/models/{name}:predict`), on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from tests.helpers import PENGUIN, assert_problem, free_port, running_server, serve_command

GAPS = {**PENGUIN, "island": "Dream", "sex": None, "bill_length_mm": None}
NAMES = list(PENGUIN)


@pytest.fixture(scope="module")
def base(tabular_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("scoring") / "server.log"
    env = {"MODELSERVE_DEFAULT_MODEL": "penguins"}
    with running_server(serve_command(tabular_store, port), port=port, log=log, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def expected(tabular_store: Path) -> list[str]:
    predictor = ModelRegistry(Settings(store=tabular_store)).load_predictor("penguins")
    return predictor.predict([PENGUIN, GAPS]).predictions.tolist()


def _csv(rows: list[dict[str, Any]]) -> str:
    lines = [",".join(NAMES)]
    for row in rows:
        lines.append(",".join("" if row[n] is None else str(row[n]) for n in NAMES))
    return "\n".join(lines) + "\n"


BODIES: dict[str, tuple[str, Any]] = {
    "dataframe_split": (
        "application/json",
        {
            "dataframe_split": {
                "index": [0, 1],
                "columns": NAMES,
                "data": [[r[n] for n in NAMES] for r in (PENGUIN, GAPS)],
            }
        },
    ),
    "dataframe_records": ("application/json", {"dataframe_records": [PENGUIN, GAPS]}),
    "instances (objects)": ("application/json", {"instances": [PENGUIN, GAPS]}),
    "instances (arrays)": (
        "application/json",
        {"instances": [[r[n] for n in NAMES] for r in (PENGUIN, GAPS)]},
    ),
    "inputs (columns)": (
        "application/json",
        {"inputs": {n: [PENGUIN[n], GAPS[n]] for n in NAMES}},
    ),
    "inputs (rows)": ("application/json", {"inputs": [PENGUIN, GAPS]}),
    "csv": ("text/csv", _csv([PENGUIN, GAPS])),
}


@pytest.mark.parametrize("form", list(BODIES))
@pytest.mark.parametrize("path", ["/invocations", "/v1/models/penguins/invocations"])
def test_every_mlflow_body_is_answered_with_predictions(
    base: str, expected: list[str], form: str, path: str
) -> None:
    content_type, body = BODIES[form]
    content = body if isinstance(body, str) else httpx.Request("POST", base, json=body).content
    response = httpx.post(f"{base}{path}", content=content, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"predictions": expected}


def test_kserve_v1_predict(base: str, expected: list[str]) -> None:
    response = httpx.post(f"{base}/v1/models/penguins:predict", json={"instances": [PENGUIN, GAPS]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}


def test_ping_is_200_while_ready(base: str) -> None:
    response = httpx.get(f"{base}/ping")
    assert response.status_code == 200
    assert response.json() == {"ready": True}


def test_a_numeric_model_scores_its_csv_and_its_instances(live: str) -> None:
    row = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 0.25, 3.0, -2.0, 1.0]
    native = httpx.post(f"{live}/predict", json={"instances": [row]}).json()["predictions"]
    csv = ",".join(f"x{i}" for i in range(10)) + "\n" + ",".join(map(str, row)) + "\n"
    answer = httpx.post(f"{live}/invocations", content=csv, headers={"content-type": "text/csv"})
    assert answer.json() == {"predictions": native}
    answer = httpx.post(f"{live}/v1/models/default:predict", json={"instances": [row]})
    assert answer.json() == {"predictions": native}


@pytest.mark.parametrize(
    ("content_type", "body", "code", "detail"),
    [
        (
            "application/json",
            b'{"dataframe_records": [], "instances": []}',
            "invalid-request",
            "the body must hold exactly one of: dataframe_split, dataframe_records, instances, "
            "inputs (more than one of them)",
        ),
        ("application/json", b'{"params": {}}', "invalid-request", "(unknown key 'params')"),
        ("application/json", b"[1, 2]", "invalid-request", "the body must be a JSON object"),
        (
            "application/json",
            b'{"instances": [NaN]}',
            "invalid-json",
            "request body is not valid JSON",
        ),
        (
            "application/json",
            b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}',
            "invalid-row",
            "dataframe_split.data row 0 must be an array of 1 values",
        ),
        (
            "application/json",
            b'{"inputs": {"a": [1], "b": [1, 2]}}',
            "invalid-request",
            "inputs must map each column to an array of values, all of one length",
        ),
        (
            "text/csv",
            b"island,year\nBiscoe\n",
            "invalid-csv",
            "CSV row 1 has 1 values but the header has 2",
        ),
        ("text/csv", b"\xff\xfe", "invalid-csv", "the CSV body is not UTF-8 text"),
        (
            "text/csv",
            b'a,b\n"x',
            "invalid-csv",
            "the CSV body cannot be read: unexpected end of data",
        ),
        (
            "text/csv",
            _csv([{**PENGUIN, "year": "twenty"}]).encode(),
            "not-an-integer",
            "row 0, feature 'year': expected a whole number, got string 'twenty'",
        ),
        (
            "application/json",
            b'{"dataframe_records": [{"island": "Biscoe"}]}',
            "missing-feature",
            "row 0 is missing feature 'bill_length_mm'",
        ),
        ("application/json", b'{"instances": []}', "empty-batch", "instances is empty"),
    ],
)
def test_errors_are_problems(
    base: str, content_type: str, body: bytes, code: str, detail: str
) -> None:
    response = httpx.post(
        f"{base}/invocations", content=body, headers={"content-type": content_type}
    )
    assert_problem(response, 422, code, detail_contains=detail)


def test_unknown_model_is_a_404_problem(base: str) -> None:
    response = httpx.post(f"{base}/v1/models/nope:predict", json={"instances": [PENGUIN]})
    assert_problem(response, 404, "model-not-found", detail_contains="model 'nope' is not served")


def test_ping_is_503_when_nothing_can_serve(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from modelserve.http.app import create_app  # noqa: PLC0415

    with TestClient(create_app(Settings(store=tmp_path))) as client:
        assert_problem(client.get("/ping"), 503, "model-unavailable", detail_contains="not ready")


def test_nan_in_csv_is_refused_and_empty_is_missing(base: str) -> None:
    row = {**PENGUIN, "bill_depth_mm": "nan"}
    response = httpx.post(
        f"{base}/invocations", content=_csv([row]), headers={"content-type": "text/csv"}
    )
    body = assert_problem(response, 422, "not-finite")
    assert body["errors"][0]["loc"] == ["instances", 0, "bill_depth_mm"]
    gaps = {**PENGUIN, "sex": ""}  # an empty cell is a missing value, which sex may be
    response = httpx.post(
        f"{base}/invocations", content=_csv([gaps]), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200, response.text
