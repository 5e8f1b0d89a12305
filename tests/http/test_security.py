"""Authorization, limits (deadline, concurrency) and the docs switch, through the real app."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from modelserve.core.settings import Settings
from modelserve.core.store import ModelStore
from modelserve.http.app import create_app
from tests.core.test_store import MARKER_NAME, plant_malicious_pickle
from tests.helpers import ADMIN, ROW, assert_problem, free_port, running_server, serve_command
from tests.slow_model import publish_slow_model

INFERENCE_KEY = "test-inference-key"


@pytest.fixture
def keyed(store_path: Path) -> TestClient:
    settings = Settings(
        store=store_path, admin_api_key="test-admin-key", inference_api_key=INFERENCE_KEY
    )
    with TestClient(create_app(settings)) as client:
        yield client  # type: ignore[misc]


def test_repository_is_closed_without_an_admin_key(store_path: Path) -> None:
    with TestClient(create_app(Settings(store=store_path))) as client:
        response = client.post("/v2/repository/index")
        assert response.status_code == 403
        assert "the repository API is off: set MODELSERVE_ADMIN_API_KEY" in response.json()["error"]
        assert client.post("/v2/repository/models/clf/unload").status_code == 403
    with TestClient(create_app(Settings(store=store_path, open_repository=True))) as client:
        assert client.post("/v2/repository/index").status_code == 200


def test_admin_key_guards_the_repository(client: TestClient) -> None:
    missing = client.post("/v2/repository/index")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {
        "error": "the repository API needs the admin API key: send 'Authorization: Bearer <key>'"
    }
    wrong = client.post("/v2/repository/index", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert wrong.json() == {"error": "the API key does not grant the repository API"}
    assert client.post("/v2/repository/index", headers=ADMIN).status_code == 200
    by_header = client.post("/v2/repository/index", headers={"X-API-Key": "test-admin-key"})
    assert by_header.status_code == 200


def test_inference_key(keyed: TestClient) -> None:
    body = {"instances": [ROW]}
    missing = keyed.post("/predict", json=body)
    assert_problem(missing, 401, "unauthorized", detail_contains="needs an API key")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_problem(
        keyed.post("/predict", json=body, headers={"Authorization": "Bearer nope"}),
        403,
        "forbidden",
        detail_contains="the API key is not valid",
    )
    ok = {"Authorization": f"Bearer {INFERENCE_KEY}"}
    assert keyed.post("/predict", json=body, headers=ok).status_code == 200
    assert keyed.post("/predict", json=body, headers=ADMIN).status_code == 200  # admin may infer
    assert keyed.get("/v1/models", headers=ok).status_code == 200
    assert keyed.get("/v1/models").status_code == 401
    assert keyed.get("/v2/models/default").status_code == 401
    v2 = {"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64", "data": ROW}]}
    assert keyed.post("/v2/models/default/infer", json=v2, headers=ok).status_code == 200
    # An inference key does not open the repository: under-privileged is 403.
    under = keyed.post("/v2/repository/index", headers=ok)
    assert under.status_code == 403
    assert under.json() == {"error": "the API key does not grant the repository API"}
    # Health and server metadata stay open for probes.
    assert keyed.get("/health/ready").status_code == 200
    assert keyed.get("/v2/health/ready").status_code == 200
    assert keyed.get("/v2").status_code == 200


def test_docs_can_be_turned_off(store_path: Path) -> None:
    with TestClient(create_app(Settings(store=store_path, docs=False))) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert_problem(client.get(path), 404, "not-found")


def test_request_deadline(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    publish_slow_model(store, "slow", delay=1.0)
    settings = Settings(
        store=store.root, allow_pickle=True, request_timeout=0.2, offload_body_bytes=0
    )
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = client.post("/v1/models/slow/predict", json={"instances": [ROW]})
        elapsed = time.monotonic() - started
        v2 = client.post(
            "/v2/models/slow/infer",
            json={"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64", "data": ROW}]},
        )
    assert_problem(response, 504, "deadline-exceeded", detail_contains="deadline of 0.2 s")
    assert elapsed < 0.9  # answered at the deadline, not when the model finished
    assert v2.status_code == 504
    assert "MODELSERVE_REQUEST_TIMEOUT" in v2.json()["error"]


def test_overload_is_shed_with_503_and_retry_after(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    publish_slow_model(store, "slow", delay=1.5)
    port = free_port()
    command = serve_command(store.root, port, "--allow-pickle")
    env = {"MODELSERVE_MAX_CONCURRENT_REQUESTS": "2", "MODELSERVE_OFFLOAD_BODY_BYTES": "0"}
    results: list[tuple[int, float, httpx.Response]] = []
    lock = threading.Lock()

    def call(base: str) -> None:
        started = time.monotonic()
        response = httpx.post(
            f"{base}/v1/models/slow/predict", json={"instances": [ROW]}, timeout=30
        )
        with lock:
            results.append((response.status_code, time.monotonic() - started, response))

    with running_server(command, port=port, log=tmp_path / "server.log", env=env) as base:
        slow = [threading.Thread(target=call, args=(base,)) for _ in range(2)]
        for thread in slow:
            thread.start()
        time.sleep(0.5)  # both are now inside the model
        extra = [threading.Thread(target=call, args=(base,)) for _ in range(4)]
        for thread in extra:
            thread.start()
        for thread in extra:
            thread.join()
        probe = httpx.get(f"{base}/health/live")
        for thread in slow:
            thread.join()
    assert probe.status_code == 200  # health probes are never shed
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 503, 503, 503, 503]
    for status, elapsed, response in results:
        if status == 503:
            assert elapsed < 0.5  # shed at once, not queued behind the slow ones
            assert response.headers["retry-after"] == "1"
            assert_problem(response, 503, "overloaded", detail_contains="busy with 2 requests")


def test_malicious_pickle_never_runs_from_the_watcher_or_the_repository_api(
    store: ModelStore, store_path: Path, tmp_path: Path
) -> None:
    marker = tmp_path / MARKER_NAME
    settings = Settings(
        store=store_path, allow_pickle=True, poll_interval=0.05, admin_api_key="test-admin-key"
    )
    with TestClient(create_app(settings)) as client:
        plant_malicious_pickle(store, marker, matching_hash=False)  # appears while serving

        def refused() -> bool:
            index = client.post("/v2/repository/index", headers=ADMIN).json()
            return any(e["name"] == "evil" and e["state"] == "UNAVAILABLE" for e in index)

        deadline = time.monotonic() + 10
        while not refused():
            assert time.monotonic() < deadline, "the watcher never looked at the planted model"
            time.sleep(0.05)
        response = client.post("/v2/repository/models/evil/load", headers=ADMIN)
        assert response.status_code == 503
        assert "does not match its manifest" in response.json()["error"]
    assert not marker.exists()


def test_pickle_with_a_matching_hash_is_still_refused_while_pickle_is_off(
    store: ModelStore, store_path: Path, tmp_path: Path
) -> None:
    marker = tmp_path / MARKER_NAME
    plant_malicious_pickle(store, marker, matching_hash=True)
    settings = Settings(store=store_path, admin_api_key="test-admin-key")
    with TestClient(create_app(settings)) as client:
        response = client.post("/v2/repository/models/evil/load", headers=ADMIN)
        assert response.status_code == 503
        assert "pickle loading is off" in response.json()["error"]
        assert_problem(
            client.post("/v1/models/evil/predict", json={"instances": [[1, 2, 3]]}),
            503,
            "model-unavailable",
            detail_contains="MODELSERVE_ALLOW_PICKLE",
        )
    assert not marker.exists()
