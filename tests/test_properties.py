"""Property tests: no input, however malformed, makes either API answer 5xx or non-JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelserve.core.settings import Settings
from modelserve.http.app import create_app
from tests.helpers import ROW

PATHS = [
    "/predict",
    "/v1/models/default/predict",
    "/v1/models/clf/predict",
    "/v1/models/default/versions/1/predict",
    "/v2/models/default/infer",
    "/v2/models/clf/infer",
    "/v2/models/default/versions/1/infer",
]
CONTENT_TYPES = [
    None,
    "application/json",
    "text/plain",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
]

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()  # NaN, ±Infinity, 1e308 included
    | st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0])
    | st.text(max_size=8)
)
documents = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=40,
)


def _dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN / Infinity literals on purpose


rows = st.lists(
    st.lists(leaves, min_size=0, max_size=12)
    | st.dictionaries(st.text(max_size=4), leaves, max_size=12),
    max_size=5,
)
tensors = st.fixed_dictionaries(
    {
        "name": st.text(max_size=4) | st.sampled_from(["input", "x0", "predict"]),
        "shape": st.lists(st.integers(-2, 12), max_size=3),
        "datatype": st.sampled_from(
            ["FP64", "FP32", "INT64", "INT32", "BYTES", "BOOL", "FP16", ""]
        ),
        "data": documents,
    }
)
bodies = st.one_of(
    documents.map(lambda d: _dumps({"instances": d})),
    rows.map(lambda r: _dumps({"instances": r, "return_probabilities": True})),
    st.lists(tensors, max_size=3).map(lambda t: _dumps({"inputs": t})),
    documents.map(_dumps),
    st.binary(max_size=200),
    st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 20_000).map(lambda n: b'{"instances":' * n),
    st.just(b'{"instances": [[1,2,3,4,5,6,7,8,9,10]], "instances": 5}'),
    st.text(max_size=5).map(lambda k: _dumps({"instances": [{k: 1.0, "x0": 1.0}]})),
    st.just(_dumps({"instances": [dict.fromkeys([f"é{i}" for i in range(10)], 1.0)]})),
)


@pytest.fixture(scope="module")
def client(template_store: Path) -> Iterator[TestClient]:
    settings_ = Settings(store=template_store, max_rows=50, poll_interval=0)
    with TestClient(create_app(settings_), raise_server_exceptions=False) as test_client:
        yield test_client


def _check(
    client: TestClient, path: str, body: bytes, content_type: str | None, headers: dict[str, str]
) -> None:
    if content_type is not None:
        headers = {**headers, "content-type": content_type}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code < 500, (path, body[:200], response.text)
    document = response.json()  # always valid JSON
    if response.status_code >= 400:
        if path.startswith("/v2/"):
            assert set(document) == {"error"}
            assert document["error"]
        else:
            assert response.headers["content-type"] == "application/problem+json"
            assert document["status"] == response.status_code
            assert document["detail"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_no_body_causes_a_5xx(
    client: TestClient, path: str, body: bytes, content_type: str | None
) -> None:
    _check(client, path, body, content_type, {})


@settings(max_examples=100, deadline=None)
@given(
    header=st.text(max_size=6) | st.integers(-5, 500).map(str),
    sizes=st.lists(st.integers(-5, 100) | st.text(max_size=3), min_size=1, max_size=2),
    binary=st.binary(max_size=120),
)
def test_no_binary_tensor_request_causes_a_5xx(
    client: TestClient, header: str, sizes: list[object], binary: bytes
) -> None:
    inputs = [
        {
            "name": "input",
            "shape": [1, 10],
            "datatype": "FP64",
            "parameters": {"binary_data_size": s},
        }
        for s in sizes
    ]
    head = _dumps({"inputs": inputs})
    _check(
        client,
        "/v2/models/default/infer",
        head + binary,
        "application/octet-stream",
        {"Inference-Header-Content-Length": header.encode("ascii", "ignore").decode() or "0"},
    )


def test_a_valid_request_still_works(client: TestClient) -> None:
    assert client.post("/predict", json={"instances": [ROW]}).status_code == 200
