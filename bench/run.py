"""Benchmark: the HTTP ceiling, a tutorial FastAPI app and modelserve, side by side.

Each server is timed alone on core 1 (taskset), beside an idle ceiling server; wrk runs pinned
to core 0. Every server's answers are checked against the model before it is timed. Each figure
is the median of BENCH_RUNS runs of BENCH_DURATION seconds; each run follows a ceiling run on
the same workload, and the ratio to the ceiling is the median of those paired ratios (the shared
machine's speed drifts by tens of percent within minutes). Writes bench/RESULTS.md.

    make bench                                  # 3 paired x 10 s per workload
    BENCH_DURATION=3 BENCH_RUNS=1 make bench    # a quick look
    BENCH_ONLY=ceiling,modelserve make bench    # servers whose name starts so; prints only
"""

from __future__ import annotations

import compileall
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import skops.io as sio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from modelserve.core.store import ModelStore  # noqa: E402
from modelserve.training.train import TrainConfig, train  # noqa: E402

DURATION = int(os.environ.get("BENCH_DURATION", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
EARLY_S = 3
# Start-to-ready is the median of this many starts (one start says little on a shared machine).
START_RUNS = int(os.environ.get("BENCH_START_RUNS", "5"))
# A comma-separated list of server-name prefixes: a partial run prints, writes no RESULTS.md.
ONLY = tuple(p for p in os.environ.get("BENCH_ONLY", "").split(",") if p)
SERVER_CPU, CLIENT_CPU = "1", "0"
PYTHON = sys.executable
WORKLOADS = {"W1": (1, 32), "W2": (100, 8), "W3": (10_000, 2)}  # rows per request, connections
LUA = """
local f = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "{content_type}"
{extra}
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Server:
    name: str
    command: list[str]
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    start_to_ready_s: float = 0.0  # median of start_samples
    start_samples: list[float] = field(default_factory=list)
    idle_rss_mib: float = 0.0
    settle_s: float = 0.0  # ready -> background work done (modelserve: estimator confirmed)
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    model: str = "default"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    # Set on this workplace for old OpenBLAS builds; they slow a current NumPy. Unset for all
    # servers alike.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(server: Server, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = ["taskset", "-c", SERVER_CPU, *[part.replace("{port}", str(port)) for part in server.command]]
    env = {**bench_env(), **server.env}
    url = f"http://127.0.0.1:{port}{server.ready_path}"
    # One client for the polls: a new one per poll would spend milliseconds on its TLS context.
    with httpx.Client(timeout=0.5) as client:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"),
                                   stderr=subprocess.STDOUT)
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{server.name} exited:\n{log.read_text()}")
            try:
                if client.get(url).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.005)
        server.start_samples.append(time.perf_counter() - started)
    server.start_to_ready_s = statistics.median(server.start_samples)
    return process


def start_for_timing(server: Server, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start ``server`` START_RUNS times (all but the last stopped at once); return the last."""
    for _ in range(START_RUNS - 1):
        stop(start(server, port, log))
    return start(server, port, log)


# modelserve answers the default (linear) model before scikit-learn is imported, then loads the
# estimator in a background thread and logs this: the server is settled from then on.
CONFIRMED = b"against its estimator"


def settle(server: Server, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for background start-up work to end, then take the idle RSS; time no load before."""
    ready = time.perf_counter()
    if server.name.startswith("modelserve") and server.model == "default":
        deadline = ready + 60
        while CONFIRMED not in log.read_bytes():
            if time.perf_counter() > deadline or process.poll() is not None:
                raise SystemExit(f"{server.name} never confirmed its estimator:\n{log.read_text()}")
            time.sleep(0.01)
    server.settle_s = time.perf_counter() - ready
    time.sleep(1.0)
    server.idle_rss_mib = rss_mib(process.pid)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wrk(url: str, script: Path, connections: int, duration: int = DURATION) -> Result:
    output = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
         "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?timeout (\d+)"):
        found = re.search(pattern, output)
        errors += int(found.group(1)) if found else 0
    return Result(rps, latency("50.000") if "50.000%" in output else latency("50"), latency("99"), errors)


def median(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (make bench installs it with apt-get)")
    # Start-to-ready is timed as an installed package starts: with its bytecode already compiled
    # (pip compiles wheels on install; a source tree compiles on its first run, and not at all
    # under PYTHONDONTWRITEBYTECODE, which would add ~0.3 s to every start).
    compileall.compile_dir(ROOT / "src", quiet=1)
    compileall.compile_dir(ROOT / "bench", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="modelserve-bench-"))
    # The default model alone: start-to-ready is measured "with the default model".
    store = ModelStore(work / "models")
    train(TrainConfig(), store)
    # A model whose predict costs per call (~ms), where micro-batching matters: its own store.
    forest_store = ModelStore(work / "forest-models")
    train(TrainConfig(name="forest", estimator="random-forest"), forest_store)
    model_path = store.version_dir("default", 1) / "model.skops"
    model = sio.load(model_path)
    forest_path = forest_store.version_dir("forest", 1) / "model.skops"
    forest = sio.load(forest_path, trusted=sio.get_untrusted_types(file=forest_path))
    rng = np.random.default_rng(0)

    scripts: dict[tuple[str, str], Path] = {}
    expected: dict[str, np.ndarray] = {}
    expected_forest: dict[str, np.ndarray] = {}
    for workload, (rows, _) in WORKLOADS.items():
        X = rng.normal(size=(rows, 10))
        expected[workload] = model.predict(X)
        expected_forest[workload] = forest.predict(X)
        bodies = {
            "native": (orjson.dumps({"instances": X.tolist()}), "application/json", ""),
            "v2-json": (orjson.dumps({"inputs": [{"name": "input", "shape": [rows, 10], "datatype": "FP64",
                                                  "data": X.reshape(-1).tolist()}]}), "application/json", ""),
        }
        header = orjson.dumps({"inputs": [{"name": "input", "shape": [rows, 10], "datatype": "FP64",
                                           "parameters": {"binary_data_size": X.nbytes}}],
                               "parameters": {"binary_data_output": True}})
        bodies["v2-binary"] = (header + X.astype("<f8").tobytes(), "application/octet-stream",
                               f'wrk.headers["Inference-Header-Content-Length"] = "{len(header)}"')
        for kind, (body, content_type, extra) in bodies.items():
            body_path = work / f"{workload}-{kind}.body"
            body_path.write_bytes(body)
            script = work / f"{workload}-{kind}.lua"
            script.write_text(LUA.format(body=body_path, content_type=content_type, extra=extra))
            scripts[(workload, kind)] = script

    modelserve = [str(Path(PYTHON).parent / "modelserve"), "serve", "--store", str(store.root),
                  "--port", "{port}", "--no-train-if-empty"]
    modelserve_forest = [*modelserve[:3], str(forest_store.root), *modelserve[4:]]
    uvicorn = [PYTHON, "-m", "uvicorn", "--port", "{port}", "--log-level", "warning", "--no-access-log",
               "--loop", "uvloop", "--http", "httptools"]
    servers = [
        (Server("ceiling (bare ASGI + orjson)", [*uvicorn, "bench.ceiling:app"], "/"), [("native", "/")]),
        (Server("FastAPI + Pydantic tutorial", [*uvicorn, "bench.tutorial_app:app"], "/health",
                {"MODEL_PATH": str(model_path)}), [("native", "/predict")]),
        # As shipped: the access log on (one JSON line per request, here to a file) and metrics.
        (Server("modelserve", modelserve, "/health/ready"),
         [("native", "/predict"), ("v2-json", "/v2/models/default/infer"),
          ("v2-binary", "/v2/models/default/infer")]),
        # What the access log costs, on the workload where it weighs most.
        (Server("modelserve, access log off", modelserve, "/health/ready",
                {"MODELSERVE_ACCESS_LOG": "false"}, workloads=("W1",)),
         [("native", "/predict"), ("v2-json", "/v2/models/default/infer")]),
        # Micro-batching, on a random forest (100 trees): one predict call per request, or merged.
        (Server("modelserve, random forest, batching on", modelserve_forest, "/health/ready",
                workloads=("W1", "W2"), model="forest"),
         [("native", "/v1/models/forest/predict")]),
        (Server("modelserve, random forest, batching off", modelserve_forest, "/health/ready",
                {"MODELSERVE_MICRO_BATCHING": "false"}, workloads=("W1", "W2"), model="forest"),
         [("native", "/v1/models/forest/predict")]),
    ]
    mlserver = mlserver_server(work, model)
    if mlserver is not None:
        servers.insert(2, mlserver)
    if ONLY:
        servers = [(s, r) for s, r in servers if s.name == "ceiling (bare ASGI + orjson)"
                   or any(s.name == p or s.name.startswith((p + ",", p + " ")) for p in ONLY)]
    table: dict[tuple[str, str, str], Result] = {}
    ratios: dict[tuple[str, str, str], float] = {}
    early: dict[str, Result] = {}
    # The ceiling runs for the whole benchmark (idle while another server is timed), and every
    # timed run of a server is paired with a ceiling run right before it: the shared machine's
    # speed drifts by tens of percent over minutes, so each ratio is the median of paired ratios.
    ceiling_server = servers[0][0]
    ceiling_port = free_port()
    ceiling_process = start_for_timing(ceiling_server, ceiling_port, work / "ceiling.log")
    settle(ceiling_server, ceiling_process, work / "ceiling.log")
    ceiling_url = f"http://127.0.0.1:{ceiling_port}/"
    ceiling_runs: dict[str, list[Result]] = {w: [] for w in WORKLOADS}
    for server, routes in servers[1:]:
        port = free_port()
        log = work / f"{server.name[:8]}.log"
        process = start_for_timing(server, port, log)
        try:
            base = f"http://127.0.0.1:{port}"
            if server.name == "modelserve":
                # What a client sees in the first seconds, while scikit-learn loads behind it.
                early[server.name] = wrk(base + "/predict", scripts[("W1", "native")], 32, EARLY_S)
            settle(server, process, log)
            for kind, path in routes:
                check(base + path, kind, work, expected_forest if server.model == "forest" else expected)
            for kind, path in routes:
                for workload, (rows, connections) in WORKLOADS.items():
                    if (kind == "v2-binary" and workload != "W3") or workload not in server.workloads:
                        continue
                    runs, paired = [], []
                    for _ in range(RUNS):
                        ceiling = wrk(ceiling_url, scripts[(workload, "native")], connections)
                        run = wrk(base + path, scripts[(workload, kind)], connections)
                        ceiling_runs[workload].append(ceiling)
                        runs.append(run)
                        paired.append(run.rps / ceiling.rps)
                    table[(server.name, kind, workload)] = result = median(runs)
                    ratios[(server.name, kind, workload)] = statistics.median(paired)
                    print(f"{server.name:32} {kind:9} {workload}: {result.rps:10.1f} req/s  "  # noqa: T201
                          f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  errors {result.errors}  "
                          f"x{ratios[(server.name, kind, workload)]:.2f} of the paired ceiling runs",
                          flush=True)
        finally:
            stop(process)
    stop(ceiling_process)
    for workload, runs in ceiling_runs.items():
        if runs:
            table[(ceiling_server.name, "native", workload)] = median(runs)
            ratios[(ceiling_server.name, "native", workload)] = 1.0
    for server, _ in servers:
        print(f"{server.name:32} start to ready {server.start_to_ready_s:.2f} s "  # noqa: T201
              f"({min(server.start_samples):.2f}-{max(server.start_samples):.2f}, {START_RUNS} starts)  "
              f"settled {server.settle_s:.2f} s later  idle RSS {server.idle_rss_mib:.0f} MiB")
    for name, result in early.items():
        print(f"{name:32} native W1 in the first {EARLY_S} s after ready: {result.rps:.1f} req/s  "  # noqa: T201
              f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  errors {result.errors}")
    if ONLY:
        return
    batch = batch_scoring(store, work)
    write_results(servers, table, ratios, batch, early)


def mlserver_server(work: Path, model: object) -> tuple[Server, list[tuple[str, str]]] | None:
    """MLServer with its scikit-learn runtime, when installed (MLSERVER_BIN or `mlserver` on PATH).

    It runs from its own environment (its pins clash with modelserve's), serves the same model as
    a joblib file, predicts in the server process (parallel_workers=0: one pinned core, like the
    others) and speaks V2 JSON only over REST, so it is timed on the v2-json bodies.
    """
    binary = os.environ.get("MLSERVER_BIN") or shutil.which("mlserver")
    if not binary:
        return None
    import joblib  # noqa: PLC0415 - a scikit-learn dependency; only needed for this row

    repository = work / "mlserver"
    (repository / "default").mkdir(parents=True)
    joblib.dump(model, repository / "default" / "model.joblib")
    (repository / "default" / "model-settings.json").write_text(orjson.dumps({
        "name": "default", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }).decode())
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    env = {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_GRPC_PORT": str(free_port()),
           "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_PARALLEL_WORKERS": "0",
           "MLSERVER_DEBUG": "false"}
    command = ["env", "MLSERVER_HTTP_PORT={port}", binary, "start", str(repository)]
    name = f"MLServer {version[-1] if version else ''} (sklearn runtime)".replace("  ", " ")
    return (Server(name, command, "/v2/health/ready", env),
            [("v2-json", "/v2/models/default/infer")])


def check(url: str, kind: str, work: Path, expected: dict[str, np.ndarray]) -> None:
    """The server's answer for W2 must equal the model's own predict to 1e-9."""
    body = (work / f"W2-{kind}.body").read_bytes()
    headers = {"content-type": "application/json"}
    if kind == "v2-binary":
        header_length = len(body) - 100 * 10 * 8
        headers["Inference-Header-Content-Length"] = str(header_length)
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    response.raise_for_status()
    if kind == "v2-binary":
        length = int(response.headers["inference-header-content-length"])
        values = np.frombuffer(response.content[length:], dtype="<f8")
    else:
        document = response.json()
        values = document["predictions"] if kind == "native" else document["outputs"][0]["data"]
    if not np.allclose(values, expected["W2"], rtol=0, atol=1e-9):
        raise SystemExit(f"{url} ({kind}) answers differ from the model's own predict")


BATCH_ROWS = 1_000_000
_SCORED = re.compile(r"([\d,]+) rows scored .* in ([\d.]+) s \(([\d,]+) rows/s\)")


def batch_scoring(store: ModelStore, work: Path) -> list[tuple[str, float, float, float]]:
    """`modelserve predict --input` on a 1M-row file, CSV and Parquet, pinned like the servers.

    Returns (format, rows/s while scoring, seconds scoring, seconds of the whole command).
    """
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.csv as pacsv  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    X = np.random.default_rng(1).normal(size=(BATCH_ROWS, 10))
    table = pa.table({f"x{i}": X[:, i] for i in range(10)})
    pacsv.write_csv(table, work / "batch.csv")
    pq.write_table(table, work / "batch.parquet")
    results = []
    for kind in ("csv", "parquet"):
        runs = []
        for _ in range(RUNS):
            started = time.perf_counter()
            completed = subprocess.run(
                ["taskset", "-c", SERVER_CPU, str(Path(PYTHON).parent / "modelserve"), "predict",
                 "--store", str(store.root), "-i", str(work / f"batch.{kind}"),
                 "-o", str(work / "preds.csv"), "--no-progress"],
                capture_output=True, text=True, check=True, env=bench_env(),
            )
            wall = time.perf_counter() - started
            match = _SCORED.search(completed.stderr)
            if match is None or int(match[1].replace(",", "")) != BATCH_ROWS:
                raise SystemExit(f"unexpected output from modelserve predict:\n{completed.stderr}")
            runs.append((float(match[3].replace(",", "")), float(match[2]), wall))
        rate, seconds, wall = sorted(runs)[len(runs) // 2]
        print(f"batch scoring {kind}: {rate:,.0f} rows/s ({seconds:.2f} s scoring, {wall:.2f} s in all)",  # noqa: T201
              flush=True)
        results.append((kind, rate, seconds, wall))
    return results


def write_results(servers: list[tuple[Server, list[tuple[str, str]]]], table: dict[tuple[str, str, str], Result],
                  ratios: dict[tuple[str, str, str], float], batch: list[tuple[str, float, float, float]],
                  early: dict[str, Result]) -> None:
    ceiling_name = servers[0][0].name
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (bench/run.py) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"Each server alone, pinned to core {SERVER_CPU}; wrk (1 thread) pinned to core {CLIENT_CPU}. "
        f"Median of {RUNS} run(s) of {DURATION} s. Model: LinearRegression on make_regression(1000 x 10). "
        "Ratios are medians of paired runs: the ceiling stays up (idle) through the benchmark and "
        "every timed run of a server follows a ceiling run on the same workload; the ceiling's row "
        "is the median of all its paired runs.",
        "",
        "| server | API | workload | req/s | rows/s | ratio to ceiling | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, kind, workload), result in table.items():
        rows = WORKLOADS[workload][0]
        ratio = ratios[(name, kind, workload)]
        lines.append(
            f"| {name} | {kind} | {workload} ({rows} row{'s' if rows > 1 else ''}, {WORKLOADS[workload][1]} conn) "
            f"| {result.rps:,.0f} | {result.rps * rows:,.0f} | {ratio:.2f} | {result.p50_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.errors} |"
        )
    lines += ["", f"| server | start to ready (s), median of {START_RUNS} | (range) | ready to settled (s) "
              "| idle RSS (MiB) |", "|---|---|---|---|---|"]
    for server, _ in servers:
        lines.append(f"| {server.name} | {server.start_to_ready_s:.2f} | {min(server.start_samples):.2f}–"
                     f"{max(server.start_samples):.2f} | {server.settle_s:.2f} | {server.idle_rss_mib:.0f} |")
    lines += ["", "'Settled': modelserve answers the default (linear) model from its verified linear form "
              "as soon as it is ready, then imports scikit-learn and loads the estimator in a background "
              "thread; the other figures are taken after that. Idle RSS is taken 1 s after settling."]
    for name, result in early.items():
        ratio = result.rps / table[(ceiling_name, "native", "W1")].rps
        lines += ["", f"{name}, W1 native in the first {EARLY_S} s after ready (one run, while scikit-learn "
                  f"loads in the background): {result.rps:,.0f} req/s ({ratio:.2f} x ceiling), "
                  f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, {result.errors} errors."]
    lines += [
        "",
        f"Batch scoring: `modelserve predict --input FILE --output preds.csv` on {BATCH_ROWS:,} rows x 10 "
        f"features (default chunk of 65,536 rows), pinned to core {SERVER_CPU}, median of {RUNS} run(s). "
        "'scoring' is reading, validating, predicting and writing; 'in all' adds start-up "
        "(imports, verifying the model, counting rows for the progress bar).",
        "",
        "| input | rows/s (scoring) | scoring (s) | in all (s) |",
        "|---|---|---|---|",
    ]
    for kind, rate, seconds, wall in batch:
        lines.append(f"| {kind} | {rate:,.0f} | {seconds:.2f} | {wall:.2f} |")
    lines.append("")
    notes = ROOT / "bench" / "profile-notes.md"
    if notes.exists():
        lines.append(notes.read_text())
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
