"""Soak: minutes of mixed good and bad traffic from several clients against a real server.

Runs in `make test-slow`. SOAK_SECONDS (default 120) sets the length. Every good request must
succeed, no request may get a 5xx, and the server's resident memory after the run must be
within 10% of what it was after warm-up.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from modelserve.core.store import ModelStore
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW, free_port, running_server, serve_command

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("SOAK_SECONDS", "120"))
WARMUP = min(20.0, SECONDS / 5)
CLIENTS = 4


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def v2(rows: list[list[float]]) -> dict[str, object]:
    return {
        "inputs": [{"name": "input", "shape": [len(rows), 10], "datatype": "FP64", "data": rows}]
    }


# (name, method, path, body or raw bytes, expected status) — good ones first.
def pick(rng: random.Random) -> tuple[str, str, object, int]:
    rows = [[rng.uniform(-3, 3) for _ in range(10)] for _ in range(rng.randint(1, 50))]
    cases: list[tuple[str, str, object, int]] = [
        ("good", "/predict", {"instances": rows}, 200),
        ("good", "/v1/models/default/versions/1/predict", {"instances": rows}, 200),
        ("good", "/v2/models/default/infer", v2(rows), 200),
        (
            "good",
            "/v1/models/clf/predict",
            {"instances": [r[:4] for r in rows], "return_probabilities": True},
            200,
        ),
        ("bad", "/predict", {"instances": [ROW[:7]]}, 422),
        ("bad", "/predict", b'{"instances": [[NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}', 422),
        ("bad", "/predict", b"\xff\xfe not json", 422),
        ("bad", "/predict", {"instances": [ROW] * 101}, 422),
        ("bad", "/predict", {"instances": [ROW] * 2000}, 413),
        ("bad", "/v1/models/nope/predict", {"instances": [ROW]}, 404),
        (
            "bad",
            "/v2/models/default/infer",
            {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "BYTES", "data": ["a"] * 10}]},
            422,
        ),
        ("bad", "/v2/models/default/infer", b"[" * 5000, 422),
    ]
    return rng.choice(cases)


def test_soak_mixed_traffic(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(name="default", samples=500), store)
    train(TrainConfig(name="clf", estimator="logistic-regression", samples=300, features=4), store)
    port = free_port()
    command = serve_command(
        store.root, port, "--max-rows", "100", "--max-body-bytes", "65536", "--log-level", "warning"
    )
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int, base: str) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=30) as http:
            while not stop.is_set():
                kind, path, body, expected = pick(rng)
                content = body if isinstance(body, bytes) else json.dumps(body).encode()
                response = http.post(
                    path, content=content, headers={"content-type": "application/json"}
                )
                with lock:
                    outcomes[f"{kind} {response.status_code}"] += 1
                    if response.status_code >= 500 or response.status_code != expected:
                        problems.append(f"{path} -> {response.status_code} (expected {expected})")

    with running_server(
        command, port=port, log=tmp_path / "server.log", wait_for="/health/ready"
    ) as base:
        pid = base.pid
        threads = [threading.Thread(target=client, args=(seed, base)) for seed in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(WARMUP)
        baseline = rss_kib(pid)
        peak = baseline
        deadline = time.monotonic() + SECONDS - WARMUP
        while time.monotonic() < deadline:
            time.sleep(1)
            peak = max(peak, rss_kib(pid))
        stop.set()
        for thread in threads:
            thread.join()
        final = rss_kib(pid)
    total = sum(outcomes.values())
    print(
        f"soak: {total} requests in {SECONDS:.0f} s, {dict(outcomes)}; RSS KiB baseline={baseline} "
        f"peak={peak} final={final}"
    )
    assert problems == [], problems[:10]
    assert outcomes["good 200"] > 0
    assert final <= baseline * 1.10, (baseline, final)
