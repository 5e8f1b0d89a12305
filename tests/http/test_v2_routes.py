"""/v2 over raw JSON with the lifespan running: every endpoint and every error body."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from modelserve.core.settings import Settings
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.http.app import create_app
from tests.helpers import ADMIN, ROW


def assert_v2_error(response: httpx.Response, status: int, contains: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert contains in body["error"], body["error"]


def infer_body(rows: list[list[float]], **extra: object) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "input", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}
        ],
        **extra,
    }


def test_server_metadata_and_health(client: TestClient) -> None:
    assert client.get("/v2").json() == {
        "name": "modelserve",
        "version": client.get("/v2").json()["version"],
        "extensions": ["binary_tensor_data", "model_repository"],
    }
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_model_readiness_is_the_status_code(client: TestClient) -> None:
    assert client.get("/v2/models/default/ready").status_code == 200
    assert client.get("/v2/models/default/versions/1/ready").status_code == 200
    assert_v2_error(client.get("/v2/models/nope/ready"), 404, "model 'nope' is not served")
    assert_v2_error(client.get("/v2/models/default/versions/2/ready"), 404, "has no version 2")
    assert_v2_error(client.get("/v2/models/default/versions/x/ready"), 404, "has no version 'x'")


def test_model_metadata(client: TestClient) -> None:
    body = client.get("/v2/models/default").json()
    assert body == {
        "name": "default",
        "versions": ["1"],
        "platform": "sklearn",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 10]}],
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
    }
    assert client.get("/v2/models/default/versions/1").json() == body
    assert_v2_error(client.get("/v2/models/nope"), 404, "model 'nope' is not served")


def test_infer_matches_the_native_api_and_the_model(client: TestClient, store: ModelStore) -> None:
    rows = [ROW, [0.0] * 10]
    response = client.post("/v2/models/default/infer", json=infer_body(rows, id="abc"))
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("default", "1", "abc")
    native = client.post("/predict", json={"instances": rows}).json()["predictions"]
    assert body["outputs"][0]["data"] == native
    model = store.load("default", 1, LoadPolicy()).estimator
    np.testing.assert_allclose(body["outputs"][0]["data"], model.predict(np.array(rows)), atol=1e-9)
    versioned = client.post("/v2/models/default/versions/1/infer", json=infer_body(rows)).json()
    assert versioned["outputs"] == body["outputs"]
    assert "id" not in versioned


def test_mlserver_style_request(client: TestClient) -> None:
    request = {"inputs": [{"name": "predict", "shape": [1, 10], "datatype": "FP64", "data": ROW}]}
    response = client.post("/v2/models/default/infer", json=request)
    assert response.status_code == 200
    assert response.json()["outputs"][0]["shape"] == [1]


def test_classifier_outputs(client: TestClient) -> None:
    rows = [[0.1, 0.2, 0.3, 0.4]]
    everything = client.post("/v2/models/clf/infer", json=infer_body(rows)).json()
    assert [o["name"] for o in everything["outputs"]] == ["predict", "predict_proba"]
    assert everything["outputs"][1]["shape"] == [1, 2]
    assert sum(everything["outputs"][1]["data"]) == pytest.approx(1.0)
    only = client.post(
        "/v2/models/clf/infer", json=infer_body(rows, outputs=[{"name": "predict_proba"}])
    ).json()
    assert [o["name"] for o in only["outputs"]] == ["predict_proba"]


def test_binary_request_and_response(client: TestClient) -> None:
    x = np.array([ROW, ROW], dtype=np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 10],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    )
    response = client.post(
        "/v2/models/default/infer",
        content=header + x.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert response.status_code == 200
    length = int(response.headers["inference-header-content-length"])
    assert response.headers["content-type"] == "application/octet-stream"
    meta = orjson.loads(response.content[:length])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 16}
    values = np.frombuffer(response.content[length:], dtype="<f8")
    native = client.post("/predict", json={"instances": x.astype(np.float64).tolist()}).json()
    np.testing.assert_allclose(values, native["predictions"], atol=1e-9)


@pytest.mark.parametrize(
    ("body", "status", "contains"),
    [
        (infer_body([ROW[:9]]), 422, "rows have 9 values but model 'default' v1 takes 10 features"),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 10], "datatype": "BOOL", "data": [True] * 10}
                ]
            },
            422,
            "10 problems in the request: row 0, feature 'x0': expected a number, got boolean true",
        ),
        (
            {"inputs": [{"name": "input", "shape": [2, 10], "datatype": "FP64", "data": ROW}]},
            422,
            "shape [2, 10] needs 20 values, data has 10",
        ),
        (
            {"inputs": [{"name": "input", "shape": [0, 10], "datatype": "FP64", "data": []}]},
            422,
            "instances is empty",
        ),
        (infer_body([ROW] * 51), 422, "batch has 51 rows; the limit is 50"),
        (infer_body([ROW], outputs=[{"name": "nope"}]), 422, "unknown output 'nope'"),
        (
            {"inputs": "nope"},
            422,
            "invalid inference request: inputs: Input should be a valid array",
        ),
        (
            {"id": 5, "inputs": []},
            422,
            "invalid inference request: id: Input should be a valid string",
        ),
        (  # found by schemathesis: a JSON object where a string belongs
            {"inputs": [{"name": "", "shape": [], "datatype": {}, "data": None}]},
            422,
            "invalid inference request: inputs.0.datatype: Input should be a valid string",
        ),
        (  # NumPy would quietly read a boolean among numbers as 1.0
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 10],
                        "datatype": "FP64",
                        "data": [True, *ROW[1:]],
                    }
                ]
            },
            422,
            "input 'input': data must hold only numbers",
        ),
        (
            infer_body([ROW, [1e308] * 10]),  # finite input, a prediction that overflows
            422,
            "row 1: model 'default' v1 predicts a value that is not a finite number",
        ),
    ],
)
def test_infer_errors(client: TestClient, body: object, status: int, contains: str) -> None:
    assert_v2_error(client.post("/v2/models/default/infer", json=body), status, contains)


@pytest.mark.parametrize("value", ["NaN", "1e999", "-Infinity"])
@pytest.mark.parametrize("rows", [1, 40])  # the small and the large JSON decoders
def test_infer_non_finite_json_values(client: TestClient, value: str, rows: int) -> None:
    data = ", ".join([*map(str, ROW[:9]), value] * rows)
    body = (
        f'{{"inputs": [{{"name": "input", "shape": [{rows}, 10], "datatype": "FP64", '
        f'"data": [{data}]}}]}}'
    ).encode()
    response = client.post("/v2/models/default/infer", content=body)
    assert_v2_error(response, 422, "row 0, feature 'x9': NaN and Infinity are not allowed")


def test_infer_non_finite_binary_values(client: TestClient) -> None:
    x = np.array([ROW], dtype=np.float64)
    x[0, 3] = np.nan
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 10],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 80},
                }
            ]
        }
    )
    response = client.post(
        "/v2/models/default/infer",
        content=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert_v2_error(response, 422, "row 0, feature 'x3': NaN and Infinity are not allowed")


def test_infer_unknown_model_version_and_bad_header(client: TestClient) -> None:
    assert_v2_error(client.post("/v2/models/nope/infer", json=infer_body([ROW])), 404, "not served")
    assert_v2_error(
        client.post("/v2/models/default/versions/9/infer", json=infer_body([ROW])),
        404,
        "no version 9",
    )
    assert_v2_error(
        client.post(
            "/v2/models/default/infer",
            content=b"{}",
            headers={"Inference-Header-Content-Length": "x"},
        ),
        422,
        "Inference-Header-Content-Length must be an integer",
    )
    assert_v2_error(client.post("/v2/models/default/infer", content=b"{"), 422, "not valid JSON")


def test_v2_errors_from_the_framework_are_v2_errors_too(client: TestClient) -> None:
    assert_v2_error(client.get("/v2/nope"), 404, "no route for GET /v2/nope")
    assert_v2_error(client.get("/v2/models/default/infer"), 405, "method GET is not allowed")
    assert_v2_error(
        client.post("/v2/repository/index", json={"ready": "maybe"}, headers=ADMIN),
        422,
        "body.ready",
    )
    big = infer_body([ROW] * 1000)
    assert_v2_error(client.post("/v2/models/default/infer", json=big), 413, "larger than the limit")


def test_repository_index_load_and_unload(client: TestClient) -> None:
    assert client.post("/v2/repository/index", headers=ADMIN).json() == [
        {"name": "clf", "version": "1", "state": "READY", "reason": ""},
        {"name": "default", "version": "1", "state": "READY", "reason": ""},
    ]
    assert client.post("/v2/repository/models/clf/unload", headers=ADMIN).json() == {"name": "clf"}
    assert client.get("/v2/models/clf/ready").status_code == 404
    assert_v2_error(
        client.post("/v2/models/clf/infer", json=infer_body([[1, 2, 3, 4]])), 404, "unloaded"
    )
    index = client.post("/v2/repository/index", headers=ADMIN).json()
    assert {"name": "clf", "version": None, "state": "UNAVAILABLE", "reason": "unloaded"} in index
    assert client.post("/v2/repository/index", json={"ready": True}, headers=ADMIN).json() == [
        {"name": "default", "version": "1", "state": "READY", "reason": ""}
    ]
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v1/models").json()["models"][0]["name"] == "default"
    assert client.post("/v2/repository/models/clf/load", headers=ADMIN).json() == {
        "name": "clf",
        "versions": ["1"],
    }
    assert client.get("/v2/models/clf/ready").status_code == 200


def test_repository_errors(client: TestClient, store: ModelStore) -> None:
    assert_v2_error(
        client.post("/v2/repository/models/nope/load", headers=ADMIN), 404, "not in the store"
    )
    assert_v2_error(
        client.post("/v2/repository/models/nope/unload", headers=ADMIN), 404, "not served"
    )
    path = store.version_dir("clf", 1) / "model.skops"
    path.write_bytes(path.read_bytes()[:-1])
    client.post("/v2/repository/models/clf/unload", headers=ADMIN)
    assert_v2_error(
        client.post("/v2/repository/models/clf/load", headers=ADMIN),
        503,
        "could not be loaded: clf v1",
    )
    index = client.post("/v2/repository/index", headers=ADMIN).json()
    entry = next(e for e in index if e["name"] == "clf")
    assert entry["state"] == "UNAVAILABLE"
    assert "does not match its manifest" in entry["reason"]
    # the other model still serves: the server stays ready (MODELSERVE_STRICT_READINESS: not)
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_not_ready_without_models(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(store=tmp_path))) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert_v2_error(client.get("/v2/health/ready"), 503, "no model to serve")


def test_openapi_documents_v2(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferenceRequest"
    }
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert infer["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "InferenceRequest" in document["components"]["schemas"]
    assert document["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    # Error responses are declared by reference: every reference must name a schema.
    refs = re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', json.dumps(document))
    assert "ErrorBody" in refs
    assert set(refs) <= set(document["components"]["schemas"])


@pytest.mark.parametrize("version", ["%C2%B3", "%D9%A3", "1.0", "-1"])
def test_a_version_that_is_not_ascii_digits_is_not_found(client: TestClient, version: str) -> None:
    response = client.post(f"/v2/models/default/versions/{version}/infer", json={"inputs": []})
    assert response.status_code == 404
    assert "has no version" in response.json()["error"]


ZEROS = [0] * 9
OUT_OF_RANGE = [
    ("INT32", [4294967297, *ZEROS], "value 4294967297 at position 0 does not fit INT32"),
    ("INT32", [2147483648, *ZEROS], "value 2147483648 at position 0 does not fit INT32"),
    ("INT32", [*ZEROS, -2147483649], "value -2147483649 at position 9 does not fit INT32"),
    ("INT64", [2**63, *ZEROS], "value 9223372036854775808 at position 0 does not fit INT64"),
    ("INT64", [0, 10**30, *ZEROS[1:]], "value 100000000000…(31 characters) at position 1"),
    ("FP32", [1e300, *ZEROS], "value 1e+300 at position 0 does not fit FP32"),
    ("FP64", [10**400, *ZEROS], "value 100000000000…(401 characters) at position 0 does not"),
]
HUGE_SHAPES = [
    ([2**63, 0], "inputs.0.shape.0: Input should be less than or equal to 2147483647"),
    ([0, 2**63], "inputs.0.shape.1: Input should be less than or equal to 2147483647"),
    ([10**30, 0], "inputs.0.shape.0: Input should be less than or equal to 2147483647"),
    ([2**31, 2**31, 0], "inputs.0.shape.0: Input should be less than or equal to 2147483647"),
    ([2**31 - 1, 2**31 - 1, 0], "shape [2147483647, 2147483647, 0] is too large"),
    ([1] * 9 + [0], "inputs.0.shape: List should have at most 8 items"),
]


def _both_sizes(body: dict[str, object]) -> list[bytes]:
    """The body as sent (the fast lane reads it) and padded past the lane (the app reads it)."""
    small = json.dumps(body).encode()
    return [small, small[:-1] + b" " * 40_000 + b"}"]


@pytest.mark.parametrize(("datatype", "data", "message"), OUT_OF_RANGE)
def test_a_value_that_does_not_fit_its_datatype_is_refused_not_wrapped(
    live: str, datatype: str, data: list[float], message: str
) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, 10], "datatype": datatype, "data": data}]}
    for content in _both_sizes(body):
        response = httpx.post(f"{live}/v2/models/default/infer", content=content)
        assert_v2_error(response, 422, f"input 'input': {message}")


@pytest.mark.parametrize(("shape", "message"), HUGE_SHAPES)
def test_a_shape_past_the_bounds_is_refused_before_anything_is_allocated(
    live: str, shape: list[int], message: str
) -> None:
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP64", "data": []}]}
    for content in _both_sizes(body):
        response = httpx.post(f"{live}/v2/models/default/infer", content=content)
        assert_v2_error(response, 422, message)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": shape,
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 0},
                }
            ]
        }
    ).encode()
    response = httpx.post(
        f"{live}/v2/models/default/infer",
        content=header,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert_v2_error(response, 422, message)
