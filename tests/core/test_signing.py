"""Signed manifests (Ed25519) and importing an existing pickle with explicit trust."""

from __future__ import annotations

import hashlib
import json
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import Ridge
from typer.testing import CliRunner

from modelserve.cli import app
from modelserve.core.errors import SignatureError, SigningKeyError, TrainingError
from modelserve.core.settings import Settings
from modelserve.core.signing import generate_keys, load_signing_key, load_verify_key
from modelserve.core.store import LoadPolicy, ModelStore, sha256_hex
from modelserve.http.app import create_app
from modelserve.training.importer import import_pickle
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW, assert_problem

runner = CliRunner()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keys(tmp_path / "keys")


def test_generate_writes_a_private_and_a_public_key(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes()
    assert b"PUBLIC KEY" in public.read_bytes()
    with pytest.raises(SigningKeyError, match="exists already"):
        generate_keys(private.parent)


def test_signed_versions_load_and_unsigned_or_tampered_ones_do_not(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(samples=60), store, load_signing_key(private))
    policy = LoadPolicy(verify_key=load_verify_key(public))
    assert (store.version_dir("default", 1) / "manifest.sig").exists()
    assert store.load("default", 1, policy).manifest.version == 1

    train(TrainConfig(samples=60), store)  # v2: unsigned
    with pytest.raises(SignatureError, match="default v2 is not signed"):
        store.load("default", 2, policy)

    other_private, _ = generate_keys(tmp_path / "other")
    train(TrainConfig(samples=60), store, load_signing_key(other_private))  # v3: someone else's key
    with pytest.raises(SignatureError, match="signature does not match the server's verify key"):
        store.load("default", 3, policy)

    # v1 with a swapped model file and a manifest rewritten to match it: the signature breaks.
    directory = store.version_dir("default", 1)
    forged = pickle.dumps(Ridge().fit(np.eye(10), np.arange(10)))
    (directory / "model.skops").write_bytes(forged)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.update(sha256=sha256_hex(forged), size_bytes=len(forged))
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(SignatureError, match="does not match"):
        store.load("default", 1, policy)


def test_a_server_with_a_verify_key_serves_only_signed_versions(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(samples=60), store, load_signing_key(private))
    train(TrainConfig(samples=60, seed=3), store)  # unsigned, newer
    with TestClient(create_app(Settings(store=store.root, verify_key=public))) as client:
        assert client.post("/predict", json={"instances": [ROW]}).json()["model_version"] == 1
        assert_problem(
            client.post("/v1/models/default/versions/2/predict", json={"instances": [ROW]}),
            503,
            "model-unavailable",
            detail_contains="default v2 is not signed",
        )


def test_cli_train_signs_and_serve_refuses_a_bad_verify_key(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, _ = keys
    store = tmp_path / "models"
    result = runner.invoke(
        app, ["train", "--store", str(store), "--samples", "50", "--signing-key", str(private)]
    )
    assert result.exit_code == 0, result.stderr
    assert (store / "default" / "1" / "manifest.sig").exists()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    completed = subprocess.run(
        [sys.executable, "-m", "modelserve", "serve", "--store", str(store), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MODELSERVE_VERIFY_KEY": str(bad), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert (
        completed.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {bad} is not a PEM public key")
    )


def _pickled_ridge(tmp_path: Path) -> tuple[Path, Ridge]:
    X = np.random.default_rng(0).normal(size=(50, 3))
    model = Ridge().fit(X, X @ np.array([1.0, 2.0, 3.0]))
    path = tmp_path / "legacy.pkl"
    path.write_bytes(pickle.dumps(model))
    return path, model


def test_import_needs_explicit_trust(tmp_path: Path) -> None:
    path, _ = _pickled_ridge(tmp_path)
    with pytest.raises(TrainingError, match="pass --trust-pickle only if you trust"):
        import_pickle(path, "legacy", ModelStore(tmp_path / "models"), trust_pickle=False)
    result = runner.invoke(
        app, ["import", str(path), "--name", "legacy", "--store", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "unpickling runs code from the file" in " ".join(result.stderr.split())


def test_import_records_the_pickles_hash_and_serves_without_pickle(tmp_path: Path) -> None:
    path, model = _pickled_ridge(tmp_path)
    store = tmp_path / "models"
    result = runner.invoke(
        app,
        [
            "import",
            str(path),
            "--name",
            "legacy",
            "--trust-pickle",
            "--feature-names",
            "a,b,c",
            "--store",
            str(store),
        ],
    )
    assert result.exit_code == 0, result.stderr
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in result.stdout
    manifest = ModelStore(store).read_manifest("legacy", 1)
    assert manifest.format == "skops"
    assert manifest.training_data.sha256 == digest
    assert manifest.input_schema.names == ["a", "b", "c"]
    with TestClient(create_app(Settings(store=store))) as client:  # pickle stays off
        answer = client.post(
            "/v1/models/legacy/predict", json={"instances": [{"a": 1, "b": 2, "c": 3}]}
        )
    assert answer.json()["predictions"] == pytest.approx(
        model.predict(np.array([[1.0, 2.0, 3.0]])).tolist()
    )


def test_import_refuses_wrong_feature_names(tmp_path: Path) -> None:
    path, _ = _pickled_ridge(tmp_path)
    with pytest.raises(TrainingError, match="takes 3 features; give as many unique names"):
        import_pickle(path, "x", ModelStore(tmp_path / "m"), trust_pickle=True, feature_names=["a"])
