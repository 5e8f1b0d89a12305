"""Micro-batching: concurrent requests to one model share predict calls, answers unchanged."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelserve.core import batching
from modelserve.core.batch import Batch, checked
from modelserve.core.batching import Batchers, MicroBatcher
from modelserve.core.errors import InvalidInputError, UnsupportedOutputError
from modelserve.core.predictor import Predictor
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW, free_port, running_server, serve_command
from tests.ops.test_metrics import scrape, value
from tests.slow_model import publish_slow_model


@pytest.fixture(scope="module")
def forest_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("forest") / "models"
    store = ModelStore(root)
    train(TrainConfig(name="forest", estimator="random-forest", samples=200), store)
    config = TrainConfig(
        name="trees", estimator="random-forest-classifier", samples=200, features=4
    )
    train(config, store)
    train(TrainConfig(name="default", samples=100), store)
    return root


def predictor(store: Path, name: str) -> Predictor:
    return ModelRegistry(Settings(store=store)).load_predictor(name)


def batches(count: int, rows: int, features: int = 10, seed: int = 0) -> list[Batch]:
    rng = np.random.default_rng(seed)
    return [checked(rng.normal(size=(rows, features))) for _ in range(count)]


class Calls:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, predictor: Predictor, requests: int, rows: int) -> None:
        self.calls.append((requests, rows))


async def submit_all(batcher: MicroBatcher, work: list[Batch]) -> list[Any]:
    return await asyncio.gather(*(batcher.predict(b) for b in work))


def test_concurrent_requests_share_one_call_and_get_their_own_rows(forest_store: Path) -> None:
    forest = predictor(forest_store, "forest")
    calls = Calls()
    batcher = MicroBatcher(forest, max_rows=1024, observe=calls)
    work = batches(20, 1) + batches(5, 7, seed=1)
    results = asyncio.run(submit_all(batcher, work))
    assert calls.calls == [(25, 55)]  # every request was queued before the first call ran
    for batch, result in zip(work, results, strict=True):
        np.testing.assert_array_equal(result.predictions, forest.predict_batch(batch).predictions)
        assert result.probabilities is None


def test_a_call_never_exceeds_max_rows(forest_store: Path) -> None:
    calls = Calls()
    forest = predictor(forest_store, "forest")  # callers hold the version while it predicts
    batcher = MicroBatcher(forest, max_rows=10, observe=calls)
    asyncio.run(submit_all(batcher, batches(20, 3)))
    assert all(rows <= 10 for _, rows in calls.calls)
    assert sum(rows for _, rows in calls.calls) == 60
    assert sum(requests for requests, _ in calls.calls) == 20
    assert len(calls.calls) == 7  # three 3-row requests per call, the last one alone


def test_a_batch_of_max_rows_or_more_runs_alone(forest_store: Path) -> None:
    calls = Calls()
    forest = predictor(forest_store, "forest")  # callers hold the version while it predicts
    batcher = MicroBatcher(forest, max_rows=10, observe=calls)
    (result,) = asyncio.run(submit_all(batcher, batches(1, 25)))
    assert len(result.predictions) == 25
    assert calls.calls == [(1, 25)]


def test_probabilities_go_only_to_the_requests_that_asked(forest_store: Path) -> None:
    trees = predictor(forest_store, "trees")
    batcher = MicroBatcher(trees, max_rows=1024)
    rng = np.random.default_rng(3)
    work = [checked(rng.normal(size=(2, 4)), return_probabilities=i % 2 == 0) for i in range(6)]
    results = asyncio.run(submit_all(batcher, work))
    for batch, result in zip(work, results, strict=True):
        alone = trees.predict_batch(batch)
        np.testing.assert_array_equal(result.predictions, alone.predictions)
        if batch.return_probabilities:
            np.testing.assert_allclose(result.probabilities, alone.probabilities)
            assert result.classes == alone.classes
        else:
            assert result.probabilities is None
            assert result.classes is None


def test_a_request_whose_prediction_overflows_fails_alone(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    publish_slow_model(store, "plain", delay=0.0)  # linear math through predict: batched
    plain = ModelRegistry(Settings(store=store.root, allow_pickle=True)).load_predictor("plain")
    assert plain.batchable
    calls = Calls()
    batcher = MicroBatcher(plain, max_rows=1024, observe=calls)
    good = batches(2, 2)
    huge = checked(np.array([ROW, [1e308] * 10]))  # finite input, infinite prediction

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            *(batcher.predict(b) for b in [good[0], huge, good[1]]), return_exceptions=True
        )

    first, error, second = asyncio.run(scenario())
    assert calls.calls == [(3, 6)]  # one merged call
    assert isinstance(error, InvalidInputError)
    assert error.code == "prediction-not-finite"
    assert [p.loc for p in error.problems] == [("instances", 1)]  # the request's own row
    for batch, result in ((good[0], first), (good[1], second)):
        # Same math, another matrix size: BLAS may sum in another order.
        np.testing.assert_allclose(
            result.predictions, plain.predict_batch(batch).predictions, rtol=1e-12
        )


def test_a_bad_request_fails_alone(forest_store: Path) -> None:
    forest = predictor(forest_store, "forest")
    batcher = MicroBatcher(forest, max_rows=1024)

    async def scenario() -> list[Any]:
        good = batches(3, 1)
        bad = checked(good[0].rows, return_probabilities=True)  # a regressor
        return await asyncio.gather(
            *(batcher.predict(b) for b in [good[0], bad, good[1], good[2]]),
            return_exceptions=True,
        )

    results = asyncio.run(scenario())
    assert isinstance(results[1], UnsupportedOutputError)
    assert all(len(r.predictions) == 1 for i, r in enumerate(results) if i != 1)


def test_a_failing_call_fails_each_request_in_it(
    forest_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forest = predictor(forest_store, "forest")

    def broken(batch: Batch) -> Any:
        raise ValueError("the estimator broke")

    monkeypatch.setattr(forest, "predict_unchecked", broken)
    batcher = MicroBatcher(forest, max_rows=1024)

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            *(batcher.predict(b) for b in batches(4, 1)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, ValueError) and "broke" in str(r) for r in results)


def test_a_request_given_up_before_its_call_is_not_predicted(forest_store: Path) -> None:
    calls = Calls()
    forest = predictor(forest_store, "forest")
    batcher = MicroBatcher(forest, max_rows=1024, observe=calls)

    async def scenario() -> None:
        tasks = [asyncio.create_task(batcher.predict(b)) for b in batches(5, 2)]
        await asyncio.sleep(0)  # all five queued
        tasks[2].cancel()  # its client's deadline passed
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    assert calls.calls == [(4, 8)]


def test_which_models_are_batched(forest_store: Path) -> None:
    forest, linear = predictor(forest_store, "forest"), predictor(forest_store, "default")
    on = Batchers(enabled=True, max_rows=64, max_wait=0.0, observe=None)
    assert linear.batchable is False
    assert on.get(linear) is None  # X @ coef + b: merging would only add latency
    assert on.get(forest) is on.get(forest)
    assert Batchers(enabled=False, max_rows=64, max_wait=0.0, observe=None).get(forest) is None
    # A version swapped out takes its batcher with it.
    del forest
    gc.collect()
    assert len(on) == 0


def test_max_wait_merges_requests_that_arrive_a_little_apart(forest_store: Path) -> None:
    calls = Calls()
    forest = predictor(forest_store, "forest")
    batcher = MicroBatcher(forest, max_rows=1024, max_wait=0.2, observe=calls)

    async def scenario() -> None:
        first = asyncio.create_task(batcher.predict(batches(1, 1)[0]))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(batcher.predict(batches(1, 1, seed=5)[0]))
        await asyncio.gather(first, second)

    asyncio.run(scenario())
    assert calls.calls == [(2, 2)]


def _slow(tmp_path: Path, delay: float) -> Predictor:
    store = ModelStore(tmp_path / "models")
    publish_slow_model(store, "slow", delay=delay)
    return ModelRegistry(Settings(store=store.root, allow_pickle=True)).load_predictor("slow")


def test_the_last_calls_clients_are_gathered_into_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight clients, each sending its next request 0-7 ms after its answer: without waiting
    they would split into groups taking turns; the batcher waits (here up to half its last
    call, 25 ms) until the eight are back, so each call after the first holds all of them."""
    monkeypatch.setattr(batching, "GATHER_LIMIT", 1.0)
    calls = Calls()
    slow = _slow(tmp_path, 0.05)  # the batcher holds it weakly
    batcher = MicroBatcher(slow, max_rows=1024, observe=calls)

    async def client(i: int) -> None:
        for turn in range(5):
            await asyncio.sleep(0.001 * i)
            await batcher.predict(batches(1, 1, seed=10 * i + turn)[0])

    async def scenario() -> None:
        await asyncio.gather(*(client(i) for i in range(8)))

    asyncio.run(scenario())
    held = [requests for requests, _ in calls.calls]
    assert sum(held) == 40
    assert held[0] == 1  # a lone first request is not kept waiting
    assert held[1:-1] == [8] * (len(held) - 2), held
    assert batcher.in_play == 7  # the last call found none waiting: the count falls


