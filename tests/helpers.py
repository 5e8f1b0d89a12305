"""Assertions shared by the test modules."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "test-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
"""Headers that carry the admin API key the test servers are configured with."""

ROW = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 0.25, 3.0, -2.0, 1.0]
"""One valid row for the `default` model (10 features)."""


def train_template(root: Path) -> None:
    """The store most tests serve: `default` v1 (linear, x0..x9), `clf` v1 (x0..x3)."""
    from modelserve.core.store import ModelStore  # noqa: PLC0415 - helpers stay cheap to import
    from modelserve.training.train import TrainConfig, train  # noqa: PLC0415

    store = ModelStore(root)
    train(TrainConfig(name="default", samples=200), store)
    train(TrainConfig(name="clf", estimator="logistic-regression", samples=200, features=4), store)


def train_trees(root: Path) -> None:
    """`forest`, `boost` and `hist`: three tree ensembles on x0..x3 (see conftest)."""
    from modelserve.core.store import ModelStore  # noqa: PLC0415 - helpers stay cheap to import
    from modelserve.training.train import TrainConfig, train  # noqa: PLC0415

    store = ModelStore(root)
    for name, estimator in (
        ("forest", "random-forest"),
        ("boost", "gradient-boosting-classifier"),
        ("hist", "hist-gradient-boosting"),
    ):
        train(TrainConfig(name=name, estimator=estimator, samples=300, features=4), store)


PENGUIN = {
    "island": "Biscoe",
    "bill_length_mm": 45.1,
    "bill_depth_mm": 14.5,
    "flipper_length_mm": 215.0,
    "body_mass_g": 5000.0,
    "sex": "female",
    "year": 2008,
}
"""One valid row for the `penguins` models, by feature name."""


def write_penguins(path: Path) -> Path:
    """The Palmer penguins (shipped by the palmerpenguins package) written as a CSV."""
    import palmerpenguins  # noqa: PLC0415 - only the tabular tests need it

    palmerpenguins.load_penguins().to_csv(path, index=False)
    return path


def train_penguins(root: Path, csv: Path) -> None:
    """`penguins` (HistGradientBoostingClassifier) and `penguins-lr` (LogisticRegression)."""
    from modelserve.core.store import ModelStore  # noqa: PLC0415 - helpers stay cheap to import
    from modelserve.training.train import TrainConfig, train  # noqa: PLC0415

    store = ModelStore(root)
    for name, estimator in (
        ("penguins", "hist-gradient-boosting-classifier"),
        ("penguins-lr", "logistic-regression"),
    ):
        train(TrainConfig(name=name, estimator=estimator, csv=csv, target="species"), store)


def assert_problem(
    response: httpx.Response, status: int, type_suffix: str, *, detail_contains: str = ""
) -> dict[str, Any]:
    """Assert an RFC 9457 problem+json response and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:modelserve:problem:{type_suffix}", body
    assert body["title"]
    assert detail_contains in body["detail"], body["detail"]
    assert isinstance(body["errors"], list)
    return body


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command(store: Path | str, port: int, *flags: str) -> list[str]:
    """The command line of `modelserve serve` on ``port`` for ``store`` (never trains)."""
    return [
        sys.executable, "-m", "modelserve", "serve", "--store", str(store), "--port", str(port),
        "--no-train-if-empty", *flags,
    ]  # fmt: skip


class Server(str):
    """The base URL of a running server process, which also knows the process id."""

    pid: int


def wait_until_up(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> None:
    """Poll ``url`` until it answers 200; fail with the log if the process exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not up after {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def running_server(
    command: list[str],
    *,
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    wait_for: str = "/health/live",
    timeout: float = 60.0,
) -> Iterator[Server]:
    """Start a real server process on loopback, wait until ``wait_for`` answers 200, stop it."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        base = Server(f"http://127.0.0.1:{port}")
        base.pid = process.pid
        try:
            wait_until_up(base + wait_for, process, log, timeout)
            # `modelserve serve` listens before its FastAPI app is built (http.staged) and
            # holds what the fast lane does not answer until it is. Only the app answers
            # /metrics (200, or 404 when switched off), and a probe path is never logged, so
            # after this every test starts against the whole server, its access log untouched.
            httpx.get(base + "/metrics", timeout=timeout)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
