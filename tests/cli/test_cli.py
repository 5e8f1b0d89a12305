from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelserve.cli import app
from modelserve.core.store import ModelStore
from tests.core.test_store import MARKER_NAME, plant_malicious_pickle
from tests.helpers import PENGUIN, ROW

runner = CliRunner()


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_train_prints_name_version_path_and_metrics(tmp_path: Path) -> None:
    code, out, _ = invoke("train", "--store", str(tmp_path), "--samples", "100", "--name", "house")
    assert code == 0
    assert "name:    house" in out
    assert "version: 1" in out
    assert f"path:    {tmp_path / 'house' / '1'}" in out
    assert "metrics: r2=" in out
    code, out, _ = invoke("train", "--store", str(tmp_path), "--samples", "100", "--name", "house")
    assert "version: 2" in out


def test_train_reads_the_store_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSERVE_STORE", str(tmp_path / "env-store"))
    code, _, _ = invoke("train", "--samples", "50")
    assert code == 0
    assert ModelStore(tmp_path / "env-store").list_versions("default") == [1]


def test_train_errors_are_clear_and_exit_1(tmp_path: Path) -> None:
    code, _, err = invoke("train", "--store", str(tmp_path), "--estimator", "svm")
    assert code == 1
    assert "error: unknown estimator 'svm'" in err
    code, _, err = invoke(
        "train", "--store", str(tmp_path), "--csv", str(tmp_path / "x.csv"), "--target", "y"
    )
    assert code == 1
    assert "does not exist" in err


def test_train_pickle_warns_that_serving_it_needs_a_setting(tmp_path: Path) -> None:
    code, _, err = invoke(
        "train", "--store", str(tmp_path), "--samples", "50", "--format", "pickle"
    )
    assert code == 0
    assert "MODELSERVE_ALLOW_PICKLE=true" in err
    assert (tmp_path / "default" / "1" / "model.pkl").exists()


def test_predict_from_stdin_and_file(store_path: Path, tmp_path: Path) -> None:
    code, out, _ = invoke("predict", "--store", str(store_path), stdin=json.dumps([ROW]))
    assert code == 0
    from_stdin = json.loads(out)
    assert from_stdin["model_name"] == "default"
    assert len(from_stdin["predictions"]) == 1
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": [ROW]}))
    code, out, _ = invoke("predict", "--store", str(store_path), "--input", str(request))
    assert json.loads(out) == from_stdin


def test_predict_classifier_probabilities(store_path: Path) -> None:
    code, out, _ = invoke(
        "predict",
        "--store",
        str(store_path),
        "--model",
        "clf",
        "--probabilities",
        stdin=json.dumps([[0.0, 0.1, 0.2, 0.3]]),
    )
    assert code == 0
    body = json.loads(out)
    assert body["classes"] == [0, 1]
    assert len(body["probabilities"][0]) == 2


@pytest.mark.parametrize(
    ("stdin", "args", "message"),
    [
        ("[[1, 2]]", (), "row 0 has 2 values but model 'default' v1 takes 10 features"),
        ("not json", (), "input is not valid JSON"),
        ("[[1]]", ("--model", "nope"), "model 'nope' is not in the store"),
        ("[[1]]", ("--version", "9"), "model 'default' has no version 9"),
    ],
)
def test_predict_errors(store_path: Path, stdin: str, args: tuple[str, ...], message: str) -> None:
    code, _, err = invoke("predict", "--store", str(store_path), *args, stdin=stdin)
    assert code == 1
    assert message in " ".join(err.split())


def test_models_list_and_show(store_path: Path) -> None:
    code, out, _ = invoke("models", "list", "--store", str(store_path))
    assert code == 0
    assert "default  versions 1  (LinearRegression, r2=" in out
    assert "clf  versions 1  (LogisticRegression, accuracy=" in out
    code, out, err = invoke("models", "show", "default", "--store", str(store_path))
    assert code == 0
    assert json.loads(out)["input_schema"]["count"] == 10
    assert "verified: default v1" in err


def test_models_list_on_an_empty_store(tmp_path: Path) -> None:
    code, out, _ = invoke("models", "list", "--store", str(tmp_path))
    assert (code, out.strip()) == (0, f"no models in {tmp_path}")


def test_models_show_refuses_a_tampered_model(store_path: Path) -> None:
    path = store_path / "default" / "1" / "model.skops"
    path.write_bytes(path.read_bytes() + b"x")
    code, _, err = invoke("models", "show", "default", "--store", str(store_path))
    assert code == 1
    assert "does not match its manifest" in " ".join(err.split())


def test_malicious_pickle_never_runs_from_the_cli(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / MARKER_NAME
    plant_malicious_pickle(store, marker, matching_hash=False)
    monkeypatch.setenv("MODELSERVE_ALLOW_PICKLE", "true")
    code, _, err = invoke(
        "predict", "--store", str(store.root), "--model", "evil", stdin="[[1,2,3]]"
    )
    assert code == 1
    assert "does not match its manifest" in " ".join(err.split())
    code, _, _ = invoke("models", "show", "evil", "--store", str(store.root))
    assert code == 1
    assert not marker.exists()


def test_invalid_settings_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_MAX_ROWS", "0")
    code, _, err = invoke("models", "list", "--store", str(tmp_path))
    assert code == 1
    assert "invalid settings: max_rows" in err


def test_version_flag() -> None:
    code, out, _ = invoke("--version")
    assert code == 0
    assert out.startswith("modelserve ")


def test_predict_uses_the_newest_version_that_verifies(store_path: Path) -> None:
    code, _, err = invoke("train", "--store", str(store_path), "--samples", "60", "--seed", "3")
    assert code == 0, err
    newest = store_path / "default" / "2" / "model.skops"
    newest.write_bytes(newest.read_bytes()[:-1])  # v2 no longer verifies
    code, out, err = invoke("predict", "--store", str(store_path), stdin=json.dumps([ROW]))
    assert code == 0, err
    assert json.loads(out)["model_version"] == 1  # as the server would serve
    code, out, err = invoke(
        "predict", "--store", str(store_path), "--version", "2", stdin=json.dumps([ROW])
    )
    assert code == 1
    assert "does not match its manifest" in err


def test_predict_a_mixed_type_model_from_rows_with_nulls(tabular_store: Path) -> None:
    rows = [{**PENGUIN, "island": "Dream", "bill_length_mm": None, "sex": None}]
    code, out, err = invoke(
        "predict", "--store", str(tabular_store), "--model", "penguins", "--probabilities",
        stdin=json.dumps({"instances": rows}),
    )  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    assert answer["predictions"][0] in ("Adelie", "Chinstrap", "Gentoo")
    assert answer["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
