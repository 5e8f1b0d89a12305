"""Faults: files changing under a running server, a bad store at start, a full disk in train."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from modelserve.core.settings import Settings
from modelserve.core.store import ModelStore
from modelserve.http.app import create_app
from tests.helpers import ADMIN, ADMIN_KEY, ROW


def _settings(store_path: Path) -> Settings:
    return Settings(store=store_path, admin_api_key=ADMIN_KEY, poll_interval=0)


def test_a_served_version_corrupted_on_disk_keeps_serving_and_reload_is_refused(
    store: ModelStore, store_path: Path
) -> None:
    with TestClient(create_app(_settings(store_path))) as client:
        before = client.post("/predict", json={"instances": [ROW]}).json()
        model_file = store.version_dir("default", 1) / "model.skops"
        model_file.write_bytes(model_file.read_bytes()[::-1])
        client.app.state.registry.sync()  # type: ignore[attr-defined]  # a watcher pass
        assert client.post("/predict", json={"instances": [ROW]}).json() == before
        assert client.get("/health/ready").status_code == 200
        reload = client.post("/v2/repository/models/default/load", headers=ADMIN)
        assert reload.status_code == 503
        assert "reload of 'default' refused" in reload.json()["error"]
        assert "keeps serving from memory" in reload.json()["error"]
        assert client.post("/predict", json={"instances": [ROW]}).json() == before
        assert client.get("/health/ready").status_code == 200


def test_a_served_versions_files_deleted_keep_serving(store: ModelStore, store_path: Path) -> None:
    with TestClient(create_app(_settings(store_path))) as client:
        for path in store.version_dir("default", 1).iterdir():
            path.unlink()
        client.app.state.registry.sync()  # type: ignore[attr-defined]
        assert client.post("/predict", json={"instances": [ROW]}).status_code == 200
        reload = client.post("/v2/repository/models/default/load", headers=ADMIN)
        assert reload.status_code == 503
        assert "manifest.json is missing" in reload.json()["error"]


def test_a_store_that_vanishes_while_serving_does_not_take_models_down(store_path: Path) -> None:
    with TestClient(create_app(_settings(store_path))) as client:
        shutil.rmtree(store_path)
        client.app.state.registry.sync()  # type: ignore[attr-defined]
        assert client.post("/predict", json={"instances": [ROW]}).status_code == 200
        assert client.get("/health/ready").status_code == 200


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelserve", "serve", "--port", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_store_at_start_is_a_one_line_error(tmp_path: Path) -> None:
    completed = _serve("--store", str(tmp_path / "missing"), "--no-train-if-empty")
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"error: model store {tmp_path / 'missing'} does not exist"


def test_a_store_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "models"
    not_a_dir.write_text("oops")
    completed = _serve("--store", str(not_a_dir))
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert (
        completed.stderr.strip().splitlines()[-1]
        == f"error: model store {not_a_dir} is not a directory"
    )


def test_a_full_disk_during_train_is_a_clear_error_and_leaves_no_version(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes writes past 4 KiB fail with EFBIG, as a full disk fails with ENOSPC.
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
        "from modelserve.cli import main; sys.argv[0] = 'modelserve'; main()"
    )
    store = tmp_path / "models"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "train",
            "--store",
            str(store),
            "--estimator",
            "random-forest",
            "--samples",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "error: publishing 'default' into" in completed.stderr
    assert "File too large" in completed.stderr
    assert ModelStore(store).list_models() == []
    assert list((store / "default").iterdir()) == []  # no version, no temporary directory
