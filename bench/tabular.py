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
"""

from __future__ import annotations

import math
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
    ceiling_port = free_port()
    ceiling_process = start(ceiling, ceiling_port, work / "ceiling.log")
    ceiling_url = f"http://127.0.0.1:{ceiling_port}/"
    table: list[tuple[str, str, Result, float]] = []
    try:
        for server, model, path in servers:
            port = free_port()
            log = work / f"{server.name[:24]}.log"
            process = start(server, port, log)
            try:
                base = f"http://127.0.0.1:{port}"
                settle(server, process, log)
                for workload in WORKLOADS:
                    answer = httpx.post(base + path, content=bodies[(model, workload)], timeout=30)
                    answer.raise_for_status()
                    got = answer.json()["predictions"]
                    if model == "linear":
                        ok = np.allclose(got, expected[(model, workload)], rtol=0, atol=1e-9)
                    else:
                        ok = got == expected[(model, workload)]
                    if not ok:
                        raise SystemExit(f"{server.name}: answers differ from the model's own")
                for workload, (_, connections) in WORKLOADS.items():
                    runs, paired = [], []
                    for _ in range(RUNS):
                        base_run = wrk(ceiling_url, scripts[("linear", workload)], connections)
                        run = wrk(base + path, scripts[(model, workload)], connections)
                        runs.append(run)
                        paired.append(run.rps / base_run.rps)
                    result = median(runs)
                    ratio = statistics.median(paired)
                    table.append((server.name, workload, result, ratio))
                    print(f"{server.name:44} {workload}: {result.rps:9.1f} req/s  "  # noqa: T201
                          f"p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms  "
                          f"errors {result.errors}  x{ratio:.3f} of the paired ceiling runs",
                          flush=True)
            finally:
                stop(process)
    finally:
        stop(ceiling_process)
    _write(table)


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
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = "\n".join(lines)
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
