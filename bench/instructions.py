"""Instructions per request: the ceiling and modelserve counted under callgrind, side by side.

Timings on a shared machine swing 2-4 x within minutes; an instruction count does not. Each
server runs under valgrind's callgrind; a client sends warm-up requests over one keep-alive
connection, the counters are zeroed, BENCH_REQUESTS more one-row requests are sent and the
counters dumped (callgrind_control). The figure is the server's instructions per request
(event loop, HTTP parsing, the app, its logging), and each ratio is ceiling / modelserve, the
throughput ratio the counts predict for one core. modelserve is counted once scikit-learn's
background confirmation has finished (it is logged), so only requests are in the window.

"/v2 other" is a one-row request in the key order MLServer's and KServe's clients write;
"forest" a one-row request to a random forest of 100 trees, answered from its compiled form.

    make bench-instructions                      # 3,000 requests per server and body
    BENCH_REQUESTS=500 make bench-instructions   # a quick look
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from modelserve.core.store import ModelStore  # noqa: E402
from modelserve.training.train import TrainConfig, train  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "3000"))
WARM_UP = 300
PYTHON = sys.executable
START_TIMEOUT_S = 900  # scikit-learn's import alone takes minutes under valgrind


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post_many(port: int, path: str, body: bytes, count: int) -> None:
    """``count`` POSTs over one keep-alive connection, one at a time; each must answer 200."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:
        buffered = b""
        for _ in range(count):
            connection.sendall(request)
            while True:
                end = buffered.find(b"\r\n\r\n")
                if end >= 0:
                    head = buffered[:end].lower()
                    if not head.startswith(b"http/1.1 200"):
                        raise SystemExit(f"{path}: {head.decode(errors='replace')}")
                    length = re.search(rb"content-length: *(\d+)", head)
                    if length is not None:
                        stop = end + 4 + int(length[1])
                    else:  # chunked (the ceiling sets no length): up to the last chunk
                        last = buffered.find(b"\r\n0\r\n\r\n", end)
                        stop = -1 if last < 0 else last + 7
                    if 0 <= stop <= len(buffered):
                        buffered = buffered[stop:]
                        break
                chunk = connection.recv(65536)
                if not chunk:
                    raise SystemExit(f"{path}: the server closed the connection")
                buffered += chunk


def answers(port: int, path: str, body: bytes) -> bool:
    try:
        post_many(port, path, body, 1)
    except (OSError, SystemExit):
        return False
    return True


def count(name: str, command: list[str], path: str, body: bytes, work: Path,
          ready_line: str | None) -> int:
    """Instructions per request of ``command`` serving ``path``."""
    port = free_port()
    out = work / f"callgrind.{name}.{port}"
    log_path = work / f"{name}.{port}.log"
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT / "src")}
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PYTHON,
            *[part.replace("{port}", str(port)) for part in command]]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(port, path, body):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        while ready_line is not None and ready_line not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} never logged {ready_line!r}")
            time.sleep(1)
        post_many(port, path, body, WARM_UP)
        time.sleep(2)
        subprocess.run(["callgrind_control", "-z", str(process.pid)], check=True,
                       capture_output=True)
        post_many(port, path, body, REQUESTS)
        subprocess.run(["callgrind_control", "-d", str(process.pid)], check=True,
                       capture_output=True)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=300)
    dump = next(p for p in sorted(work.glob(f"{out.name}.*")) if not p.name.endswith(".0"))
    total = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
    if total is None:
        raise SystemExit(f"no total in {dump}")
    return int(total[1]) // REQUESTS


def main() -> None:
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (make bench-instructions installs it)")
    work = Path(tempfile.mkdtemp(prefix="modelserve-instructions-"))
    train(TrainConfig(), ModelStore(work / "models"))
    train(TrainConfig(name="forest", estimator="random-forest"), ModelStore(work / "forest"))
    row = np.random.default_rng(0).normal(size=(1, 10))
    native = orjson.dumps({"instances": row.tolist()})
    v2 = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64",
                                   "data": row.reshape(-1).tolist()}]})
    # The key order MLServer's and KServe's clients write, with a content type: not the form
    # tritonclient writes, so it takes the general road's small decoder.
    v2_other = orjson.dumps({"id": "r1", "inputs": [{"name": "input", "datatype": "FP64",
                                                      "shape": [1, 10],
                                                      "data": row.reshape(-1).tolist()}],
                             "parameters": {"content_type": "np"}})
    ceiling = ["-m", "uvicorn", "--port", "{port}", "--log-level", "warning", "--no-access-log",
               "--loop", "uvloop", "--http", "httptools", "bench.ceiling:app"]
    modelserve = ["-m", "modelserve", "serve", "--store", str(work / "models"), "--port", "{port}"]
    forest = [*modelserve[:3], "--store", str(work / "forest"), *modelserve[5:]]
    confirmed = "confirmed default v1"
    runs = [
        ("ceiling", ceiling, "/", native, None),
        ("modelserve native", modelserve, "/predict", native, confirmed),
        ("modelserve /v2 JSON", modelserve, "/v2/models/default/infer", v2, confirmed),
        ("modelserve /v2 other", modelserve, "/v2/models/default/infer", v2_other, confirmed),
        # A random forest (100 trees), answered from its compiled form.
        ("modelserve forest", forest, "/v1/models/forest/predict", native, "confirmed forest v1"),
    ]
    counts: dict[str, int] = {}
    print(f"one-row requests, {REQUESTS} counted per server after {WARM_UP} warm-up")  # noqa: T201
    for name, command, path, body, ready_line in runs:
        counts[name] = count(name.replace(" ", "-").replace("/", ""), command, path, body, work,
                             ready_line)
        ratio = counts["ceiling"] / counts[name]
        print(f"{name:22} {path:28} {counts[name]:>9,} instructions/request  "  # noqa: T201
              f"ceiling/this x{ratio:.2f}")


if __name__ == "__main__":
    main()
