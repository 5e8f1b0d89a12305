"""A real server answers tree ensembles from their compiled forms, exactly as scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient

from modelserve.core.compiled.verify import MEASURED_SIZES
from modelserve.core.settings import DEFAULT_TRUSTED_TYPES, Settings
from modelserve.core.store import LoadPolicy, ModelStore
from modelserve.http.app import create_app
from modelserve.training.train import TrainConfig, train
from tests.helpers import PENGUIN, Server, free_port, running_server, serve_command

ROWS = np.random.default_rng(11).normal(scale=2.0, size=(40, 4))


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compiled") / "server.log"


@pytest.fixture(scope="module")
def server(trees_store: Path, server_log: Path) -> Iterator[Server]:
    port = free_port()
    with running_server(serve_command(trees_store, port), port=port, log=server_log) as base:
        yield base


@pytest.fixture(scope="module")
def estimators(trees_store: Path) -> dict[str, Any]:
    store = ModelStore(trees_store)
    policy = LoadPolicy(trusted_types=DEFAULT_TRUSTED_TYPES)
    return {name: store.load(name, None, policy).estimator for name in ("forest", "boost", "hist")}


@pytest.mark.parametrize("name", ["forest", "boost", "hist"])
def test_native_answers_equal_scikit_learn(
    server: Server, estimators: dict[str, Any], name: str
) -> None:
    estimator = estimators[name]
    classifier = name == "boost"
    response = httpx.post(
        f"{server}/v1/models/{name}/predict",
        json={"instances": ROWS.tolist(), "return_probabilities": classifier},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == estimator.predict(ROWS).tolist()
    if classifier:
        assert body["probabilities"] == estimator.predict_proba(ROWS).tolist()
    for row in ROWS[:5]:  # one row a request, as most clients send them
        one = httpx.post(f"{server}/v1/models/{name}/predict", json={"instances": [row.tolist()]})
        assert one.json()["predictions"] == estimator.predict(row[np.newaxis]).tolist()


@pytest.mark.parametrize("binary", [False, True])
def test_v2_answers_equal_scikit_learn(
    server: Server, estimators: dict[str, Any], binary: bool
) -> None:
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    for name in ("forest", "boost"):
        data = triton.InferInput("input-0", list(ROWS.shape), "FP64")
        data.set_data_from_numpy(ROWS, binary_data=binary)
        outputs = [triton.InferRequestedOutput("predict", binary_data=binary)]
        if name == "boost":
            outputs.append(triton.InferRequestedOutput("predict_proba", binary_data=binary))
        result = client.infer(name, [data], outputs=outputs)
        assert np.array_equal(result.as_numpy("predict"), estimators[name].predict(ROWS))
        if name == "boost":
            proba = result.as_numpy("predict_proba")
            assert np.array_equal(proba, estimators[name].predict_proba(ROWS))


def test_the_model_detail_says_the_compiled_form_serves(server: Server, server_log: Path) -> None:
    deadline = time.monotonic() + 60
    while server_log.read_text().count("against its estimator") < 3:
        assert time.monotonic() < deadline, server_log.read_text()[-3000:]
        time.sleep(0.1)
    for name in ("forest", "boost", "hist"):
        engine = httpx.get(f"{server}/v1/models/{name}").json()["versions"][0]["engine"]
        assert engine["name"] == "compiled"
        assert engine["not_compiled"] is None
        limit = engine["compiled_up_to_rows"]
        assert limit is None or limit in (0, *MEASURED_SIZES)


def test_a_number_float32_cannot_hold_is_a_422(server: Server) -> None:
    response = httpx.post(
        f"{server}/v1/models/forest/predict", json={"instances": [[0.0, 1e300, 0.0, 0.0]]}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith(":out-of-range")
    assert body["errors"] == [
        {
            "loc": ["instances", 0, "x1"],
            "msg": "row 0: x1 = 1e+300 is beyond the float32 range (±3.403e+38) in which "
            "model 'forest' v1 compares its inputs",
            "type": "out-of-range",
        }
    ]


def test_the_cli_answers_equal_scikit_learn(trees_store: Path, estimators: dict[str, Any]) -> None:
    for name in ("forest", "boost"):
        done = subprocess.run(
            [sys.executable, "-m", "modelserve", "predict", "--store", str(trees_store),
             "--model", name, *(["--probabilities"] if name == "boost" else [])],
            input=json.dumps(ROWS.tolist()), capture_output=True, text=True, check=True,
        )  # fmt: skip
        body = json.loads(done.stdout)
        assert body["predictions"] == estimators[name].predict(ROWS).tolist()
        if name == "boost":
            assert body["probabilities"] == estimators[name].predict_proba(ROWS).tolist()


@pytest.mark.parametrize("compiled_forms", [True, False], ids=["compiled", "scikit-learn"])
def test_a_pipeline_value_beyond_float32_once_preprocessed_is_a_422(
    tmp_path: Path, penguins_csv: Path, compiled_forms: bool
) -> None:
    """Either engine: the form refuses the row, and scikit-learn's failure (a 500 before) is
    explained by the same rows."""
    store = ModelStore(tmp_path / "models")
    train(
        TrainConfig(
            name="penguins-rf",
            estimator="random-forest-classifier",
            csv=penguins_csv,
            target="species",
        ),
        store,
    )
    app = create_app(Settings(store=store.root, compiled_forms=compiled_forms))
    row = {**PENGUIN, "body_mass_g": 1e300}
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/models/penguins-rf/predict", json={"instances": [PENGUIN, row]})
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "urn:modelserve:problem:out-of-range"
    assert body["errors"] == [
        {
            "loc": ["instances", 1],
            "msg": "row 1: a value is beyond the float32 range (±3.403e+38) once model "
            "'penguins-rf' v1 has preprocessed it, and its trees compare their inputs in float32",
            "type": "out-of-range",
        }
    ]
