"""Mixed-type models over the Open Inference Protocol, against a real server process: one
input per feature (BYTES, BOOL, INT*, FP*), JSON and binary, MLServer's and tritonclient's
requests, answers equal to the pipeline's own."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from tests.helpers import PENGUIN, free_port, running_server, serve_command

ROWS = [
    PENGUIN,
    {**PENGUIN, "island": "Dream", "sex": None, "bill_length_mm": None, "year": 2009},
    {**PENGUIN, "island": "Torgersen", "sex": "male", "body_mass_g": 3400.0, "year": 2007},
]
DATATYPES = {
    "island": "BYTES",
    "bill_length_mm": "FP64",
    "bill_depth_mm": "FP64",
    "flipper_length_mm": "FP64",
    "body_mass_g": "FP64",
    "sex": "BYTES",
    "year": "INT64",
}


@pytest.fixture(scope="module")
def base(tabular_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("tabular-v2") / "server.log"
    with running_server(serve_command(tabular_store, port), port=port, log=log) as url:
        yield url


@pytest.fixture(scope="module")
def expected(tabular_store: Path) -> dict[str, Any]:
    """What the fitted pipeline itself answers for ROWS."""
    pipeline = ModelRegistry(Settings(store=tabular_store)).load_predictor("penguins").estimator
    frame = pd.DataFrame(
        {
            name: pd.Series(
                [math.nan if row[name] is None else row[name] for row in ROWS],
                dtype=object if DATATYPES[name] == "BYTES" else None,
            )
            for name in DATATYPES
        }
    )
    return {
        "predict": pipeline.predict(frame).tolist(),
        "predict_proba": pipeline.predict_proba(frame),
    }


def _inputs(shape_one: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "shape": [len(ROWS), 1] if shape_one else [len(ROWS)],
            "datatype": datatype,
            "data": [row[name] for row in ROWS],
        }
        for name, datatype in DATATYPES.items()
    ]


def test_metadata_lists_one_input_per_feature_with_its_datatype(base: str) -> None:
    metadata = httpx.get(f"{base}/v2/models/penguins").json()
    assert metadata["inputs"] == [
        {"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in DATATYPES.items()
    ]
    assert metadata["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}


@pytest.mark.parametrize("shape_one", [False, True])
@pytest.mark.parametrize("content_type", [None, "pd"])
def test_json_columns_with_nulls_as_mlserver_and_kserve_send_them(
    base: str, expected: dict[str, Any], shape_one: bool, content_type: str | None
) -> None:
    inputs = _inputs(shape_one)
    body: dict[str, Any] = {"inputs": inputs}
    if content_type is not None:  # MLServer's pandas codec: request and per-input content types
        body["parameters"] = {"content_type": content_type}
        for tensor in inputs:
            if tensor["datatype"] == "BYTES":
                tensor["parameters"] = {"content_type": "str"}
    response = httpx.post(f"{base}/v2/models/penguins/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["predict"]["datatype"] == "BYTES"
    assert outputs["predict"]["data"] == expected["predict"]
    np.testing.assert_allclose(
        np.reshape(outputs["predict_proba"]["data"], (3, 3)), expected["predict_proba"], rtol=1e-12
    )


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_with_numpy_object_arrays_of_strings(
    base: str, expected: dict[str, Any], binary: bool
) -> None:
    complete = [row for row in ROWS if None not in row.values()]
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    try:
        tensors = []
        for name, datatype in DATATYPES.items():
            values = [row[name] for row in complete]
            array = (
                np.array(values, dtype=object)
                if datatype == "BYTES"
                else np.array(values, dtype=np.int64 if datatype == "INT64" else np.float64)
            )
            tensor = triton.InferInput(name, [len(complete)], datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            tensors.append(tensor)
        outputs = [triton.InferRequestedOutput("predict", binary_data=binary)]
        result = client.infer("penguins", tensors, outputs=outputs)
    finally:
        client.close()
    labels = [
        label.decode() if isinstance(label, bytes) else label
        for label in result.as_numpy("predict")
    ]
    indices = [ROWS.index(row) for row in complete]
    assert labels == [expected["predict"][i] for i in indices]


def _binary_request(
    strings: list[bytes], blob: bytes | None = None
) -> tuple[bytes, dict[str, str]]:
    """A request whose `island` is binary BYTES (length-prefixed) and the rest JSON."""
    blob = blob or b"".join(struct.pack("<I", len(s)) + s for s in strings)
    inputs = _inputs()
    inputs[0] = {
        "name": "island",
        "shape": [len(strings)],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(blob)},
    }
    header = httpx.Request("POST", "http://x", json={"inputs": inputs}).content
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


def test_binary_bytes_that_are_not_utf8_are_a_clear_error(base: str) -> None:
    body, headers = _binary_request([b"Biscoe", b"\xff\xfe", b"Dream"])
    response = httpx.post(f"{base}/v2/models/penguins/infer", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json() == {"error": "input 'island': BYTES element 1 is not UTF-8 text"}


def test_binary_bytes_elements_must_fill_the_shape_exactly(base: str) -> None:
    cut = struct.pack("<I", 6) + b"Biscoe" + struct.pack("<I", 5) + b"Dr"  # claims 5, has 2
    body, headers = _binary_request([b"Biscoe", b"Dream", b"Dream"], cut)
    response = httpx.post(f"{base}/v2/models/penguins/infer", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json() == {
        "error": "input 'island': BYTES element 1 claims 5 bytes but 2 are left"
    }


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        (
            "island",
            [1, 2, 3],
            "input 'island' is BYTES but its data holds other values than strings",
        ),
        (
            "year",
            [2008, None, 2008],
            "row 1, feature 'year': the value is missing (null), and "
            "model 'penguins' v1 cannot take a missing value there",
        ),
        ("year", [2008, 2008.5, 2008], "input 'year' is INT64 but its data holds non-integers"),
        ("sex", ["female", "male", "x"], None),
    ],
)
def test_column_errors_name_the_input(
    base: str, name: str, data: list[Any], error: str | None
) -> None:
    inputs = _inputs()
    for tensor in inputs:
        if tensor["name"] == name:
            tensor["data"] = data
    response = httpx.post(f"{base}/v2/models/penguins/infer", json={"inputs": inputs})
    if error is None:  # an unseen sex is taken: the model codes it as missing
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 422, response.text
    assert response.json() == {"error": error}


def test_tritonclient_sees_the_error_of_a_bad_column(base: str) -> None:
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    try:
        tensors = []
        for name, datatype in DATATYPES.items():
            array = (
                np.array(["Biscoe"], dtype=object)
                if datatype == "BYTES"
                else np.array([1.5], dtype=np.float64)
            )
            tensor = triton.InferInput(name, [1], "FP64" if datatype == "INT64" else datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        with pytest.raises(InferenceServerException, match="feature 'year': expected a whole"):
            client.infer("penguins", tensors)
    finally:
        client.close()
