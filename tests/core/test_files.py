"""A hostile or broken store, against the real store, registry and app.

Whoever can write to the store can leave links out of it, FIFOs, devices, huge files, zip bombs,
directories named with other scripts' digits, a model file that is no model: each is refused
with a reason, quickly, and never stalls the watcher, the server or the other models.
"""

from __future__ import annotations

import io
import json
import os
import threading
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelserve.cli import app as cli_app
from modelserve.core.errors import DeserializationError, IntegrityError, ManifestError
from modelserve.core.files import RefusedFileError, StoreLimits, check_archive, read_regular
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from modelserve.core.store import LoadPolicy, ModelStore, sha256_hex
from modelserve.http.app import create_app
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW


def _republish_file(
    store: ModelStore, name: str, version: int, file_name: str, data: bytes
) -> None:
    """Write ``file_name`` and make the manifest vouch for it, as a hostile writer would."""
    directory = store.version_dir(name, version)
    (directory / file_name).write_bytes(data)
    _vouch(store, name, version, file_name, data)


def _vouch(store: ModelStore, name: str, version: int, file_name: str, data: bytes) -> None:
    path = store.version_dir(name, version) / "manifest.json"
    document = json.loads(path.read_text())
    if file_name == document["model_file"]:
        document.update(sha256=sha256_hex(data), size_bytes=len(data))
    else:
        document["attachments"][file_name] = sha256_hex(data)
    path.write_text(json.dumps(document))


