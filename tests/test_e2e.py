"""End to end: the real CLI trains, a real server process serves on loopback, httpx asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import skops.io as sio

from modelserve.core.store import ModelStore
from tests.core.test_store import MARKER_NAME, plant_malicious_pickle
from tests.helpers import ROW, assert_problem, free_port, running_server

MODELSERVE = [sys.executable, "-m", "modelserve"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [*MODELSERVE, *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def test_trained_by_the_cli_served_over_http_equals_the_models_own_predict(tmp_path: Path) -> None:
    store = tmp_path / "models"
    cli("train", "--store", str(store))
    cli(
        "train",
        "--store",
        str(store),
        "--name",
        "forest",
        "--estimator",
        "random-forest",
        "--samples",
        "300",
        "--features",
        "5",
    )
    port = free_port()
    command = [
        *MODELSERVE,
        "serve",
        "--store",
        str(store),
        "--port",
        str(port),
        "--no-train-if-empty",
    ]
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(64, 10))
    with running_server(
        command, port=port, log=tmp_path / "server.log", wait_for="/health/ready"
    ) as base:
        answer = httpx.post(f"{base}/predict", json={"instances": rows.tolist()}, timeout=10)
        forest_answer = httpx.post(
            f"{base}/v1/models/forest/predict", json={"instances": rows[:, :5].tolist()}, timeout=10
        )
        bad = httpx.post(f"{base}/predict", json={"instances": [ROW[:3]]}, timeout=10)
    assert answer.status_code == 200
    assert forest_answer.status_code == 200
    model = sio.load(store / "default" / "1" / "model.skops")
    np.testing.assert_allclose(answer.json()["predictions"], model.predict(rows), rtol=0, atol=1e-9)
    forest = sio.load(store / "forest" / "1" / "model.skops", trusted=["sklearn.tree._tree.Tree"])
    np.testing.assert_allclose(
        forest_answer.json()["predictions"], forest.predict(rows[:, :5]), rtol=0, atol=1e-9
    )
    assert_problem(bad, 422, "feature-count", detail_contains="row 0 has 3 values")


def test_serve_trains_the_default_model_when_the_store_is_empty(tmp_path: Path) -> None:
    store = tmp_path / "empty"
    port = free_port()
    command = [*MODELSERVE, "serve", "--store", str(store), "--port", str(port)]
    with running_server(
        command, port=port, log=tmp_path / "server.log", wait_for="/health/ready"
    ) as base:
        ready = httpx.get(f"{base}/health/ready").json()
        answer = httpx.post(f"{base}/predict", json={"instances": [ROW]})
    assert ready == {"status": "ready", "models": {"default": [1]}}
    assert answer.json()["model_version"] == 1
    assert ModelStore(store).list_versions("default") == [1]


def test_uvicorn_app_reads_the_store_from_the_environment(tmp_path: Path) -> None:
    store = tmp_path / "models"
    cli("train", "--store", str(store), "--samples", "100")
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "modelserve.main:app", "--port", str(port)]
    env = {"MODELSERVE_STORE": str(store)}
    with running_server(
        command, port=port, log=tmp_path / "server.log", env=env, wait_for="/health/ready"
    ) as base:
        answer = httpx.post(f"{base}/predict", json={"instances": [ROW]})
    assert answer.status_code == 200
    assert answer.json()["model_name"] == "default"


def test_malicious_pickle_in_the_store_never_runs_at_server_startup(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    cli("train", "--store", str(store.root), "--samples", "100")
    marker = tmp_path / MARKER_NAME
    plant_malicious_pickle(store, marker, matching_hash=False)
    port = free_port()
    command = [
        *MODELSERVE,
        "serve",
        "--store",
        str(store.root),
        "--port",
        str(port),
        "--allow-pickle",
    ]
    log = tmp_path / "server.log"
    with running_server(command, port=port, log=log, wait_for="/v1/models") as base:
        refused = httpx.post(f"{base}/v1/models/evil/predict", json={"instances": [[1, 2, 3]]})
        served = httpx.post(f"{base}/predict", json={"instances": [ROW]})
        ready = httpx.get(f"{base}/health/ready")
    assert_problem(refused, 503, "model-unavailable", detail_contains="does not match its manifest")
    assert served.status_code == 200
    # One bad model keeps the server in rotation for the others, and is reported.
    assert ready.json() == {"status": "ready", "models": {"default": [1]}}
    assert "refused to load evil v1" in log.read_text()
    assert "model evil has no version that can be served" in log.read_text()
    assert not marker.exists()
