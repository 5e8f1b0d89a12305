from __future__ import annotations

import pytest

from modelserve.errors import ModelNotFoundError, ModelUnavailableError, VersionNotFoundError
from modelserve.registry import ModelRegistry
from modelserve.settings import Settings
from modelserve.store import ModelStore
from modelserve.train_model import TrainConfig, train


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
    assert "does not match its manifest" in state.failed[2]
    assert registry.get("default").version == 1
    with pytest.raises(ModelUnavailableError, match="version 2 is not served: default v2"):
        registry.get("default", 2)


def test_a_model_with_no_good_version_is_unavailable(store: ModelStore, settings: Settings) -> None:
    _corrupt(store, "clf", 1)
    registry = ModelRegistry(settings)
    registry.load_all()
    with pytest.raises(ModelUnavailableError, match="has no version that passed verification"):
        registry.get("clf")
    assert registry.ready  # `default` still serves


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
