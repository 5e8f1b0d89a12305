"""Request ids in and out, and one access-log record per request with what it was about."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelserve.core.settings import Settings
from modelserve.http.app import create_app
from tests.helpers import ROW, assert_problem

GENERATED = re.compile(r"[0-9a-f]{32}")


def access_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "modelserve.access"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/predict", {"instances": [ROW]}, 200),  # the fast path answers
        ("POST", "/v1/models/clf/predict", {"instances": [[0.1, 0.2, 0.3, 0.4]]}, 200),  # a route
        ("POST", "/predict", {"instances": [[1]]}, 422),
        ("GET", "/no/such/route", None, 404),
        ("GET", "/health/live", None, 200),
    ],
)
def test_a_sane_request_id_is_kept_and_returned(
    client: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    response = client.request(method, path, json=body, headers={"X-Request-ID": "trace-42:a/b"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == "trace-42:a/b"


@pytest.mark.parametrize("sent", ["has space", 'quote"d', "x" * 129, "line\tbreak", "ünïcode"])
def test_an_unsafe_request_id_is_replaced_not_echoed(client: TestClient, sent: str) -> None:
    response = client.post(
        "/predict", json={"instances": [ROW]}, headers={"X-Request-ID": sent.encode()}
    )
    assert response.status_code == 200
    assert GENERATED.fullmatch(response.headers["x-request-id"])


def test_every_request_gets_a_fresh_id(client: TestClient) -> None:
    ids = {client.get("/health/live").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20
    assert all(GENERATED.fullmatch(i) for i in ids)


def test_one_access_record_per_request_with_model_version_and_rows(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelserve.access")
    client.post("/predict", json={"instances": [ROW, ROW]}, headers={"X-Request-ID": "r1"})
    client.post("/v2/models/default/versions/1/infer", json={
        "inputs": [{"name": "x", "shape": [3, 10], "datatype": "FP64", "data": ROW * 3}]
    }, headers={"X-Request-ID": "r2"})  # fmt: skip
    client.post("/predict", json={"instances": [[1]]}, headers={"X-Request-ID": "r3"})
    client.get("/v1/models", headers={"X-Request-ID": "r4"})

    records = access_records(caplog)
    assert [r["request_id"] for r in records] == ["r1", "r2", "r3", "r4"]
    first, second, third, fourth = records
    keys = ("method", "path", "route", "status", "model", "version", "rows")
    assert {k: first[k] for k in keys} == {
        "method": "POST", "path": "/predict", "route": "/predict", "status": 200,
        "model": "default", "version": 1, "rows": 2,
    }  # fmt: skip
    assert first["latency_ms"] > 0
    assert first["client"].startswith("testclient:")
    assert (second["path"], second["route"], second["rows"], second["version"]) == (
        "/v2/models/default/versions/1/infer",
        "/v2/models/{name}/versions/{version}/infer",
        3,
        1,
    )
    assert (third["status"], third["model"], third["rows"]) == (422, "default", 0)
    assert (fourth["route"], fourth["model"], fourth["status"]) == ("/v1/models", None, 200)
    message = next(r.getMessage() for r in caplog.records if r.name == "modelserve.access")
    assert message.startswith("POST /predict 200 ")
    assert "id=r1 model=default v1 rows=2" in message


def test_health_probes_and_scrapes_are_not_logged_unless_asked(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelserve.access")
    for log_health, expected in ((False, ["/v1/models"]), (True, None)):
        caplog.clear()
        app = create_app(settings.model_copy(update={"log_health": log_health}))
        with TestClient(app) as client:
            for path in ("/health/live", "/health/ready", "/v2/health/ready", "/metrics"):
                assert client.get(path).status_code == 200
            client.get("/v1/models")
        paths = [r["path"] for r in access_records(caplog)]
        everything = ["/health/live", "/health/ready", "/v2/health/ready", "/metrics", "/v1/models"]
        assert paths == (expected or everything)


def test_the_access_log_can_be_switched_off(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelserve.access")
    with TestClient(create_app(settings.model_copy(update={"access_log": False}))) as client:
        response = client.post("/predict", json={"instances": [ROW]})
        assert response.status_code == 200
        assert GENERATED.fullmatch(response.headers["x-request-id"])  # ids stay on
    assert access_records(caplog) == []


def test_shed_requests_are_logged_and_carry_an_id(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelserve.access")
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/predict", content=b"x" * 30_000, headers={"X-Request-ID": "too-big"}
        )
        assert_problem(response, 413, "payload-too-large")
        assert response.headers["x-request-id"] == "too-big"
    (record,) = access_records(caplog)
    assert (record["request_id"], record["status"]) == ("too-big", 413)


def test_behind_a_proxy_that_sets_the_header_the_id_is_used_but_not_repeated(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelserve.access")
    app = create_app(settings.model_copy(update={"request_id_header": False}))
    with TestClient(app) as client:
        response = client.post(
            "/predict", json={"instances": [ROW]}, headers={"X-Request-ID": "from-proxy"}
        )
        assert response.status_code == 200
        assert "x-request-id" not in response.headers
    (record,) = access_records(caplog)
    assert record["request_id"] == "from-proxy"
