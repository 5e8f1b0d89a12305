"""The fast path changes how fast a good answer comes, never what any answer is."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from modelserve.core.settings import Settings
from modelserve.core.store import ModelStore
from modelserve.http.app import create_app
from modelserve.http.paths import HEALTH_PROBES
from modelserve.ops.observe import RequestInfo
from tests.helpers import ROW, assert_problem, free_port, running_server, serve_command
from tests.slow_model import FAILING_VALUE, FailingRegressor, publish_slow_model

V2 = {"inputs": [{"name": "input", "shape": [2, 10], "datatype": "FP64", "data": ROW * 2}]}
REQUESTS = [
    ("/predict", {"instances": [ROW, ROW]}),
    ("/v1/models/default/predict", {"instances": [ROW]}),
    ("/v1/models/default/versions/1/predict", {"instances": [ROW]}),
    ("/v1/models/clf/predict", {"instances": [[1, 2, 3, 4]]}),
    ("/v1/models/clf/predict", {"instances": [[1, 2, 3, 4]], "return_probabilities": True}),
    ("/v2/models/default/infer", V2),
    ("/v2/models/default/versions/1/infer", {**V2, "id": "7"}),
    (
        "/v2/models/clf/infer",
        {"inputs": [{"name": "i", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]},
    ),
    # tritonclient's default: the answer in binary after a JSON header.
    ("/v2/models/default/infer", {**V2, "parameters": {"binary_data_output": True}}),
    (
        "/v2/models/default/infer",
        {**V2, "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]},
    ),
    (
        "/v2/models/clf/infer",
        {
            "inputs": [{"name": "i", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
            "parameters": {"binary_data_output": True},
        },
    ),
    ("/predict", {"instances": [ROW[:3]]}),
    ("/predict", {"instances": []}),
    ("/v1/models/nope/predict", {"instances": [ROW]}),
    ("/v1/models/default/versions/9/predict", {"instances": [ROW]}),
    (
        "/v2/models/default/infer",
        {"inputs": [{"name": "x", "shape": [1, 9], "datatype": "FP64", "data": ROW[:9]}]},
    ),
]


@pytest.fixture
def both(store_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    fast = create_app(Settings(store=store_path))
    full = create_app(Settings(store=store_path, offload_body_bytes=0))  # nothing is small enough
    with TestClient(fast) as fast_client, TestClient(full) as full_client:
        yield fast_client, full_client


@pytest.mark.parametrize(("path", "body"), REQUESTS)
def test_answers_are_byte_for_byte_the_same(
    both: tuple[TestClient, TestClient], path: str, body: dict[str, object]
) -> None:
    fast, full = both
    a, b = fast.post(path, json=body), full.post(path, json=body)
    header = "inference-header-content-length"
    assert (a.status_code, a.headers["content-type"], a.headers.get(header), a.content) == (
        b.status_code,
        b.headers["content-type"],
        b.headers.get(header),
        b.content,
    )


# Versions are ASCII digits: an Arabic-Indic or a fullwidth one names no version either way.
ODD_VERSIONS = ["%D9%A1", "%EF%BC%91", "%C2%B9", "+1", "01", "1.0", "0"]


@pytest.mark.parametrize("version", ODD_VERSIONS)
def test_a_version_is_read_the_same_by_the_lane_and_the_app(live: str, version: str) -> None:
    for path, body in (
        (f"/v1/models/default/versions/{version}/predict", {"instances": [ROW]}),
        (f"/v2/models/default/versions/{version}/infer", V2),
    ):
        small = orjson.dumps(body)
        large = small[:-1] + b" " * 40_000 + b"}"  # past the lane: the app reads it
        lane, app = (
            httpx.post(live + path, content=content, headers={"content-type": "application/json"})
            for content in (small, large)
        )
        assert (lane.status_code, lane.json()) == (app.status_code, app.json()), path
        if version == "01":
            assert lane.status_code == 200
        else:
            assert lane.status_code in (404, 422), lane.text


def test_a_body_sent_in_chunks_is_read_whole(both: tuple[TestClient, TestClient]) -> None:
    fast, _ = both
    chunks = [b'{"instances": [', str(ROW).encode(), b"]}"]
    response = fast.post(
        "/predict", content=iter(chunks), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1


def test_an_inference_key_turns_the_fast_path_off(store_path: Path) -> None:
    settings = Settings(store=store_path, inference_api_key="k")
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict", json={"instances": [ROW]}).status_code == 401


def test_an_inference_key_or_tracing_leaves_no_lane_in_front(store_path: Path) -> None:
    assert create_app(Settings(store=store_path)).fast_lane is not None
    assert create_app(Settings(store=store_path, inference_api_key="k")).fast_lane is None
    assert create_app(Settings(store=store_path, tracing=True)).fast_lane is None


def no_lifespan(store_path: Path) -> tuple[TestClient, TestClient]:
    """Clients of an app with the lane and one without, neither with its lifespan run."""
    laned = create_app(Settings(store=store_path))
    plain = create_app(Settings(store=store_path))
    plain.fast_lane = None
    # No `with`: no lifespan, so no registry.
    return (
        TestClient(laned, raise_server_exceptions=False),
        TestClient(plain, raise_server_exceptions=False),
    )


def test_a_request_the_lane_fails_on_is_answered_by_the_app(store_path: Path) -> None:
    # Without the lifespan the lane has no registry: the request goes on to the app, which
    # answers it exactly as it does with no lane at all.
    a, b = (
        client.post("/predict", json={"instances": [ROW]}) for client in no_lifespan(store_path)
    )
    assert a.status_code == b.status_code == 500
    assert a.json() == b.json()
    assert a.json()["type"] == "urn:modelserve:problem:internal-error"


def test_a_model_failing_in_the_lane_is_answered_there_as_the_app_answers_it(
    store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Without micro-batching the lane predicts this model itself. Its RuntimeError is no
    # modelserve error: the lane renders the app's 500 and logs it with its traceback, once;
    # it neither swallows it nor replays the request into the app to fail a second time.
    publish_slow_model(store, "failing", delay=0.0, model_class=FailingRegressor)
    settings = Settings(store=store.root, allow_pickle=True, micro_batching=False)
    laned, plain = create_app(settings), create_app(settings)
    plain.fast_lane = None
    bad = {"instances": [[FAILING_VALUE, *ROW[1:]]]}
    with (
        TestClient(laned, raise_server_exceptions=False) as a,
        TestClient(plain, raise_server_exceptions=False) as b,
    ):
        assert laned.fast_lane is not None
        assert laned.fast_lane.registry is not None
        good = [
            client.post("/v1/models/failing/predict", json={"instances": [ROW]})
            for client in (a, b)
        ]
        assert good[0].status_code == good[1].status_code == 200
        assert good[0].json() == good[1].json()
        failed = []
        logged = []
        for client in (a, b):
            caplog.clear()
            with caplog.at_level(logging.DEBUG):
                failed.append(client.post("/v1/models/failing/predict", json=bad))
            logged.append([r for r in caplog.records if r.levelno >= logging.ERROR])
    assert failed[0].status_code == failed[1].status_code == 500
    assert_problem(failed[0], 500, "internal-error")
    assert failed[0].json() == failed[1].json()
    lane_log, app_log = logged
    assert [r.getMessage() for r in lane_log] == [
        "unhandled error on POST /v1/models/failing/predict"
    ]
    assert lane_log[0].exc_info is not None
    assert str(lane_log[0].exc_info[1]) == "the model failed"
    assert app_log[0].getMessage() == lane_log[0].getMessage()
    assert not [r for r in caplog.records if r.name == "modelserve.http.fastpath"]


def test_the_lane_sheds_load_at_the_shared_concurrency_limit(
    store: ModelStore, tmp_path: Path
) -> None:
    publish_slow_model(store, "slow", delay=1.5)
    port = free_port()
    command = serve_command(store.root, port, "--allow-pickle")
    env = {"MODELSERVE_MAX_CONCURRENT_REQUESTS": "1"}
    log = tmp_path / "server.log"
    with running_server(command, port=port, log=log, env=env) as base:
        slow = threading.Thread(
            target=httpx.post,
            args=(f"{base}/v1/models/slow/predict",),
            kwargs={"json": {"instances": [ROW]}, "timeout": 30},
        )
        slow.start()
        time.sleep(0.5)  # the one allowed request is inside the slow model
        shed = httpx.post(
            f"{base}/predict", json={"instances": [ROW]}, headers={"X-Request-ID": "s"}
        )
        slow.join()
        after = httpx.post(f"{base}/predict", json={"instances": [ROW]})
    assert_problem(shed, 503, "overloaded", detail_contains="busy with 1 requests")
    assert shed.headers["retry-after"] == "1"
    assert shed.headers["x-request-id"] == "s"
    assert after.status_code == 200
    assert len(after.json()["predictions"]) == 1
    assert after.headers["x-request-id"]


def test_the_lane_itself_answers_tritonclients_binary_outputs(
    both: tuple[TestClient, TestClient],
) -> None:
    fast, full = both
    lane = fast.app.fast_lane  # type: ignore[attr-defined]
    body = orjson.dumps({**V2, "parameters": {"binary_data_output": True}})
    target = lane.target("/v2/models/default/infer")
    info = RequestInfo("")
    assert lane.registry is fast.app.state.registry  # the lifespan gave the lane the models
    answered = lane.answer(lane.registry, body, target, info)
    assert answered is not None  # not handed on to the app
    answer, header_length = answered
    header = orjson.loads(answer[:header_length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 16}
    expected = full.post("/predict", json={"instances": [ROW, ROW]}).json()["predictions"]
    assert np.frombuffer(answer[header_length:], "<f8").tolist() == pytest.approx(expected)
    assert (info.api, info.rows) == ("v2", 2)


@pytest.fixture
def laned_and_plain(store_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    laned = create_app(Settings(store=store_path))
    plain = create_app(Settings(store=store_path))
    plain.fast_lane = None
    with TestClient(laned) as laned_client, TestClient(plain) as plain_client:
        yield laned_client, plain_client


@pytest.mark.parametrize("path", sorted(HEALTH_PROBES))
def test_probes_the_lane_answers_are_the_apps_answers(
    laned_and_plain: tuple[TestClient, TestClient], path: str
) -> None:
    laned, plain = laned_and_plain
    a, b = (client.get(path, headers={"X-Request-ID": "probe-1"}) for client in (laned, plain))
    assert a.status_code == 200
    assert (a.status_code, a.headers["content-type"], a.headers["x-request-id"], a.content) == (
        b.status_code,
        b.headers["content-type"],
        b.headers["x-request-id"],
        b.content,
    )
    assert a.headers["content-length"] == str(len(a.content))


def test_the_lane_answers_probes_of_a_ready_server_without_the_app(store_path: Path) -> None:
    async def unreachable(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError(f"{scope['path']} was handed on to the app")

    async def no_body() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    with TestClient(create_app(Settings(store=store_path))) as client:
        lane = client.app.fast_lane  # type: ignore[attr-defined]
        for path in sorted(HEALTH_PROBES):
            sent: list[Message] = []

            async def send(message: Message) -> None:
                sent.append(message)  # noqa: B023 - used before the loop moves on

            scope = {
                "type": "http",
                "method": "GET",
                "path": path,
                "headers": [],
                "app": client.app,
            }
            anyio.run(lane.probe, scope, no_body, send, unreachable)
            assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
            assert sent[0]["status"] == 200
            assert sent[1]["body"] == client.get(path).content


@pytest.mark.parametrize("path", sorted(HEALTH_PROBES))
def test_probes_before_the_lifespan_are_answered_by_the_app(store_path: Path, path: str) -> None:
    a, b = (client.get(path) for client in no_lifespan(store_path))
    assert (a.status_code, a.content) == (b.status_code, b.content)
