"""The HTTP API with the app's lifespan running: every route, and every error's status and body."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelserve.core.settings import Settings
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.http.app import create_app
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW, assert_problem, free_port, running_server, serve_command


def test_predict_default_model(client: TestClient, store: ModelStore) -> None:
    response = client.post("/predict", json={"instances": [ROW, ROW]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_name"] == "default"
    assert body["model_version"] == 1
    expected = store.load("default", 1, LoadPolicy()).estimator.predict(np.array([ROW, ROW]))
    np.testing.assert_allclose(body["predictions"], expected, rtol=0, atol=1e-9)
    assert "probabilities" not in body


def test_predict_by_name_and_by_version(client: TestClient, store: ModelStore) -> None:
    train(TrainConfig(name="default", samples=60, seed=3), store)
    # The running app serves what it loaded at startup; restart it to pick up version 2.
    with TestClient(client.app) as fresh:  # type: ignore[arg-type]
        newest = fresh.post("/v1/models/default/predict", json={"instances": [ROW]}).json()
        first = fresh.post("/v1/models/default/versions/1/predict", json={"instances": [ROW]})
    assert newest["model_version"] == 2
    assert first.json()["model_version"] == 1
    assert newest["predictions"] != first.json()["predictions"]


def test_rows_as_objects(client: TestClient) -> None:
    row = {f"x{i}": value for i, value in enumerate(ROW)}
    by_object = client.post("/predict", json={"instances": [row]}).json()
    by_array = client.post("/predict", json={"instances": [ROW]}).json()
    assert by_object["predictions"] == by_array["predictions"]


def test_classifier_probabilities_on_request(client: TestClient) -> None:
    url = "/v1/models/clf/predict"
    plain = client.post(url, json={"instances": [[0.1, 0.2, 0.3, 0.4]]}).json()
    assert plain["predictions"][0] in (0, 1)
    assert "probabilities" not in plain
    body = client.post(
        url, json={"instances": [[0.1, 0.2, 0.3, 0.4]], "return_probabilities": True}
    ).json()
    assert body["classes"] == [0, 1]
    assert len(body["probabilities"][0]) == 2
    assert sum(body["probabilities"][0]) == pytest.approx(1.0)


def test_large_batches_are_predicted_off_the_event_loop(store_path: Path) -> None:
    settings = Settings(store=store_path, offload_body_bytes=0)
    with TestClient(create_app(settings)) as client:
        response = client.post("/predict", json={"instances": [ROW] * 40})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 40


def test_list_models(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body == {
        "models": [
            {
                "name": "clf",
                "default_version": 1,
                "versions": [1],
                "failed": [],
                "unconfirmed": [],
            },
            {
                "name": "default",
                "default_version": 1,
                "versions": [1],
                "failed": [],
                "unconfirmed": [],
            },
        ]
    }


def test_model_detail_has_manifest_schema_metrics_and_versions(client: TestClient) -> None:
    body = client.get("/v1/models/default").json()
    assert body["name"] == "default"
    assert body["default_version"] == 1
    assert [v["version"] for v in body["versions"]] == [1]
    manifest = body["manifest"]
    assert manifest["input_schema"]["count"] == 10
    assert [f["name"] for f in manifest["input_schema"]["features"]][:2] == ["x0", "x1"]
    assert set(manifest["metrics"]) == {"r2", "mae", "rmse"}
    assert len(manifest["sha256"]) == 64
    version = client.get("/v1/models/default/versions/1").json()
    assert version["manifest"] == manifest


def test_health(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": {"clf": [1], "default": [1]}}


def test_not_ready_without_a_verified_model(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(store=tmp_path))) as client:
        assert client.get("/health/live").status_code == 200
        assert_problem(
            client.get("/health/ready"), 503, "model-unavailable", detail_contains="not ready"
        )
        assert_problem(
            client.post("/predict", json={"instances": [ROW]}),
            404,
            "model-not-found",
            detail_contains="model 'default' is not served (models: none)",
        )


# -- every error: status and body -------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "kind", "detail"),
    [
        (
            {"instances": [ROW[:9]]},
            422,
            "feature-count",
            "row 0 has 9 values but model 'default' v1 takes 10",
        ),
        (
            {"instances": [{f"x{i}": 1 for i in range(9)}]},
            422,
            "missing-feature",
            "row 0 is missing feature 'x9'",
        ),
        (
            {"instances": [{**{f"x{i}": 1 for i in range(10)}, "zz": 1}]},
            422,
            "unknown-feature",
            "row 0 has unknown feature 'zz'",
        ),
        (
            {"instances": [[*ROW[:9], "1.5"]]},
            422,
            "not-a-number",
            "expected a number, got string '1.5'",
        ),
        ({"instances": []}, 422, "empty-batch", "instances is empty"),
        ({"instances": [ROW] * 51}, 422, "too-many-rows", "batch has 51 rows; the limit is 50"),
        ({"instances": ["row"]}, 422, "invalid-row", "row 0 must be an array of numbers"),
        (
            {"instances": [ROW], "return_probabilities": True},
            422,
            "unsupported-output",
            "is a regressor",
        ),
    ],
)
def test_invalid_requests(
    client: TestClient, payload: object, status: int, kind: str, detail: str
) -> None:
    body = assert_problem(
        client.post("/predict", json=payload), status, kind, detail_contains=detail
    )
    assert body["instance"] == "/predict"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity(client: TestClient, literal: str) -> None:
    raw = '{"instances": [[' + literal + ", 1, 1, 1, 1, 1, 1, 1, 1, 1]]}"
    body = assert_problem(
        client.post("/predict", content=raw, headers={"content-type": "application/json"}),
        422,
        "not-finite",
        detail_contains="row 0, feature 'x0': NaN and Infinity are not allowed",
    )
    assert body["errors"] == [
        {
            "loc": ["instances", 0, 0],
            "msg": "row 0, feature 'x0': NaN and Infinity are not allowed",
            "type": "not-finite",
        }
    ]


def test_a_prediction_that_overflows_is_an_error_not_a_null(client: TestClient) -> None:
    # Finite input, so it passes validation; the linear model's answer overflows to infinity.
    payload = {"instances": [ROW, [1e308] * 10, ROW]}
    body = assert_problem(
        client.post("/predict", json=payload),
        422,
        "prediction-not-finite",
        detail_contains="row 1: model 'default' v1 predicts a value that is not a finite number",
    )
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [
        (["instances", 1], "prediction-not-finite")
    ]
    one = client.post("/predict", json={"instances": [[-1e308] * 10]})  # the one-row path
    assert one.status_code == 422
    assert one.json()["errors"][0]["loc"] == ["instances", 0]


def test_field_level_errors_list_every_problem(client: TestClient) -> None:
    payload = {"instances": [ROW[:3], [*ROW[:9], None]]}
    body = assert_problem(client.post("/predict", json=payload), 422, "feature-count")
    assert body["detail"].startswith("2 problems in the request")
    assert [e["type"] for e in body["errors"]] == ["feature-count", "not-a-number"]
    assert [e["loc"] for e in body["errors"]] == [["instances", 0], ["instances", 1, 9]]


def test_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b'{"instances": [[1,', headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid-json", detail_contains="request body is not valid JSON")


def test_unknown_model_and_version(client: TestClient) -> None:
    assert_problem(
        client.post("/v1/models/nope/predict", json={"instances": [ROW]}),
        404,
        "model-not-found",
        detail_contains="model 'nope' is not served (models: clf, default)",
    )
    assert_problem(
        client.post("/v1/models/default/versions/7/predict", json={"instances": [ROW]}),
        404,
        "version-not-found",
        detail_contains="model 'default' has no version 7 (versions: 1)",
    )
    assert_problem(client.get("/v1/models/nope"), 404, "model-not-found")
    assert_problem(client.get("/v1/models/default/versions/7"), 404, "version-not-found")


def test_version_that_is_not_a_number(client: TestClient) -> None:
    body = assert_problem(
        client.post("/v1/models/default/versions/latest/predict", json={"instances": [ROW]}),
        422,
        "invalid-request",
        detail_contains="path.version",
    )
    assert body["errors"][0]["loc"] == ["path", "version"]
    assert body["errors"][0]["type"] == "int-parsing"


def test_body_over_the_byte_limit_by_content_length(client: TestClient) -> None:
    payload = json.dumps({"instances": [ROW] * 400}).encode()
    assert len(payload) > 20_000
    assert_problem(
        client.post("/predict", content=payload, headers={"content-type": "application/json"}),
        413,
        "payload-too-large",
        detail_contains="larger than the limit of 20000 bytes",
    )


def test_body_over_the_byte_limit_while_streaming(client: TestClient) -> None:
    chunk = json.dumps(ROW).encode()

    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(600):
            yield chunk + b","
        yield chunk + b"]}"

    response = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large", detail_contains="MODELSERVE_MAX_BODY_BYTES")


def test_unknown_route_is_a_problem(client: TestClient) -> None:
    assert_problem(client.get("/nope"), 404, "not-found", detail_contains="no route for GET /nope")


def test_wrong_method_is_a_problem(client: TestClient) -> None:
    response = client.get("/predict")
    assert_problem(response, 405, "method-not-allowed", detail_contains="method GET is not allowed")
    assert response.headers["allow"] == "POST"


def test_tampered_model_is_not_served_and_the_reason_is_visible(
    store: ModelStore, store_path: Path
) -> None:
    path = store.version_dir("default", 1) / "model.skops"
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    path.write_bytes(bytes(data))
    with TestClient(create_app(Settings(store=store_path))) as client:
        assert_problem(
            client.post("/predict", json={"instances": [ROW]}),
            503,
            "model-unavailable",
            detail_contains="does not match its manifest",
        )
        listed = client.get("/v1/models").json()["models"]
        default = next(m for m in listed if m["name"] == "default")
        assert default["versions"] == []
        assert default["default_version"] is None
        assert "refusing to load it" in default["failed"][0]["error"]
        assert client.post("/v1/models/clf/predict", json={"instances": [[1, 2, 3, 4]]}).is_success
        # clf serves, so the server stays ready (test_one_model_that_cannot_serve_... below)
        assert client.get("/health/ready").json() == {"status": "ready", "models": {"clf": [1]}}


def test_unexpected_errors_are_problems_too(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = client.app.state.registry  # type: ignore[attr-defined]
    predictor = registry.get("default")

    def explode(batch: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(predictor, "predict_batch", explode)
    body = assert_problem(client.post("/predict", json={"instances": [ROW]}), 500, "internal-error")
    assert "boom" not in body["detail"]


# -- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_documents_requests_responses_and_errors(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    predict = document["paths"]["/v1/models/{name}/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    assert set(predict["responses"]) == {"200", "401", "403", "404", "413", "422", "503", "504"}
    for status in ("401", "403", "404", "413", "422", "503", "504"):
        assert predict["responses"][status]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
        }
    schemas = document["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "ProblemDetails", "ModelDetail"} <= set(schemas)
    assert "instances" in schemas["PredictRequest"]["properties"]
    assert schemas["ProblemDetails"]["properties"]["errors"]["items"] == {
        "$ref": "#/components/schemas/ProblemItem"
    }
    assert "ProblemItem" in schemas
    expected = {
        "/predict",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/versions/{version}/predict",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/versions/{version}",
        "/health/live",
        "/health/ready",
    }
    assert expected <= set(document["paths"])
    assert client.get("/docs").status_code == 200


def test_importing_the_app_module_builds_no_app_until_uvicorn_asks_for_one(
    store_path: Path,
) -> None:
    # `modelserve serve` imports main for create_app: no second app, and no rich (CLI output).
    script = """
