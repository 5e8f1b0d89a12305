"""Graceful shutdown of a real server process: SIGTERM with slow requests in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from modelserve.core.store import ModelStore
from tests.helpers import ROW, free_port, serve_command
from tests.slow_model import publish_slow_model


def test_sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    publish_slow_model(store, "slow", delay=2.0)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        serve_command(store.root, port, "--allow-pickle"),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MODELSERVE_OFFLOAD_BODY_BYTES": "0"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        statuses: list[int] = []
        lock = threading.Lock()

        # Clients made up front: building one (its TLS context) takes tens of ms, and 20 of
        # them built inside the threads could still be connecting when SIGTERM arrives.
        clients = [httpx.Client(timeout=30) for _ in range(20)]

        def call(client: httpx.Client) -> None:
            response = client.post(f"{base}/v1/models/slow/predict", json={"instances": [ROW]})
            with lock:
                statuses.append(response.status_code)

        threads = [threading.Thread(target=call, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        time.sleep(0.8)  # all 20 are now inside the model's 2-second predict
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = False
        try:
            httpx.get(f"{base}/health/live", timeout=2)
        except httpx.ConnectError:
            refused = True
        for thread in threads:
            thread.join()
        exit_code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert statuses == [200] * 20
    assert refused, "a new connection was accepted after SIGTERM"
    assert exit_code == 0, (tmp_path / "server.log").read_text()
