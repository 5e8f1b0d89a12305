"""Batch scoring: `modelserve predict --input data.csv|data.parquet --output preds.csv`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import skops.io as sio
from typer.testing import CliRunner

from modelserve.cli import app
from modelserve.core.store import ModelStore
from modelserve.dataplane.scoring import count_rows

runner = CliRunner()
FEATURES = [f"x{i}" for i in range(10)]


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def estimator(store_path: Path, name: str = "default") -> object:
    path = ModelStore(store_path).version_dir(name, 1) / "model.skops"
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n")
    return path


def matrix(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 10))


def test_a_csv_is_scored_in_chunks_exactly_like_the_model(store_path: Path, tmp_path: Path) -> None:
    X = matrix(53)
    # Columns in another order, plus an id column the model does not take.
    order = [9, 3, 0, 1, 2, 4, 5, 6, 7, 8]
    header = ["id", *(FEATURES[i] for i in order)]
    rows = [[str(n), *(repr(float(X[n, i])) for i in order)] for n in range(len(X))]
    source = write_csv(tmp_path / "data.csv", header, rows)
    target = tmp_path / "preds.csv"

    code, _, err = invoke(
        "predict", "--store", str(store_path), "-i", str(source), "-o", str(target),
        "--chunk-rows", "7", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "53 rows scored with default v1" in err
    assert "ignored columns: id" in err
    written = pacsv.read_csv(target)
    assert written.column_names == ["prediction"]
    expected = estimator(store_path).predict(X)  # type: ignore[attr-defined]
    np.testing.assert_allclose(written.column("prediction").to_numpy(), expected, rtol=1e-9)
    assert not list(tmp_path.glob(".preds.csv.tmp-*"))


def test_a_parquet_file_gives_the_same_predictions(store_path: Path, tmp_path: Path) -> None:
    X = matrix(100, seed=1)
    columns = {name: X[:, i] for i, name in enumerate(FEATURES)}
    columns["x3"] = (X[:, 3] * 0).astype(np.int64)  # integer columns are numbers too
    X[:, 3] = 0
    pq.write_table(pa.table(columns), tmp_path / "data.parquet", row_group_size=30)
    code, _, err = invoke(
        "predict", "--store", str(store_path), "-i", str(tmp_path / "data.parquet"),
        "-o", str(tmp_path / "out.csv"), "--chunk-rows", "16", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    got = pacsv.read_csv(tmp_path / "out.csv").column("prediction").to_numpy()
    np.testing.assert_allclose(got, estimator(store_path).predict(X), rtol=1e-9)  # type: ignore[attr-defined]


def test_a_classifier_writes_labels_and_probabilities(store_path: Path, tmp_path: Path) -> None:
    X = np.random.default_rng(2).normal(size=(20, 4))
    names = [f"x{i}" for i in range(4)]
    source = write_csv(tmp_path / "c.csv", names, [[repr(float(v)) for v in row] for row in X])
    code, out, err = invoke(
        "predict", "--store", str(store_path), "--model", "clf", "-i", str(source),
        "--probabilities", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    model = estimator(store_path, "clf")
    table = pacsv.read_csv(pa.BufferReader(out.encode()))
    classes = list(model.classes_)  # type: ignore[attr-defined]
    assert table.column_names == ["prediction", *(f"probability_{c}" for c in classes)]
    assert table.column("prediction").to_pylist() == list(model.predict(X))  # type: ignore[attr-defined]
    proba = np.column_stack([table.column(f"probability_{c}").to_numpy() for c in classes])
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-9)  # type: ignore[attr-defined]


def good_rows(count: int) -> list[list[str]]:
    return [[str(0.5 * (n + i)) for i in range(10)] for n in range(count)]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["1"] * 4 + ["abc"] + ["1"] * 5, "row 6, feature 'x4', 'abc' is not a number"),
        (["1"] * 4 + [""] + ["1"] * 5, "row 6, feature 'x4', is empty (or NaN)"),
        (["1"] * 4 + ["nan"] + ["1"] * 5, "row 6, feature 'x4', is empty (or NaN)"),
        (["1"] * 4 + ["inf"] + ["1"] * 5, "row 6, feature 'x4', is Infinity (not allowed)"),
        (["1"] * 9, "row 6 has 9 values but the header has 10"),
        (["1e308"] * 10, "row 6 gets a prediction that is not a finite number"),  # overflows
    ],
)
def test_a_bad_row_is_named_by_its_number_and_nothing_is_written(
    store_path: Path, tmp_path: Path, row: list[str], message: str
) -> None:
    rows = [*good_rows(5), row, *good_rows(20)]
    source = write_csv(tmp_path / "bad.csv", FEATURES, rows)
    target = tmp_path / "preds.csv"
    target.write_text("an earlier run's output\n")
    code, _, err = invoke(
        "predict", "--store", str(store_path), "-i", str(source), "-o", str(target),
        "--chunk-rows", "4", "--no-progress",
    )  # fmt: skip
    assert code == 1
    assert message in " ".join(err.split()), err
    assert "no predictions were written" in " ".join(err.split())
    # The earlier output is untouched and no temporary file is left behind.
    assert target.read_text() == "an earlier run's output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "models", "preds.csv"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda d: write_csv(d / "a.csv", FEATURES[:8], good_rows(2)),
            "lacks the feature column(s) 'x8', 'x9'",
        ),
        (lambda d: (d / "a.csv").write_text("") or d / "a.csv", "is empty: expected a header row"),
        (lambda d: write_csv(d / "a.csv", FEATURES, []), "has no data rows"),
        (lambda d: d / "missing.csv", "no such file"),
        (
            lambda d: pq.write_table(
                pa.table({**{n: [1.0] for n in FEATURES}, "x2": ["a"]}), d / "a.parquet"
            ) or d / "a.parquet",
            "column 'x2' holds string, not numbers",
        ),
        (lambda d: (d / "a.parquet").write_bytes(b"junk") and d / "a.parquet", "cannot read"),
    ],
)  # fmt: skip
def test_files_that_cannot_be_scored_get_one_clear_line(
    store_path: Path, tmp_path: Path, setup: object, message: str
) -> None:
    source = setup(tmp_path)  # type: ignore[operator]
    code, _, err = invoke(
        "predict", "--store", str(store_path), "-i", str(source), "-o", str(tmp_path / "p.csv"),
        "--no-progress",
    )  # fmt: skip
    assert code == 1
    assert message in " ".join(err.split()), err
    assert not (tmp_path / "p.csv").exists()


def test_probabilities_from_a_regressor_are_refused(store_path: Path, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "a.csv", FEATURES, good_rows(3))
    code, _, err = invoke(
        "predict", "--store", str(store_path), "-i", str(source), "--probabilities", "--no-progress"
    )
    assert code == 1
    assert "is a regressor; it has no class probabilities" in " ".join(err.split())


def test_row_count_for_the_progress_bar(tmp_path: Path) -> None:
    assert count_rows(write_csv(tmp_path / "a.csv", FEATURES, good_rows(12))) == 12
    (tmp_path / "b.csv").write_text("a,b\n1,2\n3,4")  # no final newline
    assert count_rows(tmp_path / "b.csv") == 2
    pq.write_table(pa.table({"a": list(range(9))}), tmp_path / "c.parquet")
    assert count_rows(tmp_path / "c.parquet") == 9


def test_the_real_command_streams_a_large_file(store_path: Path, tmp_path: Path) -> None:
    """The console script end to end, on a file of several chunks, with the progress bar on."""
    X = matrix(30_000, seed=3)
    pacsv.write_csv(pa.table({n: X[:, i] for i, n in enumerate(FEATURES)}), tmp_path / "d.csv")
    result = subprocess.run(
        [sys.executable, "-m", "modelserve", "predict", "--store", str(store_path),
         "-i", str(tmp_path / "d.csv"), "-o", str(tmp_path / "p.csv"), "--chunk-rows", "4096"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "30,000 rows scored" in result.stderr
    got = pacsv.read_csv(tmp_path / "p.csv").column("prediction").to_numpy()
    np.testing.assert_allclose(got, estimator(store_path).predict(X), rtol=1e-9)  # type: ignore[attr-defined]
