from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sklearn
import skops.io as sio
from sklearn.svm import SVR

from modelserve.core.errors import (
    DeserializationError,
    IncompatibleArtifactError,
    IntegrityError,
    InvalidModelNameError,
    ManifestError,
    ModelNotFoundError,
    PickleNotAllowedError,
    UntrustedTypeError,
    VersionNotFoundError,
)
from modelserve.core.manifest import LINEAR_FILE, Manifest
from modelserve.core.settings import DEFAULT_TRUSTED_TYPES
from modelserve.core.store import STALE_SECONDS, LoadPolicy, ModelStore, sha256_hex
from modelserve.training.importer import import_model
from modelserve.training.train import TrainConfig, train
from tests.helpers import free_port, running_server, serve_command

MARKER_NAME = "pwned"


class Exploit:
    """A pickle payload whose unpickling writes a marker file: it must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_touch, (str(self.marker),))


def _touch(path: str) -> None:  # pragma: no cover - runs only if the store is broken
    Path(path).touch()


def _rewrite_manifest(store: ModelStore, name: str, number: int, **changes: object) -> None:
    path = store.version_dir(name, number) / "manifest.json"
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def test_publish_lays_out_name_version_model_and_manifest(store: ModelStore) -> None:
    directory = store.version_dir("default", 1)
    assert sorted(p.name for p in directory.iterdir()) == [
        "linear.json",  # a linear model's coefficients (the deferred-load tests below)
        "manifest.json",
        "model.skops",
        "report.json",  # the training report (tests/test_report.py)
        "report.png",
    ]
    manifest = store.read_manifest("default")
    assert manifest.sha256 == sha256_hex((directory / "model.skops").read_bytes())
    assert manifest.runtime.sklearn == sklearn.__version__
    assert manifest.input_schema.names == [f"x{i}" for i in range(10)]


def test_versions_increase_and_are_never_overwritten(store: ModelStore) -> None:
    before = store.version_dir("default", 1).joinpath("model.skops").read_bytes()
    train(TrainConfig(name="default", samples=50, seed=7), store)
    assert store.list_versions("default") == [1, 2]
    assert store.latest_version("default") == 2
    assert store.version_dir("default", 1).joinpath("model.skops").read_bytes() == before


def test_concurrent_publishers_get_distinct_versions(store: ModelStore) -> None:
    errors: list[BaseException] = []

    def publish(seed: int) -> None:
        try:
            train(TrainConfig(name="race", samples=30, features=2, seed=seed), store)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.list_versions("race") == [1, 2, 3, 4, 5, 6]
    seeds = {store.read_manifest("race", v).training_data.seed for v in range(1, 7)}
    assert seeds == set(range(6))


def test_half_written_versions_are_invisible(store: ModelStore) -> None:
    # What a crash mid-publish leaves behind: a temporary directory, never a numbered one.
    leftover = store.root / "default" / ".tmp-crashed"
    leftover.mkdir()
    (leftover / "model.skops").write_bytes(b"partial")
    assert store.list_versions("default") == [1]
    assert store.list_models() == ["clf", "default"]


def test_unknown_model_and_version(store: ModelStore) -> None:
    with pytest.raises(ModelNotFoundError, match="model 'nope' is not in the store"):
        store.read_manifest("nope")
    with pytest.raises(VersionNotFoundError, match="model 'default' has no version 9"):
        store.read_manifest("default", 9)


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 65])
def test_unsafe_model_names_are_refused(store: ModelStore, name: str) -> None:
    with pytest.raises(InvalidModelNameError, match="invalid model name"):
        store.list_versions(name)


def test_empty_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "missing")
    assert store.is_empty()
    assert store.list_models() == []


def test_loads_a_verified_artifact(store: ModelStore) -> None:
    artifact = store.load("default", None, LoadPolicy())
    assert artifact.manifest.version == 1
    assert artifact.estimator.n_features_in_ == 10


def test_one_flipped_byte_is_refused(store: ModelStore) -> None:
    path = store.version_dir("default", 1) / "model.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match its manifest") as info:
        store.load("default", 1, LoadPolicy())
    assert "refusing to load it" in info.value.message


def test_truncated_file_is_refused(store: ModelStore) -> None:
    path = store.version_dir("default", 1) / "model.skops"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IntegrityError, match="truncated or was modified"):
        store.load("default", 1, LoadPolicy())


def test_missing_model_file_is_refused(store: ModelStore) -> None:
    (store.version_dir("default", 1) / "model.skops").unlink()
    with pytest.raises(IntegrityError, match=r"model file model\.skops is missing"):
        store.load("default", 1, LoadPolicy())


def test_missing_manifest_is_refused(store: ModelStore) -> None:
    (store.version_dir("default", 1) / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"manifest\.json is missing"):
        store.load("default", 1, LoadPolicy())


def test_corrupt_manifest_is_refused(store: ModelStore) -> None:
    (store.version_dir("default", 1) / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"manifest\.json is invalid"):
        store.load("default", 1, LoadPolicy())


def test_manifest_of_another_version_is_refused(store: ModelStore) -> None:
    _rewrite_manifest(store, "default", 1, version=3)
    with pytest.raises(ManifestError, match="describes 'default' v3"):
        store.load("default", 1, LoadPolicy())


def test_model_file_outside_the_version_dir_is_refused(store: ModelStore) -> None:
    _rewrite_manifest(store, "default", 1, model_file="../../clf/1/model.skops")
    with pytest.raises(ManifestError, match=r"model_file must be 'model\.skops'"):
        store.load("default", 1, LoadPolicy())


def test_other_sklearn_version_is_refused_unless_allowed(store: ModelStore) -> None:
    manifest = store.read_manifest("default", 1)
    runtime = manifest.runtime.model_dump() | {"sklearn": "0.24.2"}
    _rewrite_manifest(store, "default", 1, runtime=runtime)
    with pytest.raises(IncompatibleArtifactError, match=r"trained with scikit-learn 0\.24\.2"):
        store.load("default", 1, LoadPolicy())
    artifact = store.load("default", 1, LoadPolicy(allow_version_mismatch=True))
    assert artifact.manifest.runtime.sklearn == "0.24.2"


def test_skops_type_outside_the_allowlist_is_named(store: ModelStore) -> None:
    train(TrainConfig(name="forest", estimator="random-forest", samples=40, features=3), store)
    with pytest.raises(UntrustedTypeError, match=r"sklearn\.tree\._tree\.Tree") as info:
        store.load("forest", 1, LoadPolicy(trusted_types=()))
    assert info.value.types == ("sklearn.tree._tree.Tree",)
    artifact = store.load("forest", 1, LoadPolicy(trusted_types=("sklearn.tree._tree.Tree",)))
    assert artifact.manifest.estimator.class_name.endswith("RandomForestRegressor")


def test_garbage_with_a_matching_hash_is_a_typed_error(store: ModelStore) -> None:
    path = store.version_dir("default", 1) / "model.skops"
    garbage = b"this is not a zip file"
    path.write_bytes(garbage)
    _rewrite_manifest(store, "default", 1, sha256=sha256_hex(garbage), size_bytes=len(garbage))
    with pytest.raises(DeserializationError, match="not a readable skops file"):
        store.load("default", 1, LoadPolicy())


def test_pickle_is_refused_unless_allowed(store: ModelStore) -> None:
    train(TrainConfig(name="legacy", samples=40, features=3, format="pickle"), store)
    with pytest.raises(PickleNotAllowedError, match="pickle loading is off"):
        store.load("legacy", 1, LoadPolicy())
    artifact = store.load("legacy", 1, LoadPolicy(allow_pickle=True))
    assert artifact.manifest.format == "pickle"
    assert artifact.estimator.n_features_in_ == 3


def plant_malicious_pickle(store: ModelStore, marker: Path, *, matching_hash: bool) -> None:
    """Put an exploit pickle in the store as `evil` v1, beside a copied manifest."""
    train(TrainConfig(name="evil", samples=40, features=3, format="pickle"), store)
    path = store.version_dir("evil", 1) / "model.pkl"
    payload = pickle.dumps(Exploit(marker))
    path.write_bytes(payload)
    if matching_hash:
        _rewrite_manifest(store, "evil", 1, sha256=sha256_hex(payload), size_bytes=len(payload))


def test_malicious_pickle_with_wrong_hash_never_runs(store: ModelStore, tmp_path: Path) -> None:
    marker = tmp_path / MARKER_NAME
    plant_malicious_pickle(store, marker, matching_hash=False)
    with pytest.raises(IntegrityError, match="does not match its manifest"):
        store.load("evil", 1, LoadPolicy(allow_pickle=True))
    assert not marker.exists()


def test_malicious_pickle_never_runs_while_pickle_is_off(store: ModelStore, tmp_path: Path) -> None:
    marker = tmp_path / MARKER_NAME
    plant_malicious_pickle(store, marker, matching_hash=True)
    with pytest.raises(PickleNotAllowedError):
        store.load("evil", 1, LoadPolicy())
    assert not marker.exists()


def test_the_exploit_is_real(tmp_path: Path) -> None:
    # Guards the two tests above: unpickling the payload directly does write the marker.
    marker = tmp_path / MARKER_NAME
    pickle.loads(pickle.dumps(Exploit(marker)))
    assert marker.exists()


def test_manifest_round_trips_through_json(store: ModelStore) -> None:
    manifest = store.read_manifest("clf", 1)
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest
    assert manifest.task == "classification"
    assert manifest.output.classes == [0, 1]


# -- deferred loads: a linear model served from its verified linear form -----------------------


def test_training_publishes_the_linear_form_of_linear_models_only(store: ModelStore) -> None:
    linear = store.load("default", 1, LoadPolicy())
    assert LINEAR_FILE in linear.manifest.attachments
    form = json.loads((store.version_dir("default", 1) / LINEAR_FILE).read_bytes())
    assert form == {
        "coef": linear.estimator.coef_.tolist(),
        "intercept": float(linear.estimator.intercept_),
    }
    assert LINEAR_FILE not in store.load("clf", 1, LoadPolicy()).manifest.attachments


def test_a_deferred_load_verifies_everything_but_does_not_deserialize(store: ModelStore) -> None:
    full = store.load("default", 1, LoadPolicy())
    deferred = store.load("default", 1, LoadPolicy(), defer_estimator=True)
    assert deferred.estimator is None
    assert deferred.manifest == full.manifest
    assert deferred.linear is not None
    assert deferred.linear.coef == full.estimator.coef_.tolist()
    # A logistic regression has a compiled form instead: deferred too.
    clf = store.load("clf", 1, LoadPolicy(), defer_estimator=True)
    assert clf.estimator is None
    assert clf.compiled is not None


def test_a_model_without_a_lean_form_loads_its_estimator_even_when_deferred(
    store: ModelStore, tmp_path: Path
) -> None:
    path = tmp_path / "svr.skops"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    sio.dump(SVR().fit(X, X[:, 0]), path)
    sample = tmp_path / "sample.csv"
    sample.write_text("a,b,c\n" + "\n".join(",".join(map(str, row)) for row in X[:10]))
    import_model(path, "svr", store, sample=sample, trusted=(*DEFAULT_TRUSTED_TYPES, SVR_TYPE))
    artifact = store.load("svr", 1, LoadPolicy(trusted_types=(SVR_TYPE,)), defer_estimator=True)
    assert artifact.estimator is not None
    assert artifact.compiled is None
    assert artifact.manifest.compiled is not None
    assert artifact.manifest.compiled.reason == "no compiled form for SVR"


SVR_TYPE = "sklearn.svm._classes.SVR"


def test_a_deferred_load_still_refuses_a_changed_model_file(store: ModelStore) -> None:
    path = store.version_dir("default", 1) / "model.skops"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IntegrityError, match="does not match its manifest"):
        store.load("default", 1, LoadPolicy(), defer_estimator=True)


def test_a_deferred_load_refuses_a_changed_linear_form(store: ModelStore) -> None:
    path = store.version_dir("default", 1) / LINEAR_FILE
    form = json.loads(path.read_bytes())
    form["intercept"] += 1.0
    path.write_text(json.dumps(form))
    with pytest.raises(IntegrityError, match=r"linear\.json does not match its sha256"):
        store.load("default", 1, LoadPolicy(), defer_estimator=True)


def test_an_unusable_linear_form_falls_back_to_the_estimator(store: ModelStore) -> None:
    path = store.version_dir("default", 1) / LINEAR_FILE
    content = json.dumps({"coef": [1.0, 2.0], "intercept": 0.0}).encode()  # 2 of 10 features
    path.write_bytes(content)
    _rewrite_manifest(store, "default", 1, attachments={LINEAR_FILE: sha256_hex(content)})
    artifact = store.load("default", 1, LoadPolicy(), defer_estimator=True)
    assert artifact.estimator is not None
    assert artifact.linear is None


def _leftover(model_dir: Path, name: str, *, holder: bool) -> tuple[Path, subprocess.Popen[bytes]]:
    """A ``.tmp-*`` directory made by another process the store's way; killed unless ``holder``."""
    path = model_dir / f".tmp-{name}"
    code = (
        "import sys, time; from pathlib import Path; "
        "from modelserve.core.lifecycle import lock_directory; "
        "p = Path(sys.argv[1]); p.mkdir(); (p / 'model.skops').write_bytes(b'half'); "
        "lock_directory(p); print('held', flush=True); time.sleep(120)"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"held\n"
    if not holder:
        process.kill()  # as `kill -9` of a publish would
        process.wait()
    old = time.time() - STALE_SECONDS - 1
    os.utime(path, (old, old))
    return path, process


def test_what_killed_publishers_left_is_removed_and_live_ones_are_kept(store: ModelStore) -> None:
    model_dir = store.root / "default"
    killed, _ = _leftover(model_dir, "killed", holder=False)
    live, holder = _leftover(model_dir, "live", holder=True)
    fresh = model_dir / ".tmp-fresh"  # just made by a publisher about to lock it
    fresh.mkdir()
    try:
        train(TrainConfig(name="default", samples=50), store)
        assert not killed.exists()
        assert live.is_dir()
        assert fresh.is_dir()
        assert store.list_versions("default") == [1, 2]
    finally:
        holder.kill()
        holder.wait()


def test_serve_removes_what_killed_publishers_left_before_it_starts(
    store: ModelStore, tmp_path: Path
) -> None:
    killed, _ = _leftover(store.root / "clf", "killed", holder=False)
    port = free_port()
    with running_server(serve_command(store.root, port), port=port, log=tmp_path / "log"):
        assert not killed.exists()