def _within(seconds: float, call: Callable[[], object]) -> object:
    """``call()``'s result or exception; fails if it has not returned within ``seconds``."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # the caller asserts on it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s"
    return outcome[0]


def _bomb(schema_bytes: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b" " * schema_bytes)
    return buffer.getvalue()


# -- zip archives ------------------------------------------------------------------------------


def test_a_skops_zip_bomb_is_refused_before_anything_is_unpacked(store: ModelStore) -> None:
    bomb = _bomb(400 * 2**20)  # 400 MiB of spaces in a ~400 KB file
    assert len(bomb) < 2**20
    _republish_file(store, "default", 1, "model.skops", bomb)
    tracemalloc.start()
    try:
        with pytest.raises(DeserializationError) as caught:
            store.load("default", 1, LoadPolicy())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.message == (
        "default v1: not a readable skops file: model.skops has a schema.json of "
        f"{400 * 2**20} bytes unpacked; the limit is {StoreLimits().archive_schema_bytes}; "
        "refusing to open it"
    )
    assert peak < 20 * 2**20  # the file itself, a few times over; nothing unpacked


def test_a_deferred_load_checks_the_archive_too(store: ModelStore) -> None:
    _republish_file(store, "default", 1, "model.skops", _bomb(200 * 2**20))
    with pytest.raises(DeserializationError, match=r"schema\.json"):
        store.load("default", 1, LoadPolicy(), defer_estimator=True)


def test_archives_are_limited_in_members_and_in_what_they_unpack_to() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(5):
            archive.writestr(f"{index}.npy", b"x" * 100)
    payload = buffer.getvalue()
    check_archive(payload, StoreLimits())
    with pytest.raises(RefusedFileError) as members:
        check_archive(payload, StoreLimits(archive_members=4))
    assert members.value.strerror == "holds 5 files; the limit is 4"
    with pytest.raises(RefusedFileError) as unpacked:
        check_archive(payload, StoreLimits(model_bytes=499))
    assert unpacked.value.strerror == (
        "unpacks to 500 bytes; the limit is 499 (MODELSERVE_MAX_MODEL_BYTES)"
    )


# -- what is not a regular file inside the store --------------------------------------------


def test_a_manifest_linked_to_dev_zero_is_refused_at_once(store: ModelStore) -> None:
    manifest = store.version_dir("default", 1) / "manifest.json"
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    error = _within(5, lambda: store.read_manifest("default", 1))
    assert isinstance(error, ManifestError)
    assert error.message == (
        "default v1: cannot read manifest.json: manifest.json is a symbolic link "
        "(the store follows none)"
    )


def test_a_manifest_that_is_a_fifo_neither_blocks_the_store_nor_the_watcher(
    store: ModelStore, settings: Settings
) -> None:
    manifest = store.version_dir("default", 1) / "manifest.json"
    manifest.unlink()
    os.mkfifo(manifest)
    error = _within(5, lambda: store.read_manifest("default", 1))
    assert isinstance(error, ManifestError)
    assert error.message == (
        "default v1: cannot read manifest.json: manifest.json is not a regular file"
    )
    registry = ModelRegistry(settings)
    assert _within(10, registry.sync) is None  # the scan finishes; clf is served
    assert registry.loaded_versions() == {"clf": [1]}
    assert "not a regular file" in registry.models["default"].failed[1].reason


def test_a_file_over_its_limit_is_refused_unread(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "m" / "1").mkdir(parents=True)
    big = root / "m" / "1" / "manifest.json"
    with big.open("wb") as handle:
        handle.truncate(64 * 2**20)  # sparse: 64 MiB declared, nothing written
    tracemalloc.start()
    try:
        with pytest.raises(RefusedFileError) as caught:
            read_regular(root, ("m", "1", "manifest.json"), 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.strerror == f"has {64 * 2**20} bytes; the limit is {2**20}"
    assert peak < 2**20


def test_a_report_linked_out_of_the_store_is_not_served(
    store: ModelStore, settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    report = store.version_dir("default", 1) / "report.png"
    report.unlink()
    report.symlink_to(secret)
    _vouch(store, "default", 1, "report.png", secret.read_bytes())
    with pytest.raises(IntegrityError, match=r"report\.png is a symbolic link"):
        store.read_attachment(store.read_manifest("default", 1), "report.png")
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/models/default/versions/1/report.png")
    assert response.status_code == 503
    assert response.json()["detail"] == (
        "default v1: cannot read report.png: report.png is a symbolic link (the store follows none)"
    )
    assert b"not yours" not in response.content


def test_a_version_directory_linked_out_of_the_store_is_refused_with_its_reason(
    store: ModelStore, settings: Settings, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    train(TrainConfig(name="default", samples=50, seed=3), ModelStore(outside))
    (store.root / "default" / "2").symlink_to(outside / "default" / "1")
    with TestClient(create_app(settings)) as client:
        listing = client.get("/v1/models").json()["models"]
        predicted = client.post("/v1/models/default/predict", json={"instances": [ROW]})
    default = next(model for model in listing if model["name"] == "default")
    assert default["versions"] == [1]
    assert default["failed"] == [
        {
            "version": 2,
            "error": "default v2: cannot read manifest.json: 2 is a symbolic link "
            "(the store follows none)",
        }
    ]
    assert predicted.json()["model_version"] == 1


def test_a_model_file_linked_out_of_the_store_leaks_nothing_about_it(
    store: ModelStore, settings: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "private.bin"
    target.write_bytes(os.urandom(4096))
    model = store.version_dir("default", 1) / "model.skops"
    model.unlink()
    model.symlink_to(target)
    with TestClient(create_app(settings)) as client:
        listing = client.get("/v1/models").json()["models"]
    default = next(model for model in listing if model["name"] == "default")
    error = default["failed"][0]["error"]
    assert error == (
        "default v1: cannot read model.skops: model.skops is a symbolic link "
        "(the store follows none)"
    )
    assert sha256_hex(target.read_bytes())[:12] not in error
    assert "4096" not in error


def test_version_directories_are_named_in_ascii_digits_only(
    store: ModelStore, settings: Settings
) -> None:
    for odd in ("²", "١", "01", "0"):  # noqa: RUF001 - the point is a digit from another script
        (store.root / "default" / odd).mkdir()
    assert store.list_versions("default") == [1]
    registry = ModelRegistry(settings)
    registry.sync()
    assert registry.loaded_versions() == {"clf": [1], "default": [1]}
    result = CliRunner().invoke(cli_app, ["models", "list", "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    assert "default  versions 1 " in result.output
    trained = CliRunner().invoke(cli_app, ["train", "--store", str(store.root)])
    assert trained.exit_code == 0, trained.output
    assert "version: 2" in trained.output


def test_a_version_option_takes_ascii_digits_only(store: ModelStore) -> None:
    result = CliRunner().invoke(
        cli_app,
        ["models", "show", "default", "--version", "١", "--store", str(store.root)],  # noqa: RUF001
    )
    assert result.exit_code == 2
    assert "a version is written in ASCII digits" in result.output


# -- a version whose estimator is not what its linear form promised -------------------------


def test_a_model_file_that_is_no_model_is_withdrawn_even_with_a_valid_linear_form(
    store: ModelStore, settings: Settings
) -> None:
    import skops.io as sio  # noqa: PLC0415 - what a hostile writer would use

    train(TrainConfig(name="default", samples=50, seed=1), store)  # v2
    _republish_file(store, "default", 2, "model.skops", sio.dumps({"not": "a model"}))
    registry = ModelRegistry(settings, defer_estimators=True, confirm_in_background=False)
    registry.load_all()
    assert registry.get("default").version == 2  # served from linear.json until confirmed
    registry.confirm_pending()
    assert registry.get("default").version == 1
    reason = registry.models["default"].failed[2].reason
    assert reason == ("its estimator failed: default v2: the loaded object has no predict method")
    served = create_app(settings)
    with TestClient(served) as client:
        assert served.state.registry.wait_confirmed(timeout=60)
        listing = client.get("/v1/models").json()["models"]
        version = client.post("/predict", json={"instances": [ROW]}).json()["model_version"]
    default = next(model for model in listing if model["name"] == "default")
    assert default["versions"] == [1]
    assert default["failed"] == [{"version": 2, "error": reason}]
    assert version == 1
