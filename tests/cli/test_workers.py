"""`modelserve serve --workers N`: every worker serves, swaps versions and reports readiness."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from modelserve.core.settings import Settings, settings_environment
from modelserve.core.store import ModelStore
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW, free_port, running_server, serve_command


def test_settings_survive_the_trip_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        store=tmp_path,
        port=9123,
        max_rows=7,
        allow_pickle=True,
        admin_api_key="secret",
        trusted_types=["a.B", "c.D"],
        poll_interval=0.5,
        workers=3,
    )
    for key, value in settings_environment(settings).items():
        monkeypatch.setenv(key, value)
    rebuilt = Settings()
    assert rebuilt == settings
    assert isinstance(rebuilt.admin_api_key, SecretStr)
    assert rebuilt.admin_api_key.get_secret_value() == "secret"


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def test_two_workers_serve_and_both_pick_up_a_new_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(samples=100), store)
    port = free_port()
    command = serve_command(store.root, port, "--workers", "2", "--poll-interval", "0.2")
    with running_server(
        command, port=port, log=tmp_path / "server.log", wait_for="/health/ready"
    ) as base:
        workers = [
            p
            for p in _children(base.pid)
            if "modelserve" in Path(f"/proc/{p}/cmdline").read_text()
            or "multiprocessing" in Path(f"/proc/{p}/cmdline").read_text()
        ]
        assert len(workers) >= 2, workers

        def versions(count: int) -> set[int]:
            seen = set()
            for _ in range(count):  # a new connection each time: the kernel spreads them
                with httpx.Client() as client:
                    response = client.post(f"{base}/predict", json={"instances": [ROW]})
                    assert response.status_code == 200
                    seen.add(response.json()["model_version"])
            return seen

        assert versions(20) == {1}
        train(TrainConfig(samples=100, seed=5), store)
        deadline = time.monotonic() + 30
        while versions(30) != {2}:
            assert time.monotonic() < deadline, "a worker never picked up version 2"
            time.sleep(0.2)
        for _ in range(10):
            assert httpx.get(f"{base}/health/ready").status_code == 200


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_workers_die_with_a_killed_supervisor_and_the_next_start_cleans_up(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(samples=100), store)
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"TMPDIR": str(temp), "MODELSERVE_DRAIN_TIMEOUT": "2"}
    port = free_port()
    command = serve_command(store.root, port, "--workers", "2")
    with running_server(
        command, port=port, log=tmp_path / "first.log", env=env, wait_for="/health/ready"
    ) as base:
        workers = _children(base.pid)
        assert len(workers) >= 2, workers
        (metrics_dir,) = temp.glob("modelserve-metrics-*")
        os.kill(base.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(worker) for worker in workers):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            time.sleep(0.1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health/live", timeout=2)
    assert metrics_dir.is_dir()  # nothing ran to remove it
    time.sleep(2.1)  # the next start removes what no live supervisor holds, once a moment old
    with running_server(
        command, port=port, log=tmp_path / "second.log", env=env, wait_for="/health/ready"
    ) as base:  # on the same port: no orphan holds it
        assert httpx.post(f"{base}/predict", json={"instances": [ROW]}).status_code == 200
        assert not metrics_dir.exists()
        (current,) = temp.glob("modelserve-metrics-*")  # its own, held while it runs
    assert not current.exists()
