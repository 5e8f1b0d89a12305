"""`modelserve serve --engine ray`: the app as a Ray Serve deployment on a local Ray instance.

Runs in `make test-slow` (which installs the `ray` extra). The real command starts a private
single-node Ray instance bound to loopback with the dashboard off, deploys two replicas, and
must: answer both APIs correctly, pick up a newly published version in every replica, and on
SIGTERM shut Ray down and exit 0, leaving no Ray process or listening socket behind.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio

from modelserve.core.store import ModelStore
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW, free_port, wait_until_up

pytestmark = pytest.mark.slow

RAY_PROCESSES = ("gcs_server", "raylet", "ray::")


def listening() -> set[tuple[str, int, int]]:
    """Every listening TCP socket on the machine, as (address, port, inode)."""
    sockets: set[tuple[str, int, int]] = set()
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_address)
            if family == 4:
                address = ipaddress.IPv4Address(raw[::-1])
            else:  # four little-endian 32-bit words
                words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                address = ipaddress.IPv6Address(b"".join(words))
            sockets.add((str(address), int(hex_port, 16), int(fields[9])))
    return sockets


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def owner(inode: int) -> str:
    """The command line of the process holding socket ``inode``."""
    target = f"socket:[{inode}]"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) == target for fd in (entry / "fd").iterdir()):
                return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return "?"


def ray_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(marker in command for marker in RAY_PROCESSES):
            pids.add(int(entry.name))
    return pids


def test_ray_serve_deployment_serves_swaps_and_stops_cleanly(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(samples=200), store)
    model_file = store.version_dir("default", 1) / "model.skops"
    estimator = sio.load(model_file, trusted=sio.get_untrusted_types(file=model_file))
    port = free_port()
    sockets_before, ray_before = listening(), ray_pids()
    log = tmp_path / "ray.log"
    command = [
        sys.executable, "-m", "modelserve", "serve", "--engine", "ray", "--replicas", "2",
        "--replica-cpus", "0.5", "--store", str(store.root), "--port", str(port),
        "--poll-interval", "0.5", "--no-train-if-empty",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/health/ready", process, log, timeout=180)

        # Ray listens on loopback only, and the dashboard (8265) is off. The one exception is
        # not configurable: each Serve replica's inter-deployment gRPC server binds "[::]:0"
        # (hard-coded in ray/serve/_private/replica.py); nothing is advertised or sent there.
        now = listening()
        new_sockets = now - sockets_before
        # Ray Serve's HTTP proxy took the port, on loopback.
        proxy = {(address, p) for address, p, _ in now if p == port}
        assert proxy, sorted(now)
        assert all(is_loopback(address) for address, _ in proxy), proxy
        outside = {s for s in new_sockets if not is_loopback(s[0])}
        owners = sorted(owner(inode).split()[0] for _, _, inode in outside)
        # The title of a replica process is its task while it runs one (…ModelServe.handle_…).
        replica = "ray::ServeReplica:modelserve:ModelServe"
        assert all(o.startswith(replica) for o in owners), (owners, outside)
        assert len(owners) <= 2  # one per replica at most
        assert not any(p == 8265 for _, p, _ in new_sockets)

        X = np.random.default_rng(0).normal(size=(5, 10))
        expected = estimator.predict(X)
        with httpx.Client(base_url=base, timeout=30) as client:
            native = client.post("/predict", json={"instances": X.tolist()})
            assert native.status_code == 200, native.text
            assert native.json()["model_version"] == 1
            np.testing.assert_allclose(native.json()["predictions"], expected, rtol=1e-9)
            assert native.headers.get_list("x-request-id") != []
            assert len(native.headers.get_list("x-request-id")) == 1

            infer = {
                "inputs": [
                    {"name": "x", "shape": [5, 10], "datatype": "FP64", "data": X.ravel().tolist()}
                ]
            }
            v2 = client.post("/v2/models/default/infer", json=infer)
            assert v2.status_code == 200, v2.text
            np.testing.assert_allclose(v2.json()["outputs"][0]["data"], expected, rtol=1e-9)

            bad = client.post("/predict", json={"instances": [[1.0]]})
            assert bad.status_code == 422
            assert bad.json()["type"] == "urn:modelserve:problem:feature-count"

            # A new version: every replica's watcher must pick it up.
            train(TrainConfig(samples=200, seed=7), store)
            deadline = time.monotonic() + 60
            streak = 0
            while streak < 20:
                assert time.monotonic() < deadline, "v2 was not served by every replica"
                answer = client.post("/predict", json={"instances": [ROW]})
                assert answer.status_code == 200, answer.text
                streak = streak + 1 if answer.json()["model_version"] == 2 else 0
                time.sleep(0.05)
            ready = client.get("/health/ready").json()
            assert ready["models"] == {"default": [1, 2]}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0, log.read_text()[-3000:]
    # Everything Ray started is gone: processes and sockets.
    deadline = time.monotonic() + 30
    while (ray_pids() - ray_before or listening() - sockets_before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray_pids() - ray_before == set()
    assert listening() - sockets_before == set()
    assert "shutting Ray Serve down" in log.read_text()
    assert "Controller failed to shut down" not in log.read_text()
