"""Interleaved A/B timing of two source trees of modelserve, for a change too small for make bench.

Each round starts one tree's `modelserve serve` pinned to core 1 (the other tree next, the
order alternating by round), waits until it is ready and settled, and drives it with wrk pinned
to core 0 for 4 s per workload. Prints each tree's median and the per-round new/old ratios
(rounds pair the two trees within a minute of each other, so the machine's drift cancels).

    python bench/ab.py OLD_SRC NEW_SRC [ROUNDS]    # e.g. a worktree's src/ against ./src

AB_ESTIMATOR trains another estimator as the default model (`random-forest`), AB_ENV sets
server variables for both trees (`MODELSERVE_COMPILED_FORMS=false`, space-separated), and
AB_CSV=examples/penguins.csv AB_TARGET=species trains on that table and sends its rows by name
(native requests only).
"""

import os, re, signal, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import httpx
import numpy as np
import orjson

ROWS = {"W1": (1, 32), "W2": (100, 8)}
work = Path(tempfile.mkdtemp(prefix="ab-"))
ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent / "modelserve"
store = str(work / "models")
ESTIMATOR = os.environ.get("AB_ESTIMATOR", "linear")
SERVER_ENV = dict(item.split("=", 1) for item in os.environ.get("AB_ENV", "").split())
CSV = os.environ.get("AB_CSV")
TABLE = ["--csv", CSV, "--target", os.environ["AB_TARGET"]] if CSV else []
subprocess.run(
    [PYTHON, "-m", "modelserve", "train", "--store", store, "--estimator", ESTIMATOR, *TABLE],
    check=True,
    capture_output=True,
    env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
)


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def lua(path, body):
    b = work / (path.stem + ".body")
    b.write_bytes(body)
    path.write_text(
        f'wrk.method = "POST"\nlocal f = io.open("{b}", "rb")\nwrk.body = f:read("*all")\nf:close()\nwrk.headers["Content-Type"] = "application/json"\n'
    )


rng = np.random.default_rng(0)
scripts = {}
KINDS = ("native",) if CSV else ("native", "v2")
for w, (rows, conn) in ROWS.items():
    x = rng.normal(size=(rows, 10))
    if CSV:
        import pandas as pd

        frame = pd.read_csv(ROOT / CSV).drop(columns=os.environ["AB_TARGET"])
        picked = frame.iloc[rng.integers(0, len(frame), rows)]
        records = orjson.loads(picked.to_json(orient="records"))
        lua(work / f"{w}-native.lua", orjson.dumps({"instances": records}))
        continue
    lua(work / f"{w}-native.lua", orjson.dumps({"instances": x.tolist()}))
    lua(
        work / f"{w}-v2.lua",
        orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [rows, 10],
                        "datatype": "FP64",
                        "data": x.reshape(-1).tolist(),
                    }
                ]
            }
        ),
    )
paths = {"native": "/predict", "v2": "/v2/models/default/infer"}
trees = {"old": sys.argv[1], "new": sys.argv[2]}
results = {}
for rnd in range(int(sys.argv[3]) if len(sys.argv) > 3 else 6):
    for name, src in (
        (("old", trees["old"]), ("new", trees["new"]))
        if rnd % 2 == 0
        else (("new", trees["new"]), ("old", trees["old"]))
    ):
        p = port()
        env = {**os.environ, "PYTHONPATH": src, **SERVER_ENV}
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
        log = open(work / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                "1",
                str(BIN),
                "serve",
                "--store",
                store,
                "--port",
                str(p),
                "--no-train-if-empty",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{p}/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        time.sleep(3)  # settled: scikit-learn confirmed, app built
        for w, (rows, conn) in ROWS.items():
            for kind in KINDS:
                out = subprocess.run(
                    [
                        "taskset",
                        "-c",
                        "0",
                        "wrk",
                        "-t1",
                        f"-c{conn}",
                        "-d4s",
                        "-s",
                        str(work / f"{w}-{kind}.lua"),
                        f"http://127.0.0.1:{p}{paths[kind]}",
                    ],
                    capture_output=True,
                    text=True,
                ).stdout
                rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
                results.setdefault((name, w, kind), []).append(rps)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
for w, kind in [(w, k) for w in ROWS for k in KINDS]:
    o, n = results[("old", w, kind)], results[("new", w, kind)]
    paired = [b / a for a, b in zip(o, n)]
    print(
        f"{w} {kind:6}  old median {statistics.median(o):7.0f} req/s  new median "
        f"{statistics.median(n):7.0f} req/s  per-round new/old median "
        f"{statistics.median(paired):.2f} ({min(paired):.2f}-{max(paired):.2f})"
    )
