"""A version published with ``compiled.bin``: loaded, checked, served, and refused when wrong."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from modelserve.core.batch import checked
from modelserve.core.batching import MicroBatcher
from modelserve.core.compiled.verify import MEASURED_SIZES
from modelserve.core.errors import InvalidInputError
from modelserve.core.manifest import COMPILED_FILE
from modelserve.core.predictor import Predictor
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import DEFAULT_TRUSTED_TYPES, Settings
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.training.train import TrainConfig, train

POLICY = LoadPolicy(trusted_types=DEFAULT_TRUSTED_TYPES)
ROWS = np.random.default_rng(3).normal(scale=2.0, size=(64, 4))


@pytest.fixture
def store_copy(trees_store: Path, tmp_path: Path) -> ModelStore:
    shutil.copytree(trees_store, tmp_path / "models")
    return ModelStore(tmp_path / "models")


def _deferred(store: ModelStore, name: str, version: int | None = None) -> Predictor:
    artifact = store.load(name, version, POLICY, defer_estimator=True)
    return Predictor(
        artifact,
        max_rows=10_000,
        load_estimator=lambda: store.load(name, artifact.manifest.version, POLICY),
    )


@pytest.mark.parametrize("name", ["forest", "boost", "hist"])
def test_a_tree_ensemble_is_published_with_a_verified_form(trees_store: Path, name: str) -> None:
    manifest = ModelStore(trees_store).read_manifest(name, None)
    assert COMPILED_FILE in manifest.attachments
    assert manifest.compiled is not None
    assert manifest.compiled.verified
    assert manifest.compiled.rows_checked > 60  # the held-out rows and the stress rows


@pytest.mark.parametrize("name", ["forest", "boost", "hist"])
def test_the_form_serves_before_the_estimator_loads_and_answers_as_it(
    trees_store: Path, name: str
) -> None:
    store = ModelStore(trees_store)
    predictor = _deferred(store, name)
    assert not predictor.confirmed
    assert predictor.engine == "compiled"
    classifier = predictor.is_classifier
    served = predictor.predict(ROWS, return_probabilities=classifier)
    assert not predictor.confirmed  # answered without scikit-learn's estimator
    predictor.confirm()
    assert predictor.settled
    estimator = predictor.estimator
    assert np.array_equal(served.predictions, estimator.predict(ROWS))
    if classifier:
        assert np.array_equal(served.probabilities, estimator.predict_proba(ROWS))
    assert predictor.engine == "compiled"
    assert predictor.compiled_reason is None


def test_a_tampered_form_is_refused_by_its_hash_and_the_estimator_serves(
    store_copy: ModelStore,
) -> None:
    path = store_copy.version_dir("forest", 1) / COMPILED_FILE
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x01  # one bit of one leaf value
    path.write_bytes(bytes(data))
    predictor = _deferred(store_copy, "forest")
    assert predictor.confirmed  # the estimator was loaded at once instead
    assert predictor.engine == "scikit-learn"
    assert predictor.compiled_reason is not None
    assert predictor.compiled_reason.startswith(f"{COMPILED_FILE} is not used: forest v1:")
    assert predictor.compiled_reason.endswith("does not match its sha256 in the manifest")
    result = predictor.predict(ROWS)
    assert np.array_equal(result.predictions, predictor.estimator.predict(ROWS))


def test_a_form_that_disagrees_with_its_estimator_is_dropped_at_confirm(
    store_copy: ModelStore,
) -> None:
    # A form that the manifest vouches for but that answers differently: published by a
    # broken (or hostile) publisher. Here: the form of another version of the model.
    other = train(
        TrainConfig(name="forest", estimator="random-forest", samples=300, features=4, seed=7),
        store_copy,
    ).manifest
    first = store_copy.version_dir("forest", 1)
    second = store_copy.version_dir("forest", other.version)
    shutil.copy(second / COMPILED_FILE, first / COMPILED_FILE)
    manifest_path = first / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["attachments"][COMPILED_FILE] = other.attachments[COMPILED_FILE]
    manifest_path.write_text(json.dumps(manifest))

    predictor = _deferred(store_copy, "forest", 1)
    assert predictor.engine == "compiled"  # the hash matches: served until checked
    predictor.confirm()
    assert predictor.engine == "scikit-learn"
    assert predictor.compiled_reason is not None
    assert predictor.compiled_reason.startswith(
        "the compiled form disagrees with the estimator on "
    )
    result = predictor.predict(ROWS)
    assert np.array_equal(result.predictions, predictor.estimator.predict(ROWS))


def test_a_form_is_checked_at_once_when_the_estimator_is_loaded_with_it(
    trees_store: Path,
) -> None:
    artifact = ModelStore(trees_store).load("boost", None, POLICY)
    predictor = Predictor(artifact, max_rows=100)
    assert predictor.engine == "compiled"
    result = predictor.predict(ROWS[:3], return_probabilities=True)
    assert np.array_equal(result.probabilities, artifact.estimator.predict_proba(ROWS[:3]))


def test_the_batch_sizes_it_serves_are_measured_against_the_estimator(
    trees_store: Path,
) -> None:
    predictor = _deferred(ModelStore(trees_store), "hist")
    predictor.confirm()
    limit = predictor.compiled_up_to
    assert limit is None or limit in (0, *MEASURED_SIZES)
    big = np.random.default_rng(0).normal(size=(3000, 4))
    # Whichever engine answers a batch, the answer is the estimator's.
    assert np.array_equal(predictor.predict(big).predictions, predictor.estimator.predict(big))


@pytest.mark.parametrize("name", ["forest", "boost"])
def test_a_number_float32_cannot_hold_is_refused_not_answered(trees_store: Path, name: str) -> None:
    predictor = _deferred(ModelStore(trees_store), name)
    with pytest.raises(InvalidInputError) as caught:
        predictor.predict([[0.0, 1e300, 0.0, 0.0], [0.0, 0.0, -1e39, 0.0]])
    assert caught.value.message.startswith("2 problems in the request: row 0: x1 = 1e+300 is")
    assert [(p.loc, p.type) for p in caught.value.problems] == [
        (("instances", 0, "x1"), "out-of-range"),
        (("instances", 1, "x2"), "out-of-range"),
    ]
    assert "beyond the float32 range (±3.403e+38)" in caught.value.problems[0].msg


def test_hist_gradient_boosting_takes_any_finite_number(trees_store: Path) -> None:
    predictor = _deferred(ModelStore(trees_store), "hist")
    rows = [[0.0, 1e300, 0.0, -1e300]]
    served = predictor.predict(rows).predictions
    assert np.array_equal(served, predictor.estimator.predict(np.array(rows)))


def test_compiled_forms_switched_off_serve_every_version_with_scikit_learn(
    trees_store: Path,
) -> None:
    registry = ModelRegistry(Settings(store=trees_store, compiled_forms=False))
    predictor = registry.load_predictor("forest", defer=True)
    assert predictor.confirmed  # nothing to serve from before the estimator loads
    assert predictor.engine == "scikit-learn"
    assert predictor.compiled_reason == (
        "compiled forms are switched off (MODELSERVE_COMPILED_FORMS=false)"
    )
    on = ModelRegistry(Settings(store=trees_store)).load_predictor("forest", defer=True)
    assert on.engine == "compiled"
    assert np.array_equal(predictor.predict(ROWS).predictions, on.predict(ROWS).predictions)


def test_concurrent_requests_to_a_compiled_form_merge_on_the_event_loop(
    trees_store: Path,
) -> None:
    predictor = _deferred(ModelStore(trees_store), "boost")
    calls: list[tuple[int, int, int]] = []  # (thread, requests, rows)
    batcher = MicroBatcher(
        predictor,
        max_rows=1024,
        observe=lambda _, requests, rows: calls.append((threading.get_ident(), requests, rows)),
    )
    rows = [ROWS[i : i + 1] for i in range(20)]

    async def main() -> list[np.ndarray]:
        loop_thread = threading.get_ident()
        answers = await asyncio.gather(
            *(batcher.predict(checked(row, return_probabilities=True)) for row in rows)
        )
        assert {thread for thread, _, _ in calls} == {loop_thread}
        return [a.probabilities for a in answers if a.probabilities is not None]

    probabilities = asyncio.run(main())
    assert predictor.merges_inline
    assert calls == [(calls[0][0], 20, 20)]  # one call, on the loop's own thread
    assert len(probabilities) == 20
    for row, answer in zip(rows, probabilities, strict=True):
        assert np.array_equal(
            answer, predictor.predict(row, return_probabilities=True).probabilities
        )
