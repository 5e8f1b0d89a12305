"""The fast path changes how fast a good answer comes, never what any answer is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelserve.main import create_app
from modelserve.settings import Settings
from tests.helpers import ROW

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
    assert (a.status_code, a.headers["content-type"], a.content) == (
        b.status_code,
        b.headers["content-type"],
        b.content,
    )


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
