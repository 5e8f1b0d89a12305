from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelserve.core.errors import ModelNotFoundError, ModelUnavailableError, VersionNotFoundError
from modelserve.core.manifest import LINEAR_FILE
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from modelserve.core.store import LoadPolicy, ModelStore, sha256_hex
from modelserve.training.train import TrainConfig, train


def _corrupt(store: ModelStore, name: str, version: int) -> None:
    path = store.version_dir(name, version) / "model.skops"
    path.write_bytes(path.read_bytes()[:-1])


def test_loads_every_version_and_defaults_to_the_newest(
    store: ModelStore, settings: Settings
) -> None:
    train(TrainConfig(name="default", samples=50, seed=1), store)
    registry = ModelRegistry(settings)
    registry.load_all()
    assert registry.loaded_versions() == {"clf": [1], "default": [1, 2]}
    assert registry.get("default").version == 2
    assert registry.get("default", 1).version == 1
    assert registry.ready


def test_a_refused_version_is_recorded_and_the_rest_still_serve(
    store: ModelStore, settings: Settings
) -> None:
    train(TrainConfig(name="default", samples=50, seed=1), store)
    _corrupt(store, "default", 2)
    registry = ModelRegistry(settings)
    registry.load_all()
    state = registry.state("default")
    assert sorted(state.loaded) == [1]
    assert "does not match its manifest" in state.failed[2].reason
    assert registry.get("default").version == 1
    with pytest.raises(ModelUnavailableError, match="version 2 is not served: default v2"):
        registry.get("default", 2)


