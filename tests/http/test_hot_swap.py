"""Live model management under traffic, against a real server process on loopback."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from modelserve.core.store import ModelStore
from modelserve.training.train import TrainConfig, train
from tests.helpers import ADMIN, ADMIN_KEY, ROW, free_port, running_server, serve_command

POLL = 0.2


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def publish_corrupt_version(store: ModelStore, name: str) -> int:
    """Publish a version whose model file does not match its manifest, atomically."""
    latest = store.latest_version(name)
    staging = store.root / name / ".tmp-corrupt"
    shutil.copytree(store.version_dir(name, latest), staging)
    manifest = (staging / "manifest.json").read_text()
    (staging / "manifest.json").write_text(
        manifest.replace(f'"version": {latest}', f'"version": {latest + 1}')
    )
    model = staging / "model.skops"
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))
    staging.rename(store.root / name / str(latest + 1))
    return latest + 1


def test_versions_swap_under_traffic_with_no_failed_request(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(name="default", samples=200), store)
    train(TrainConfig(name="other", samples=100, features=3), store)
    port = free_port()
    command = serve_command(store.root, port, "--poll-interval", str(POLL))
    stop = threading.Event()
    seen: list[list[tuple[int, int | None]]] = [[], []]

    def traffic(log: list[tuple[int, int | None]], base: str, v2: bool) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 90
            while not stop.is_set() and time.monotonic() < deadline:
                if v2:
                    body = {
                        "inputs": [
                            {"name": "input", "shape": [1, 10], "datatype": "FP64", "data": ROW}
                        ]
                    }
                    response = client.post("/v2/models/default/infer", json=body)
                    version = int(response.json()["model_version"]) if response.is_success else None
                else:
                    response = client.post("/predict", json={"instances": [ROW]})
                    version = response.json().get("model_version") if response.is_success else None
                log.append((response.status_code, version))

    env = {"MODELSERVE_ADMIN_API_KEY": ADMIN_KEY}
    with running_server(
        command, port=port, log=tmp_path / "server.log", env=env, wait_for="/health/ready"
    ) as base:
        threads = [
            threading.Thread(target=traffic, args=(seen[i], base, bool(i))) for i in range(2)
        ]
        for thread in threads:
            thread.start()

        def serving() -> int:
            return int(httpx.get(f"{base}/v1/models/default").json()["default_version"])

        try:
            wait_for(lambda: all(len(log) > 20 for log in seen))
            # 1. `modelserve train` into the live server's store: v2 goes live, no restart.
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "modelserve",
                    "train",
                    "--store",
                    str(store.root),
                    "--samples",
                    "150",
                    "--seed",
                    "2",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            wait_for(lambda: serving() == 2)
            # 2. A corrupt v3 is never served; v2 keeps answering.
            corrupt = publish_corrupt_version(store, "default")
            wait_for(
                lambda: any(
                    e["version"] == str(corrupt) and e["state"] == "UNAVAILABLE"
                    for e in httpx.post(f"{base}/v2/repository/index", headers=ADMIN).json()
                )
            )
            assert serving() == 2
            # 3. A good v4 replaces v2.
            train(TrainConfig(name="default", samples=150, seed=4), store)
            wait_for(lambda: serving() == 4)
            # 4. Another model is unloaded and loaded again while `default` takes traffic.
            assert httpx.post(f"{base}/v2/repository/models/other/unload", headers=ADMIN).is_success
            assert httpx.get(f"{base}/v2/models/other/ready").status_code == 404
            assert httpx.post(f"{base}/v2/repository/models/other/load", headers=ADMIN).is_success
            assert httpx.get(f"{base}/v2/models/other/ready").status_code == 200
            count = [len(log) for log in seen]
            wait_for(lambda: all(len(log) > c + 20 for log, c in zip(seen, count, strict=True)))
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    log_text = (tmp_path / "server.log").read_text()
    assert "refused to load default v3" in log_text
    for log in seen:
        failures = [entry for entry in log if entry[0] != 200]
        assert failures == [], failures[:5]
        versions = [version for _, version in log]
        changes = [(a, b) for a, b in itertools.pairwise(versions) if a != b]
        # Each good swap changes the answering version exactly once; v3 never answers.
        assert changes == [(1, 2), (2, 4)], changes