def test_a_lone_client_is_not_kept_waiting_for_a_crowd_that_left(tmp_path: Path) -> None:
    calls = Calls()
    slow = _slow(tmp_path, 0.01)  # the batcher holds it weakly
    batcher = MicroBatcher(slow, max_rows=1024, observe=calls)

    async def scenario() -> list[int]:
        await submit_all(batcher, batches(8, 1))  # eight at once: one call of eight
        seen = [batcher.in_play]
        for seed in range(10):  # then one client alone
            await batcher.predict(batches(1, 1, seed=seed)[0])
            seen.append(batcher.in_play)
        return seen

    seen = asyncio.run(scenario())
    assert calls.calls[0] == (8, 8)
    assert seen == [8, 7, 6, 5, 4, 3, 2, 1, 1, 1, 1]  # one fewer each call, down to itself


def test_gathering_stops_once_a_call_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a call of eight, the batcher waits for eight again (here up to half its 1 s call);
    two five-row requests fill a call of ten rows, and the second one ends the wait."""
    monkeypatch.setattr(batching, "GATHER_LIMIT", 10.0)
    calls = Calls()
    slow = _slow(tmp_path, 1.0)  # the batcher holds it weakly
    batcher = MicroBatcher(slow, max_rows=10, observe=calls)

    async def scenario() -> float:
        await submit_all(batcher, batches(8, 1))
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.create_task(batcher.predict(batches(1, 5, seed=1)[0]))
        await asyncio.sleep(0.02)
        await asyncio.gather(first, batcher.predict(batches(1, 5, seed=2)[0]))
        return loop.time() - started

    took = asyncio.run(scenario())
    assert calls.calls == [(8, 8), (2, 10)]
    assert took < 1.3  # one 1 s call, not that and the 0.5 s the wait could have lasted


def test_a_compiled_form_merges_without_waiting(forest_store: Path) -> None:
    forest = predictor(forest_store, "forest")
    assert forest.merges_inline
    batcher = MicroBatcher(forest, max_rows=1024)

    async def scenario() -> None:
        await submit_all(batcher, batches(8, 1))
        for seed in range(3):
            await batcher.predict(batches(1, 1, seed=seed)[0])

    asyncio.run(scenario())
    assert batcher.in_play == 5  # counted, but a call on the loop never waits for them


def _fire(base: str, count: int) -> list[httpx.Response]:
    responses: list[httpx.Response] = [None] * count  # type: ignore[list-item]

    def one(i: int) -> None:
        row = [float(i), *ROW[1:]]
        responses[i] = httpx.post(
            f"{base}/v1/models/slow/predict", json={"instances": [row]}, timeout=30
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.parametrize("batching", [True, False])
def test_a_real_server_merges_concurrent_requests(tmp_path: Path, batching: bool) -> None:
    """16 clients at once on a model whose predict takes 0.3 s: few calls with batching."""
    store = ModelStore(tmp_path / "models")
    publish_slow_model(store, "slow", delay=0.3)
    inner = store.load("slow", 1, LoadPolicy(allow_pickle=True))
    port = free_port()
    flags = ["--allow-pickle", "--log-level", "warning"]
    env = {"MODELSERVE_MICRO_BATCHING": str(batching).lower()}
    command = serve_command(store.root, port, *flags)
    with running_server(command, port=port, log=tmp_path / "s.log", env=env) as base:
        responses = _fire(base, 16)
        samples = scrape(httpx.get(base + "/metrics").text)
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        expected = inner.estimator.inner.predict(np.array([[float(i), *ROW[1:]]]))
        np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-9)
    calls = value(samples, "modelserve_batch_requests_count", model="slow", version="1")
    merged = value(samples, "modelserve_batch_requests_sum", model="slow", version="1")
    if batching:
        assert merged == 16
        assert 1 < calls <= 4, calls  # the first request alone, the rest in a few calls
    else:
        assert (calls, merged) == (0, 0)  # one predict per request, no batch metrics
