"""Benchmark: a mixed-type pipeline beside the linear model, micro-batching on and off.

The penguins pipeline (`modelserve train --estimator hist-gradient-boosting-classifier --csv
examples/penguins.csv`: a ColumnTransformer with ordinal codes for the text columns, then
HistGradientBoosting) is served natively with rows of text, numbers and nulls; the linear
`default` model beside it on the same workloads. As in bench/run.py: each server alone on core 1,
wrk on core 0, every timed run follows a ceiling run on the same workload, ratios are medians of
the paired ratios, and every server's answers are checked against the model's own first.
Prints the table and writes it into bench/RESULTS.md between the tabular markers.

    make bench-tabular                               # 3 paired x 10 s per workload
    BENCH_DURATION=3 BENCH_RUNS=1 make bench-tabular  # a quick look
    MLSERVER_BIN=.venv-mlserver/bin/mlserver make bench-tabular   # MLServer beside it

With MLSERVER_BIN, MLServer (sklearn runtime, in its own venv: `make bench-mlserver` makes it)
serves the same fitted pipeline from a joblib file, with its adaptive batching on
(max_batch_size 32, max_batch_time 2 ms) and off, on the request MLServer's and KServe's clients
send for a DataFrame: one /v2 input per column, `"content_type": "pd"`, asking for `predict`
(what MLServer answers when no output is named; modelserve would add `predict_proba`, a second
scikit-learn call); modelserve is timed on that same body too.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.run import (  # noqa: E402
    DURATION,
    LUA,
    PYTHON,
    RUNS,
    Result,
    Server,
    free_port,
    median,
    settle,
    start,
    stop,
    wrk,
)
from modelserve.core.registry import ModelRegistry  # noqa: E402
from modelserve.core.settings import Settings  # noqa: E402
from modelserve.core.store import ModelStore  # noqa: E402
from modelserve.training.train import TrainConfig, train  # noqa: E402

WORKLOADS = {"W1": (1, 32), "W2": (100, 8)}
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- tabular: begin -->", "<!-- tabular: end -->"


def _rows(frame: pd.DataFrame, count: int, rng: np.random.Generator) -> list[dict[str, object]]:
    picked = frame.iloc[rng.integers(0, len(frame), count)]
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in picked.astype(object).to_dict(orient="records")
    ]


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (make bench-tabular installs it with apt-get)")
    work = Path(tempfile.mkdtemp(prefix="modelserve-bench-tabular-"))
    linear_store = ModelStore(work / "linear")
    train(TrainConfig(), linear_store)
    pipeline_store = ModelStore(work / "pipeline")
    penguins = ROOT / "examples" / "penguins.csv"
    train(
        TrainConfig(
            name="penguins",
            estimator="hist-gradient-boosting-classifier",
            csv=penguins,
            target="species",
        ),
        pipeline_store,
    )
    rng = np.random.default_rng(0)
    frame = pd.read_csv(penguins).drop(columns="species")
    bodies: dict[tuple[str, str], bytes] = {}
    expected: dict[tuple[str, str], list[object]] = {}
    linear = ModelRegistry(Settings(store=linear_store.root)).load_predictor("default")
    pipeline = ModelRegistry(Settings(store=pipeline_store.root)).load_predictor("penguins")
    for workload, (rows, _) in WORKLOADS.items():
        records = _rows(frame, rows, rng)
        bodies[("pipeline", workload)] = orjson.dumps({"instances": records})
        expected[("pipeline", workload)] = pipeline.predict(records).predictions.tolist()
        bodies[("pipeline-v2", workload)] = _v2_columns(records)
        expected[("pipeline-v2", workload)] = expected[("pipeline", workload)]
        X = rng.normal(size=(rows, 10))
        bodies[("linear", workload)] = orjson.dumps({"instances": X.tolist()})
        expected[("linear", workload)] = linear.predict(X).predictions.tolist()
    scripts: dict[tuple[str, str], Path] = {}
    for (model, workload), body in bodies.items():
        body_path = work / f"{model}-{workload}.body"
        body_path.write_bytes(body)
        script = work / f"{model}-{workload}.lua"
        script.write_text(LUA.format(body=body_path, content_type="application/json", extra=""))
        scripts[(model, workload)] = script

    serve = [str(Path(PYTHON).parent / "modelserve"), "serve", "--port", "{port}",
             "--no-train-if-empty", "--store"]  # fmt: skip
    uvicorn = [PYTHON, "-m", "uvicorn", "--port", "{port}", "--log-level", "warning",
               "--no-access-log", "--loop", "uvloop", "--http", "httptools"]  # fmt: skip
    ceiling = Server("ceiling (bare ASGI + orjson)", [*uvicorn, "bench.ceiling:app"], "/")
    servers = [
        (Server("modelserve, linear", [*serve, str(linear_store.root)], "/health/ready"),
         "linear", "/predict"),
        (Server("modelserve, penguins pipeline, batching on",
                [*serve, str(pipeline_store.root)], "/health/ready", model="penguins"),
         "pipeline", "/v1/models/penguins/predict"),
        (Server("modelserve, penguins pipeline, batching off",
                [*serve, str(pipeline_store.root)], "/health/ready",
                {"MODELSERVE_MICRO_BATCHING": "false"}, model="penguins"),
         "pipeline", "/v1/models/penguins/predict"),
    ]  # fmt: skip
    mlserver = os.environ.get("MLSERVER_BIN")
    if mlserver:
        servers.insert(2, (Server("modelserve, penguins pipeline, batching on, /v2 columns",
                                  [*serve, str(pipeline_store.root)], "/health/ready",
                                  model="penguins"),
                           "pipeline-v2", "/v2/models/penguins/infer"))  # fmt: skip
        servers += _mlserver(mlserver, pipeline.estimator, work)
    ceiling_port = free_port()
    ceiling_process = start(ceiling, ceiling_port, work / "ceiling.log")
    ceiling_url = f"http://127.0.0.1:{ceiling_port}/"
    table: list[tuple[str, str, Result, float]] = []
    try:
        for server, model, path in servers:
            table += _time_server(server, model, path, work, bodies, expected, scripts, ceiling_url)
    finally:
        stop(ceiling_process)
    _write(table)


def _time_server(
    server: Server,
    model: str,
    path: str,
    work: Path,
    bodies: dict[tuple[str, str], bytes],
    expected: dict[tuple[str, str], list[object]],
    scripts: dict[tuple[str, str], Path],
    ceiling_url: str,
) -> list[tuple[str, str, Result, float]]:
    """Start ``server``, check its answers against the model's, time each workload paired."""
    rows: list[tuple[str, str, Result, float]] = []
    port = free_port()
    log = work / f"{server.name[:24]}.log"
    process = start(server, port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        settle(server, process, log)
        for workload in WORKLOADS:
            answer = httpx.post(base + path, content=bodies[(model, workload)], timeout=30)
            answer.raise_for_status()
            document = answer.json()
            got = (
                document["predictions"]
                if "predictions" in document
                else np.ravel(document["outputs"][0]["data"]).tolist()
            )
            want = expected[(model, workload)]
            ok = np.allclose(got, want, rtol=0, atol=1e-9) if model == "linear" else got == want
            if not ok:
                raise SystemExit(f"{server.name}: answers differ from the model's own")
        for workload, (_, connections) in WORKLOADS.items():
            runs, paired = [], []
            for _ in range(RUNS):
                ceiling = wrk(ceiling_url, scripts[("linear", workload)], connections)
                run = wrk(base + path, scripts[(model, workload)], connections)
                runs.append(run)
                paired.append(run.rps / ceiling.rps)
            result = median(runs)
            ratio = statistics.median(paired)
            rows.append((server.name, workload, result, ratio))
            print(f"{server.name:60} {workload}: {result.rps:9.1f} req/s  "  # noqa: T201
                  f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  "
                  f"errors {result.errors}  x{ratio:.3f} of the paired ceiling runs", flush=True)
    finally:
        stop(process)
    return rows


def _v2_columns(records: list[dict[str, object]]) -> bytes:
    """The /v2 request MLServer's and KServe's clients send for a DataFrame."""
    types = {"island": "BYTES", "sex": "BYTES", "year": "INT64"}
    inputs = []
    for name in records[0]:
        tensor: dict[str, object] = {
            "name": name,
            "shape": [len(records)],
            "datatype": types.get(name, "FP64"),
            "data": [row[name] for row in records],
        }
        if types.get(name) == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    # the labels only, as MLServer's sklearn runtime answers when no output is named
    outputs = [{"name": "predict"}]
    request = {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": outputs}
    return orjson.dumps(request)


def _mlserver(binary: str, estimator: object, work: Path) -> list[tuple[Server, str, str]]:
    import joblib  # noqa: PLC0415 - scikit-learn's dependency; only for this row

    servers = []
    for batching in (True, False):
        repository = work / f"mlserver-{batching}"
        (repository / "penguins").mkdir(parents=True)
        joblib.dump(estimator, repository / "penguins" / "model.joblib")
        settings: dict[str, object] = {
            "name": "penguins",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"},
        }
        if batching:
            settings |= {"max_batch_size": 32, "max_batch_time": 0.002}
        (repository / "penguins" / "model-settings.json").write_bytes(orjson.dumps(settings))
        env = {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_GRPC_PORT": str(free_port()),
               "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_PARALLEL_WORKERS": "0",
               "MLSERVER_DEBUG": "false"}  # fmt: skip
        command = ["env", "MLSERVER_HTTP_PORT={port}", binary, "start", str(repository)]
        name = f"MLServer 1.7.1, penguins pipeline, adaptive batching {'on' if batching else 'off'}"
        servers.append(
            (Server(name, command, "/v2/health/ready", env, model="penguins"),
             "pipeline-v2", "/v2/models/penguins/infer")
        )  # fmt: skip
    return servers


def _write(table: list[tuple[str, str, Result, float]]) -> None:
    lines = [
        BEGIN,
        "## A mixed-type pipeline (bench/tabular.py)",
        "",
        f"Written by `make bench-tabular` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "The penguins pipeline (ColumnTransformer with ordinal codes for `island` and `sex`, "
        "then HistGradientBoostingClassifier; rows by name with text, numbers and nulls) beside "
        f"the linear `default` model; median of {RUNS} run(s) of {DURATION} s, ratios are "
        "medians of runs paired with a ceiling run on the same workload.",
        "",
        "| server | workload | req/s | rows/s | ratio to ceiling | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, workload, result, ratio in table:
        rows, connections = WORKLOADS[workload]
        lines.append(
            f"| {name} | {workload} ({rows} row{'s' if rows > 1 else ''}, {connections} conn) | "
            f"{result.rps:,.0f} | {result.rps * rows:,.0f} | {ratio:.3f} | {result.p50_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.errors} |"
        )
    lines.append(END)
    write_section(RESULTS, BEGIN, END, "\n".join(lines))


def write_section(results: Path, begin: str, end: str, section: str) -> None:
    """Put ``section`` (from ``begin`` to ``end``) into ``results``, in place of the last one."""
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text)


if __name__ == "__main__":
    main()
