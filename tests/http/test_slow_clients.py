"""Slow and vanishing clients against a real server process: every wait has a deadline.

A body that stops coming gets a 504 within MODELSERVE_REQUEST_TIMEOUT, whatever its size, and
frees its slot; headers that trickle are cut off after MODELSERVE_HEADER_TIMEOUT; a client that
hangs up is counted as 499, not as a server error; SIGTERM ends within MODELSERVE_DRAIN_TIMEOUT
however slow the clients are.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelserve.core.store import ModelStore
from tests.helpers import ROW, Server, free_port, running_server, serve_command, wait_until_up
from tests.slow_model import publish_slow_model

REQUEST_TIMEOUT = 1.0
HEADER_TIMEOUT = 0.5
SLOW_PREDICT = 0.8  # longer than the header timeout, within the request timeout
LIMITS = {
    "MODELSERVE_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
    "MODELSERVE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    "MODELSERVE_MAX_CONCURRENT_REQUESTS": "4",
    "MODELSERVE_LOG_FORMAT": "json",
}
SMALL = 80  # declared body sizes: the fast lane reads this one,
LARGE = 40_000  # the app this one (over MODELSERVE_OFFLOAD_BODY_BYTES)


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slow") / "server.log"


@pytest.fixture(scope="module")
def server(template_store: Path, server_log: Path) -> Iterator[Server]:
    root = server_log.parent / "models"
    shutil.copytree(template_store, root)
    publish_slow_model(ModelStore(root), "slow", delay=SLOW_PREDICT)
    port = free_port()
    command = serve_command(root, port, "--allow-pickle")
    with running_server(command, port=port, log=server_log, env=LIMITS) as base:
        yield base


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _start_body(base: str, declared: int, sent: bytes, path: str = "/predict") -> socket.socket:
    sock = _connect(base)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response (status, headers, body) and then what follows until EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed with no response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:length]


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed ``sock`` (reading what it sends); fails after ``seconds``."""
    start = time.monotonic()
    sock.settimeout(seconds)
    while sock.recv(65536):
        pass
    return time.monotonic() - start


@pytest.mark.parametrize("declared", [SMALL, LARGE], ids=["lane", "app"])
def test_a_body_that_stops_coming_gets_a_504_within_the_request_timeout(
    server: Server, declared: int
) -> None:
    start = time.monotonic()
    sock = _start_body(server, declared, b'{"inst')
    with sock:
        status, headers, body = _response(sock)
        waited = time.monotonic() - start
        assert status == 504
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        problem = json.loads(body)
        assert problem["type"] == "urn:modelserve:problem:deadline-exceeded"
        assert problem["detail"] == (
            "the request took longer than its deadline of 1 s (MODELSERVE_REQUEST_TIMEOUT)"
        )
        assert REQUEST_TIMEOUT <= waited < REQUEST_TIMEOUT + 2
        _closed_within(sock, 2)  # the rest of the body is not waited for


def test_slow_bodies_hold_their_slots_only_until_the_deadline(server: Server) -> None:
    slow = [_start_body(server, SMALL, b"{") for _ in range(4)]  # the server's whole limit
    try:
        time.sleep(0.3)
        busy = httpx.post(server + "/predict", json={"instances": [ROW]})
        assert busy.status_code == 503
        assert "busy with 4 requests" in busy.json()["detail"]
        time.sleep(REQUEST_TIMEOUT + 0.5)
        after = httpx.post(server + "/predict", json={"instances": [ROW]})
        assert after.status_code == 200, after.text
        assert len(after.json()["predictions"]) == 1
    finally:
        for sock in slow:
            sock.close()


def test_headers_that_trickle_are_cut_off_after_the_header_timeout(server: Server) -> None:
    with _connect(server) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        time.sleep(HEADER_TIMEOUT / 3)
        sock.sendall(b"X-One: 1\r\n")  # still sending, never finishing
        _closed_within(sock, HEADER_TIMEOUT + 3)
        assert time.monotonic() - start >= HEADER_TIMEOUT - 0.2
    with _connect(server) as idle:  # connected, nothing sent
        assert _closed_within(idle, HEADER_TIMEOUT + 3) >= HEADER_TIMEOUT - 0.2
    # A client in good standing is not affected, however long its answer takes.
    with httpx.Client(base_url=server) as client:
        for _ in range(2):  # the second on the same connection
            response = client.post("/v1/models/slow/predict", json={"instances": [ROW]})
            assert response.status_code == 200, response.text
            assert response.elapsed.total_seconds() >= SLOW_PREDICT


def _metric(text: str, route: str, status: int) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("modelserve_http_requests_total{") and (
            f'route="{route}"' in line and f'status="{status}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("declared", [SMALL, LARGE], ids=["lane", "app"])
def test_a_client_that_hangs_up_mid_body_is_counted_499_with_no_traceback(
    server: Server, server_log: Path, declared: int
) -> None:
    log = server_log
    before = httpx.get(server + "/metrics").text
    logged = len(log.read_bytes())
    sock = _start_body(server, declared, b'{"instances": [[0.5')
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 5
    while True:
        time.sleep(1.2)  # metrics are folded in once a second
        after = httpx.get(server + "/metrics").text
        if _metric(after, "/predict", 499) > _metric(before, "/predict", 499):
            break
        assert time.monotonic() < deadline, after
    assert _metric(after, "/predict", 500) == _metric(before, "/predict", 500)
    lines = [json.loads(line) for line in log.read_bytes()[logged:].splitlines()]
    assert all(line["level"] != "ERROR" for line in lines), lines
    assert "Traceback" not in log.read_text()
    access = [line for line in lines if line.get("status") == 499]
    assert len(access) == 1, lines
    assert access[0]["path"] == "/predict"


def test_sigterm_ends_within_the_drain_timeout_however_slow_the_clients(
    template_store: Path, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "MODELSERVE_REQUEST_TIMEOUT": "60",
        "MODELSERVE_HEADER_TIMEOUT": "60",
        "MODELSERVE_DRAIN_TIMEOUT": "2",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            serve_command(template_store, port), stdout=output, stderr=subprocess.STDOUT, env=env
        )
    stop = threading.Event()

    def trickle(declared: int) -> None:
        try:
            with _start_body(base, declared, b"{") as sock:
                while not stop.wait(0.3):
                    sock.sendall(b" ")
        except OSError:
            pass  # the server closed it: what it should do in the end

    try:
        wait_until_up(base + "/health/ready", process, log)
        httpx.get(base + "/metrics")  # the whole app is built
        threads = [
            threading.Thread(target=trickle, args=(size,), daemon=True)
            for size in [SMALL] * 5 + [LARGE] * 5
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=15)
        took = time.monotonic() - start
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert exit_code == 0, log.read_text()[-3000:]
    assert took < 2 + 2.5, f"took {took:.1f} s to stop"