import sys
from modelserve import main
from modelserve import cli
print("app" in vars(main), sorted({m.split(".")[0] for m in sys.modules} & {"rich"}))
app = main.app
print(type(app).__name__, main.app is app)
try:
    main.nope
except AttributeError as exc:
    print(exc)
"""
    env = {**os.environ, "MODELSERVE_STORE": str(store_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.splitlines() == [
        "False []",
        "ModelServeApp True",
        "module 'modelserve.main' has no attribute 'nope'",
    ]


@pytest.mark.parametrize("strict", [False, True])
def test_one_model_that_cannot_serve_keeps_the_server_in_rotation_unless_strict(
    store_path: Path, tmp_path: Path, strict: bool
) -> None:
    model_file = store_path / "clf" / "1" / "model.skops"
    model_file.write_bytes(model_file.read_bytes()[:-1])  # clf can no longer be served
    port = free_port()
    env = {"MODELSERVE_STRICT_READINESS": "true"} if strict else {}
    with running_server(
        serve_command(store_path, port),
        port=port,
        log=tmp_path / "server.log",
        env=env,
        wait_for="/health/live",
    ) as base:
        ready = httpx.get(f"{base}/health/ready")
        v2_ready = httpx.get(f"{base}/v2/health/ready")
        if strict:
            assert_problem(
                ready,
                503,
                "model-unavailable",
                detail_contains="not ready: no verified version loaded for: clf",
            )
            assert v2_ready.status_code == 503
        else:
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "models": {"default": [1]}}
            assert v2_ready.json() == {"ready": True}
        assert httpx.post(f"{base}/predict", json={"instances": [ROW]}).status_code == 200
        models = {m["name"]: m for m in httpx.get(f"{base}/v1/models").json()["models"]}
        assert models["clf"]["versions"] == []
        assert "does not match its manifest" in models["clf"]["failed"][0]["error"]
        metrics = httpx.get(f"{base}/metrics").text
        assert 'modelserve_model_versions_loaded{model="clf"} 0.0' in metrics
    log = (tmp_path / "server.log").read_text()
    assert "model clf has no version that can be served" in log
