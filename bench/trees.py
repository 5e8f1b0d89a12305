"""Benchmark: tree ensembles and mixed-type pipelines, compiled forms on and off, and MLServer.

Four models, each in its own store: a random forest (`--estimator random-forest`, 100 trees
on the default 10 synthetic features), a hist gradient boosting regressor on the same data, the
penguins pipeline (`--estimator hist-gradient-boosting-classifier --csv
examples/penguins.csv`: ordinal codes for the text columns, then HistGradientBoosting), and the
same data through a logistic regression (`--estimator logistic-regression`: imputer, scaler and
one-hot encoder, then LogisticRegression). Each is
served by modelserve as shipped (answered from its verified compiled form), by modelserve with
`MODELSERVE_COMPILED_FORMS=false` (scikit-learn, micro-batching on), and, with MLSERVER_BIN, by
MLServer 1.7.1 (sklearn runtime, adaptive batching on: max_batch_size 32, max_batch_time 2 ms,
parallel_workers 0) on the same fitted estimator.

As in bench/run.py: each server alone on core 1, wrk on core 0; every timed run follows a
ceiling run (bare ASGI + orjson) on the same workload and each ratio is the median of the paired
ratios; every server's answers are checked against the model's own predict first. modelserve is
timed once it has checked its forms against the estimators and timed both (the log says so).
Start-to-ready is the median of BENCH_START_RUNS starts. Prints the tables and writes them into
bench/RESULTS.md between the trees markers.

    make bench-trees                                # 3 paired x 10 s per workload
    BENCH_DURATION=3 BENCH_RUNS=1 make bench-trees  # a quick look
    MLSERVER_BIN=.venv-mlserver/bin/mlserver make bench-trees   # MLServer beside it
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.tabular import _rows, _v2_columns, write_section  # noqa: E402
from bench.run import (  # noqa: E402
    DURATION,
    LUA,
    PYTHON,
    RUNS,
    START_RUNS,
    Result,
    Server,
    free_port,
    median,
    start,
    stop,
    wrk,
)
from modelserve.core.registry import ModelRegistry  # noqa: E402
from modelserve.core.settings import Settings  # noqa: E402
from modelserve.core.store import ModelStore  # noqa: E402
from modelserve.training.train import TrainConfig, train  # noqa: E402

WORKLOADS = {"W0": (1, 1), "W1": (1, 32), "W2": (100, 8), "W3": (10_000, 2)}
"""Rows per request and connections. W0: one client at a time (latency)."""
MODEL_WORKLOADS = {"forest": ("W0", "W1", "W2", "W3"), "hgb": ("W0", "W1", "W2"),
                   "penguins": ("W0", "W1", "W2"), "penguins-lr": ("W0", "W1", "W2")}  # fmt: skip
TABLES = ("penguins", "penguins-lr")
"""The models that take the penguins table."""
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- trees: begin -->", "<!-- trees: end -->"
SETTLED = b"against its estimator"


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (make bench-trees installs it with apt-get)")
    work = Path(tempfile.mkdtemp(prefix="modelserve-bench-trees-"))
    stores = {name: ModelStore(work / name) for name in MODEL_WORKLOADS}
    train(TrainConfig(name="forest", estimator="random-forest"), stores["forest"])
    train(TrainConfig(name="hgb", estimator="hist-gradient-boosting"), stores["hgb"])
    penguins_csv = ROOT / "examples" / "penguins.csv"
    for name, estimator in zip(
        TABLES, ("hist-gradient-boosting-classifier", "logistic-regression"), strict=True
    ):
        train(
            TrainConfig(name=name, estimator=estimator, csv=penguins_csv, target="species"),
            stores[name],
        )
    # scikit-learn's own answers, through the same checks the server makes.
    own = {
        name: ModelRegistry(Settings(store=store.root, compiled_forms=False)).load_predictor(name)
        for name, store in stores.items()
    }
    rng = np.random.default_rng(0)
    frame = pd.read_csv(penguins_csv).drop(columns="species")
    bodies: dict[tuple[str, str, str], bytes] = {}  # (model, workload, native|v2)
    expected: dict[tuple[str, str], list[Any]] = {}
    for workload, (rows, _) in WORKLOADS.items():
        X = rng.normal(size=(rows, 10))
        for name in ("forest", "hgb"):
            bodies[(name, workload, "native")] = orjson.dumps({"instances": X.tolist()})
            bodies[(name, workload, "v2")] = orjson.dumps(
                {"inputs": [{"name": "input-0", "shape": [rows, 10], "datatype": "FP64",
                             "data": X.reshape(-1).tolist()}]}
            )  # fmt: skip
            expected[(name, workload)] = own[name].predict(X).predictions.tolist()
        records = _rows(frame, rows, rng)
        for name in TABLES:
            bodies[(name, workload, "native")] = orjson.dumps({"instances": records})
            bodies[(name, workload, "v2")] = _v2_columns(records)
            expected[(name, workload)] = own[name].predict(records).predictions.tolist()
    scripts: dict[tuple[str, str, str], Path] = {}
    for key, body in bodies.items():
        body_path = work / ("-".join(key) + ".body")
        body_path.write_bytes(body)
        script = work / ("-".join(key) + ".lua")
        script.write_text(LUA.format(body=body_path, content_type="application/json", extra=""))
        scripts[key] = script

    uvicorn = [PYTHON, "-m", "uvicorn", "--port", "{port}", "--log-level", "warning",
               "--no-access-log", "--loop", "uvloop", "--http", "httptools"]  # fmt: skip
    ceiling = Server("ceiling (bare ASGI + orjson)", [*uvicorn, "bench.ceiling:app"], "/")
    ceiling_port = free_port()
    ceiling_process = start(ceiling, ceiling_port, work / "ceiling.log")
    ceiling_url = f"http://127.0.0.1:{ceiling_port}/"
    table: list[tuple[str, str, str, Result, float]] = []
    starts: dict[str, float] = {}
    mlserver = os.environ.get("MLSERVER_BIN")
    try:
        for name, store in stores.items():
            serve = [str(Path(PYTHON).parent / "modelserve"), "serve", "--port", "{port}",
                     "--no-train-if-empty", "--store", str(store.root)]  # fmt: skip
            servers = [
                (Server(f"modelserve, {name}", serve, "/health/ready", model=name), "native"),
                (Server(f"modelserve, {name}, compiled forms off", serve, "/health/ready",
                        {"MODELSERVE_COMPILED_FORMS": "false"}, model=name), "native"),
            ]  # fmt: skip
            if mlserver and name in ("forest", "penguins"):
                servers.append((_mlserver(mlserver, name, own[name].estimator, work), "v2"))
            for server, kind in servers:
                table += _time(server, kind, work, bodies, expected, scripts, ceiling_url)
                if server.name == "modelserve, forest":
                    starts[server.name] = server.start_to_ready_s
    finally:
        stop(ceiling_process)
    _write(table, starts)


def _time(
    server: Server,
    kind: str,
    work: Path,
    bodies: dict[tuple[str, str, str], bytes],
    expected: dict[tuple[str, str], list[Any]],
    scripts: dict[tuple[str, str, str], Path],
    ceiling_url: str,
) -> list[tuple[str, str, str, Result, float]]:
    """Start ``server``, check its answers against the model's, time each workload paired."""
    model = server.model
    path = f"/v1/models/{model}/predict" if kind == "native" else f"/v2/models/{model}/infer"
    port = free_port()
    log = work / f"{server.name.replace(' ', '_').replace(',', '')}.log"
    modelserve = server.name.startswith("modelserve")
    compiled = modelserve and "MODELSERVE_COMPILED_FORMS" not in server.env
    for _ in range(START_RUNS - 1 if modelserve else 0):
        stop(start(server, port, log))
    process = start(server, port, log)
    rows: list[tuple[str, str, str, Result, float]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while compiled and SETTLED not in log.read_bytes():
            if time.monotonic() > deadline:
                raise SystemExit(f"{server.name} never settled:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        time.sleep(1.0)
        engine = ""
        if modelserve:
            detail = httpx.get(f"{base}/v1/models/{model}").json()
            engine = detail["versions"][0]["engine"]["name"]
        for workload in MODEL_WORKLOADS[model]:
            answer = httpx.post(base + path, content=bodies[(model, workload, kind)], timeout=60)
            answer.raise_for_status()
            document = answer.json()
            got = (
                document["predictions"]
                if "predictions" in document
                else np.ravel(document["outputs"][0]["data"]).tolist()
            )
            if got != expected[(model, workload)]:
                raise SystemExit(f"{server.name}: {workload} answers differ from the model's own")
        for workload in MODEL_WORKLOADS[model]:
            connections = WORKLOADS[workload][1]
            runs, paired = [], []
            for _ in range(RUNS):
                ceiling = wrk(ceiling_url, scripts[("forest", workload, "native")], connections)
                run = wrk(base + path, scripts[(model, workload, kind)], connections)
                runs.append(run)
                paired.append(run.rps / ceiling.rps)
            result = median(runs)
            ratio = statistics.median(paired)
            rows.append((server.name, engine, workload, result, ratio))
            print(f"{server.name:48} {engine:13} {workload}: {result.rps:9.1f} req/s  "  # noqa: T201
                  f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  "
                  f"errors {result.errors}  x{ratio:.3f} of the paired ceiling runs", flush=True)
    finally:
        stop(process)
    return rows


def _mlserver(binary: str, name: str, estimator: object, work: Path) -> Server:
    import joblib  # noqa: PLC0415 - scikit-learn's dependency; only for this row

    repository = work / f"mlserver-{name}"
    (repository / name).mkdir(parents=True)
    joblib.dump(estimator, repository / name / "model.joblib")
    settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
        "max_batch_size": 32,
        "max_batch_time": 0.002,
    }
    (repository / name / "model-settings.json").write_bytes(orjson.dumps(settings))
    env = {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_GRPC_PORT": str(free_port()),
           "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_PARALLEL_WORKERS": "0",
           "MLSERVER_DEBUG": "false"}  # fmt: skip
    command = ["env", "MLSERVER_HTTP_PORT={port}", binary, "start", str(repository)]
    return Server(f"MLServer 1.7.1, {name}, adaptive batching", command, "/v2/health/ready", env,
                  model=name)  # fmt: skip


def _write(table: list[tuple[str, str, str, Result, float]], starts: dict[str, float]) -> None:
    lines = [
        BEGIN,
        "## Tree ensembles and pipelines, compiled (bench/trees.py)",
        "",
        f"Written by `make bench-trees` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        "a random forest (100 trees) and a hist gradient boosting regressor on 10 synthetic "
        "features, the penguins pipeline (ordinal codes, HistGradientBoostingClassifier; "
        "rows by name with text, numbers and nulls) and penguins-lr (imputer, scaler, one-hot, "
        "LogisticRegression) on the same rows. `engine` is what answered, as "
        f"`GET /v1/models/{{name}}` says. Median of {RUNS} run(s) of {DURATION} s; ratios are "
        "medians of runs paired with a ceiling run on the same workload.",
        "",
        "| server | engine | workload | req/s | rows/s | ratio to ceiling | p50 ms | p99 ms | "
        "errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, engine, workload, result, ratio in table:
        rows, connections = WORKLOADS[workload]
        lines.append(
            f"| {name} | {engine or '-'} | {workload} ({rows:,} row{'s' if rows > 1 else ''}, "
            f"{connections} conn) | {result.rps:,.0f} | {result.rps * rows:,.0f} | {ratio:.3f} | "
            f"{result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.errors} |"
        )
    for name, seconds in starts.items():
        lines += ["", f"Start to ready, {name}: {seconds:.2f} s (median of {START_RUNS} starts)."]
    lines.append(END)
    write_section(RESULTS, BEGIN, END, "\n".join(lines))


if __name__ == "__main__":
    main()