def test_a_model_with_no_good_version_is_unavailable(
    store: ModelStore, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    _corrupt(store, "clf", 1)
    registry = ModelRegistry(settings)
    with caplog.at_level("ERROR", logger="modelserve.core.registry"):
        registry.load_all()
    with pytest.raises(ModelUnavailableError, match="has no version that passed verification"):
        registry.get("clf")
    assert registry.get("default").version == 1  # the other model still serves
    assert registry.ready  # ... and the server stays in rotation for it
    assert registry.unservable() == ["clf"]
    [record] = [r for r in caplog.records if "has no version that can be served" in r.message]
    assert record.levelname == "ERROR"
    assert record.getMessage().startswith("model clf has no version that can be served (clf v1:")
    assert record.getMessage().endswith("; the other models keep serving")


def test_strict_readiness_needs_every_model(store: ModelStore, settings: Settings) -> None:
    _corrupt(store, "clf", 1)
    registry = ModelRegistry(settings.model_copy(update={"strict_readiness": True}))
    registry.load_all()
    assert registry.get("default").version == 1
    assert not registry.ready  # a model to serve has no verified version
    assert registry.not_ready_reason() == "no verified version loaded for: clf"


def test_a_store_where_nothing_serves_is_not_ready(store: ModelStore, settings: Settings) -> None:
    _corrupt(store, "clf", 1)
    _corrupt(store, "default", 1)
    registry = ModelRegistry(settings)
    registry.load_all()
    assert not registry.ready
    assert registry.not_ready_reason() == "no verified version loaded for: clf, default"


def test_unknown_model_and_version(settings: Settings) -> None:
    registry = ModelRegistry(settings)
    registry.load_all()
    with pytest.raises(
        ModelNotFoundError, match=r"model 'nope' is not served \(models: clf, default\)"
    ):
        registry.get("nope")
    with pytest.raises(VersionNotFoundError, match=r"has no version 5 \(versions: 1\)"):
        registry.get("default", 5)


def test_empty_store_is_not_ready(tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = ModelRegistry(Settings(store=tmp_path))
    registry.load_all()
    assert not registry.ready
    assert registry.loaded_versions() == {}


def test_sync_picks_up_new_versions_and_keeps_loaded_ones(
    store: ModelStore, settings: Settings
) -> None:
    registry = ModelRegistry(settings)
    registry.load_all()
    first = registry.get("default")
    train(TrainConfig(name="default", samples=50, seed=5), store)
    train(TrainConfig(name="fresh", samples=50, features=2), store)
    registry.sync()
    assert registry.get("default").version == 2
    assert registry.get("default", 1) is first  # not reloaded
    assert registry.get("fresh").version == 1


def test_sync_drops_versions_removed_from_the_store(store: ModelStore, settings: Settings) -> None:
    train(TrainConfig(name="default", samples=50, seed=5), store)
    registry = ModelRegistry(settings)
    registry.load_all()
    shutil.rmtree(store.version_dir("default", 2))  # roll back by removing the newest
    registry.sync()
    assert registry.get("default").version == 1
    shutil.rmtree(store.root / "clf")
    registry.sync()
    assert "clf" not in registry.models
    assert registry.ready


def test_a_corrupt_new_version_never_replaces_the_good_one(
    store: ModelStore, settings: Settings
) -> None:
    registry = ModelRegistry(settings)
    registry.load_all()
    train(TrainConfig(name="default", samples=50, seed=5), store)
    _corrupt(store, "default", 2)
    registry.sync()
    assert registry.get("default").version == 1
    assert [(e.version, e.state) for e in registry.index() if e.name == "default"] == [
        (1, "READY"),
        (2, "UNAVAILABLE"),
    ]
    assert registry.ready


def test_a_refused_version_is_retried_only_when_its_files_change(
    store: ModelStore, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    registry = ModelRegistry(settings)
    registry.load_all()
    version_dir = store.root / "default" / "2"
    version_dir.mkdir()  # a hand-made version, copied in file by file: first the model file
    shutil.copy(store.version_dir("default", 1) / "model.skops", version_dir / "model.skops")
    registry.sync()
    assert "manifest.json is missing" in registry.state("default").failed[2].reason
    caplog.clear()
    registry.sync()
    assert "refused to load" not in caplog.text  # unchanged files: not tried again
    shutil.copy(store.version_dir("default", 1) / "manifest.json", version_dir / "manifest.json")
    registry.sync()
    # The copied manifest says version 1, so v2 is still refused, but it was retried.
    assert "describes 'default' v1" in registry.state("default").failed[2].reason
    assert registry.get("default").version == 1


def test_unload_and_load(store: ModelStore, settings: Settings) -> None:
    registry = ModelRegistry(settings)
    registry.load_all()
    registry.unload_model("clf")
    with pytest.raises(ModelNotFoundError, match="model 'clf' is unloaded"):
        registry.get("clf")
    registry.sync()  # the watcher does not bring an unloaded model back
    assert registry.models["clf"].unloaded
    assert registry.ready  # unloaded on purpose: not expected to serve
    assert next((e.name, e.state, e.reason) for e in registry.index()) == (
        "clf",
        "UNAVAILABLE",
        "unloaded",
    )
    state = registry.load_model("clf")
    assert sorted(state.loaded) == [1]
    assert registry.get("clf").version == 1


def test_load_errors(store: ModelStore, settings: Settings) -> None:
    registry = ModelRegistry(settings)
    registry.load_all()
    with pytest.raises(ModelNotFoundError, match="model 'nope' is not in the store"):
        registry.load_model("nope")
    with pytest.raises(ModelNotFoundError, match="model 'nope' is not served"):
        registry.unload_model("nope")
    _corrupt(store, "clf", 1)
    registry.unload_model("clf")
    with pytest.raises(ModelUnavailableError, match="model 'clf' could not be loaded: clf v1"):
        registry.load_model("clf")


def test_a_model_that_fails_its_smoke_test_is_refused(
    store: ModelStore, settings: Settings
) -> None:
    registry = ModelRegistry(settings)
    path = store.version_dir("default", 1) / "manifest.json"
    document = json.loads(path.read_text())
    document["output"]["dtype"] = "float64"
    document["task"] = "classification"  # a regressor posing as a classifier
    document["output"]["classes"] = [0, 1]
    path.write_text(json.dumps(document))
    registry.load_all()
    assert "trial prediction failed" in registry.state("default").failed[1].reason


# -- deferred estimators: serve linear models before scikit-learn is loaded --------------------


class _Refusals:
    def __init__(self) -> None:
        self.refused: list[tuple[str, int, str]] = []

    def version_loaded(self, name: str, version: int) -> None:
        pass

    def version_refused(self, name: str, version: int, reason: str) -> None:
        self.refused.append((name, version, reason))

    def published(self, models: object) -> None:
        pass


def _deferred(settings: Settings, events: _Refusals | None = None) -> ModelRegistry:
    registry = ModelRegistry(
        settings, events=events, defer_estimators=True, confirm_in_background=False
    )
    registry.load_all()
    return registry


def test_a_deferred_linear_model_answers_like_its_estimator_before_and_after_confirming(
    store: ModelStore, settings: Settings
) -> None:
    rows = np.random.default_rng(3).normal(scale=2.0, size=(50, 10))
    expected = store.load("default", 1, LoadPolicy()).estimator.predict(rows)
    registry = _deferred(settings)
    predictor = registry.get("default")
    assert not predictor.confirmed
    assert not registry.get("clf").confirmed  # a logistic regression: its compiled form serves
    assert registry.get("clf").engine == "compiled"
    assert registry.ready
    assert not registry.all_confirmed
    np.testing.assert_allclose(predictor.predict(rows).predictions, expected, rtol=0, atol=1e-9)
    registry.confirm_pending()
    assert predictor.confirmed
    assert registry.all_confirmed
    assert not predictor.batchable  # confirmed: the lean path stays
    np.testing.assert_allclose(predictor.predict(rows).predictions, expected, rtol=0, atol=1e-9)


def test_the_background_thread_confirms_every_deferred_version(
    store: ModelStore, settings: Settings
) -> None:
    train(TrainConfig(name="default", samples=50, seed=1), store)
    registry = ModelRegistry(settings, defer_estimators=True)
    registry.load_all()
    assert registry.wait_confirmed(timeout=60)
    assert all(registry.get("default", v).confirmed for v in (1, 2))


def test_a_version_whose_estimator_can_no_longer_load_keeps_its_verified_linear_form(
    store: ModelStore, settings: Settings
) -> None:
    rows = np.random.default_rng(5).normal(size=(4, 10))
    train(TrainConfig(name="default", samples=50, seed=1), store)
    expected = store.load("default", 2, LoadPolicy()).estimator.predict(rows)
    events = _Refusals()
    registry = _deferred(settings, events)
    predictor = registry.get("default")
    _corrupt(store, "default", 2)  # changed after the deferred load verified it
    registry.confirm_pending()
    assert not predictor.confirmed
    assert predictor.confirm_error is not None
    assert "does not match its manifest" in predictor.confirm_error
    assert registry.all_confirmed  # nothing left to try: no endless retry loop
    assert sorted(registry.state("default").loaded) == [1, 2]
    assert events.refused == []
    assert registry.get("default") is predictor
    np.testing.assert_allclose(predictor.predict(rows).predictions, expected, rtol=0, atol=1e-9)


def test_a_linear_form_that_disagrees_with_its_estimator_gives_way_to_the_estimator(
    store: ModelStore, settings: Settings
) -> None:
    directory = store.version_dir("default", 1)
    form = json.loads((directory / LINEAR_FILE).read_bytes())
    form["intercept"] += 1e-6
    content = json.dumps(form).encode()
    (directory / LINEAR_FILE).write_bytes(content)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["attachments"][LINEAR_FILE] = sha256_hex(content)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    rows = np.random.default_rng(4).normal(size=(5, 10))
    expected = store.load("default", 1, LoadPolicy()).estimator.predict(rows)
    registry = _deferred(settings)
    predictor = registry.get("default")
    registry.confirm_pending()
    assert predictor.confirmed
    np.testing.assert_allclose(predictor.predict(rows).predictions, expected, rtol=0, atol=1e-9)


def test_the_serve_path_loads_a_linear_model_without_importing_scikit_learn(
    store_path: Path,
) -> None:
    script = f"""
import sys
from modelserve import main
from modelserve import cli
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
registry = ModelRegistry(Settings(store={str(store_path)!r}), defer_estimators=True,
                         confirm_in_background=False)
registry.load_model("default")
print(registry.get("default").predict([[0.5] * 10]).predictions.tolist())
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"sklearn", "skops", "scipy"}}))
registry.confirm_pending()
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"sklearn", "skops"}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    answer, before, after = result.stdout.splitlines()
    expected = ModelStore(store_path).load("default", 1, LoadPolicy()).estimator
    np.testing.assert_allclose(json.loads(answer), expected.predict([[0.5] * 10]), atol=1e-9)
    assert before == "[]"
    assert after == "['sklearn', 'skops']"
