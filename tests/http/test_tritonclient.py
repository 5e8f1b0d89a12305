"""tritonclient.http, unchanged and with its default settings, against a real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelserve.core.store import ModelStore
from modelserve.training.train import TrainConfig, train
from tests.helpers import ADMIN, ADMIN_KEY, free_port, running_server, serve_command


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("triton")
    store = ModelStore(root / "models")
    train(TrainConfig(name="default", samples=200), store)
    train(TrainConfig(name="default", samples=200, seed=9), store)
    train(TrainConfig(name="clf", estimator="logistic-regression", samples=200, features=4), store)
    port = free_port()
    command = serve_command(store.root, port)
    env = {"MODELSERVE_ADMIN_API_KEY": ADMIN_KEY}
    with running_server(
        command, port=port, log=root / "server.log", env=env, wait_for="/v2/health/ready"
    ):
        yield f"127.0.0.1:{port}", store.root


@pytest.fixture
def client(server: tuple[str, Path]) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server[0])
    yield client
    client.close()


def model(store: Path, name: str, version: int) -> object:
    return sio.load(store / name / str(version) / "model.skops")


def test_server_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "modelserve"
    assert "binary_tensor_data" in metadata["extensions"]
    assert client.is_model_ready("default")
    assert client.is_model_ready("default", "1")
    assert not client.is_model_ready("default", "7")
    assert not client.is_model_ready("nope")


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("default")
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 10]}]
    assert client.get_model_metadata("clf", "1")["outputs"][1]["shape"] == [-1, 2]


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.parametrize("binary", [True, False])
def test_infer_equals_the_model(
    client: triton.InferenceServerClient, server: tuple[str, Path], datatype: str, binary: bool
) -> None:
    x = np.random.default_rng(0).normal(size=(16, 10))
    sent = x.astype(np.float64 if datatype == "FP64" else np.float32)
    tensor = triton.InferInput("input", list(sent.shape), datatype)
    tensor.set_data_from_numpy(sent, binary_data=binary)
    outputs = None if binary else [triton.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer("default", [tensor], outputs=outputs, request_id="r-1")
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "default",
        "2",
        "r-1",
    )
    expected = model(server[1], "default", 2).predict(sent.astype(np.float64))  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.as_numpy("predict"), expected, rtol=0, atol=1e-9)


def test_explicit_version(client: triton.InferenceServerClient, server: tuple[str, Path]) -> None:
    x = np.ones((2, 10))
    tensor = triton.InferInput("input", [2, 10], "FP64")
    tensor.set_data_from_numpy(x)
    result = client.infer("default", [tensor], model_version="1")
    assert result.get_response()["model_version"] == "1"
    expected = model(server[1], "default", 1).predict(x)  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.as_numpy("predict"), expected, atol=1e-9)


def test_classifier_probabilities(
    client: triton.InferenceServerClient, server: tuple[str, Path]
) -> None:
    x = np.random.default_rng(1).normal(size=(5, 4))
    tensor = triton.InferInput("input", [5, 4], "FP64")
    tensor.set_data_from_numpy(x)
    result = client.infer("clf", [tensor])
    clf = model(server[1], "clf", 1)
    np.testing.assert_array_equal(result.as_numpy("predict"), clf.predict(x))  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.as_numpy("predict_proba"), clf.predict_proba(x), atol=1e-12)  # type: ignore[attr-defined]


def test_errors_raise_with_our_message(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input", [1, 9], "FP64")
    tensor.set_data_from_numpy(np.zeros((1, 9)))
    with pytest.raises(
        InferenceServerException, match="rows have 9 values but model 'default' v2 takes 10"
    ):
        client.infer("default", [tensor])
    with pytest.raises(InferenceServerException, match="model 'nope' is not served"):
        client.infer("nope", [tensor])
    strings = triton.InferInput("input", [1, 10], "BYTES")
    strings.set_data_from_numpy(np.array([[b"x"] * 10], dtype=np.object_))
    with pytest.raises(
        InferenceServerException,
        match="10 problems in the request: row 0, feature 'x0': expected a number, got string 'x'",
    ):
        client.infer("default", [strings])


def test_repository(client: triton.InferenceServerClient) -> None:
    index = client.get_model_repository_index(headers=ADMIN)
    assert {"name": "clf", "version": "1", "state": "READY", "reason": ""} in index
    client.unload_model("clf", headers=ADMIN)
    assert not client.is_model_ready("clf")
    client.load_model("clf", headers=ADMIN)
    assert client.is_model_ready("clf")
    with pytest.raises(InferenceServerException, match="model 'nope' is not in the store"):
        client.load_model("nope", headers=ADMIN)
    with pytest.raises(InferenceServerException, match="needs the admin API key"):
        client.unload_model("clf")
