"""The requests of the replay corpus: good and bad, native and /v2, JSON and binary.

Each JSON request is sent twice, as written (the fast lane reads it) and padded past the lane's
limit (the app reads it), so the corpus holds every answer both ways. The server they are sent
to serves the template store (tests/conftest.py: ``default``, linear over x0..x9; ``clf``,
logistic regression over x0..x3) with the admin key of tests/helpers.py.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import ADMIN, ROW

PAD = 40_000
"""Spaces that put a JSON body past MODELSERVE_OFFLOAD_BODY_BYTES (32 KiB)."""

CLF_ROW = [0.1, 0.2, 0.3, 0.4]
JSON_TYPE = {"content-type": "application/json"}


@dataclass(frozen=True)
class Case:
    """One request: its name in the corpus, and what is sent."""

    name: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _v2(shape: list[int], data: Any, datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}],
        **extra,
    }


def _binary(values: bytes, shape: list[int], datatype: str, **extra: Any) -> tuple[bytes, str]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": shape,
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(values)},
                }
            ],
            **extra,
        }
    ).encode()
    return header + values, str(len(header))


def _doubles(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


NATIVE_PATHS = ["/predict", "/v1/models/default/predict", "/v1/models/default/versions/1/predict"]

NATIVE_BODIES: dict[str, object] = {
    "one-row": {"instances": [ROW]},
    "three-rows": {"instances": [ROW, ROW[::-1], [0.0] * 10]},
    "objects": {"instances": [{f"x{i}": v for i, v in enumerate(ROW)}]},
    "objects-reordered": {"instances": [{f"x{i}": ROW[i] for i in reversed(range(10))}]},
    "integers": {"instances": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]},
    "too-few-values": {"instances": [ROW[:3]]},
    "too-many-values": {"instances": [[*ROW, 1.0]]},
    "empty-batch": {"instances": []},
    "string-value": {"instances": [["a", *ROW[1:]]]},
    "null-value": {"instances": [[None, *ROW[1:]]]},
    "boolean-value": {"instances": [[True, *ROW[1:]]]},
    "nested-value": {"instances": [[[1.0], *ROW[1:]]]},
    "missing-feature": {"instances": [{f"x{i}": 0.0 for i in range(9)}]},
    "unknown-feature": {"instances": [{**{f"x{i}": 0.0 for i in range(10)}, "x99": 1.0}]},
    "extra-key": {"instances": [ROW], "extra": 1},
    "no-instances": {"rows": [ROW]},
    "instances-not-a-list": {"instances": "rows"},
    "row-not-a-list": {"instances": [5]},
    "probabilities-from-a-regressor": {"instances": [ROW], "return_probabilities": True},
    "prediction-overflows": {"instances": [ROW, [1e308] * 10]},
    "bad-rows-listed": {"instances": [["a"] * 10, [None] * 10, [True] * 10]},
    "more-problems-than-listed": {"instances": [["a"] * 10] * 3},
    "short-row-then-string": {"instances": [ROW[:3], ["a", *ROW[1:]]]},
    "long-row-with-strings": {"instances": [["a"] * 11]},
    "short-row-with-a-string": {"instances": [["a", 1.0]]},
    "string-and-extra-keys": {"instances": [["a", *ROW[1:]]], "extra": 1, "": 2},
    "bad-row-and-bad-flag": {"instances": [[None] * 10], "return_probabilities": "yes"},
    "instances-null-and-extra": {"instances": None, "zz": 1},
    "no-instances-bad-flag": {"return_probabilities": 1},
    "objects-mixed-problems": {
        "instances": [{"x0": "a", "x99": 1, "x98": 2, **{f"x{i}": 0.0 for i in range(2, 10)}}]
    },
    "rows-mixed-kinds": {"instances": [ROW, {f"x{i}": v for i, v in enumerate(ROW)}, 7, "r"]},
    "too-many-rows": {"instances": [[0] * 10] * 10_001},
    "objects-too-many-rows": {"instances": [{"x0": 0}] * 10_001},
}

RAW_NATIVE: dict[str, bytes] = {
    "not-json": b'{"instances": [[1, 2',
    "nan-literal": b'{"instances": [[NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}',
    "infinity-literal": b'{"instances": [[Infinity, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}',
    "too-large-a-number": b'{"instances": [[1e999, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}',
    "top-level-array": b"[[1, 2, 3]]",
    "empty-body": b"",
    "plus-sign": b'{"instances": [[+1, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}',
    "leading-zero": b'{"instances": [[01, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}',
    "big-integer": b'{"instances": [[' + b"9" * 400 + b", 0, 0, 0, 0, 0, 0, 0, 0, 0]]}",
    "nan-and-string": b'{"instances": [[NaN, "a", 0, 0, 0, 0, 0, 0, 0, 0]]}',
    "top-level-string": b'"hello"',
    "duplicate-keys": b'{"instances": [[1, 2]], "instances": [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}',
    "not-utf8": b'{"instances": [["\xff", 0, 0, 0, 0, 0, 0, 0, 0, 0]]}',
    "number-row-plain": b'{"instances":[[1,2,3,4,5,6,7,8,9,10],[1e3,-2.5E-3,0,0,0,0,0,0,0,0]]}',
}

CLF_BODIES: dict[str, object] = {
    "clf-plain": {"instances": [CLF_ROW]},
    "clf-probabilities": {"instances": [CLF_ROW, CLF_ROW[::-1]], "return_probabilities": True},
    "clf-wrong-count": {"instances": [ROW]},
}

ODD_VERSIONS = ["%D9%A1", "%EF%BC%91", "%C2%B9", "+1", "01", "0", "1.0", "9", "latest"]

V2_BODIES: dict[str, object] = {
    "one-row": _v2([1, 10], ROW),
    "two-rows-nested": _v2([2, 10], [ROW, ROW]),
    "with-id": _v2([1, 10], ROW, id="42"),
    "fp32": _v2([1, 10], ROW, "FP32"),
    "int64": _v2([1, 10], list(range(10)), "INT64"),
    "int32": _v2([1, 10], list(range(10)), "INT32"),
    "output-named": _v2([1, 10], ROW, outputs=[{"name": "predict"}]),
    "binary-output": _v2([1, 10], ROW, parameters={"binary_data_output": True}),
    "binary-output-named": _v2(
        [1, 10], ROW, outputs=[{"name": "predict", "parameters": {"binary_data": True}}]
    ),
    "per-feature": {
        "inputs": [
            {"name": f"x{i}", "shape": [2], "datatype": "FP64", "data": [v, -v]}
            for i, v in enumerate(ROW)
        ]
    },
    "too-few-features": _v2([1, 9], ROW[:9]),
    "bool-datatype": _v2([1, 10], [True] * 10, "BOOL"),
    "shape-needs-more": _v2([2, 10], ROW),
    "empty-batch": _v2([0, 10], []),
    "unknown-output": _v2([1, 10], ROW, outputs=[{"name": "nope"}]),
    "inputs-not-a-list": {"inputs": "nope"},
    "id-not-a-string": {"id": 5, "inputs": []},
    "datatype-an-object": {"inputs": [{"name": "", "shape": [], "datatype": {}, "data": None}]},
    "no-data": {"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64"}]},
    "ragged": _v2([2, 10], [ROW, ROW[:5]]),
    "string-data": _v2([1, 10], ["a", *ROW[1:]]),
    "boolean-among-numbers": _v2([1, 10], [True, *ROW[1:]]),
    "floats-as-int64": _v2([1, 10], ROW, "INT64"),
    "int32-wraps": _v2([1, 10], [4294967297, *[0] * 9], "INT32"),
    "int32-past-max": _v2([1, 10], [2147483648, *[0] * 9], "INT32"),
    "int64-past-max": _v2([1, 10], [2**63, *[0] * 9], "INT64"),
    "fp32-past-max": _v2([1, 10], [1e300, *[0] * 9], "FP32"),
    "huge-shape": _v2([2**63, 0], []),
    "huge-shape-second": _v2([0, 2**63], []),
    "huge-shape-product": _v2([2**31 - 1, 2**31 - 1, 0], []),
    "too-many-dimensions": _v2([1] * 9 + [0], []),
    "three-dimensions": _v2([1, 1, 10], [ROW]),
    "unknown-input": {"inputs": [{"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}]},
    "duplicate-input": {
        "inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]}] * 2
    },
    "prediction-overflows": _v2([2, 10], [ROW, [1e308] * 10]),
    "extra-key": {**_v2([1, 10], ROW), "extra": 1},
    "too-many-rows": _v2([10_001, 10], [0.0] * 100_010),
    "per-feature-unknown-and-duplicate": {
        "inputs": [
            {"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]},
        ]
    },
    "per-feature-missing": {
        "inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [1]}]
    },
    "per-feature-lengths-differ": {
        "inputs": [
            {
                "name": f"x{i}",
                "shape": [1 + (i == 3)],
                "datatype": "FP64",
                "data": [1] * (1 + (i == 3)),
            }
            for i in range(10)
        ]
    },
    "per-feature-column-shapes": {
        "inputs": [
            {"name": f"x{i}", "shape": [2, 1], "datatype": "INT64", "data": [[i], [-i]]}
            for i in range(10)
        ]
    },
    "per-feature-bad-shape": {
        "inputs": [
            {"name": f"x{i}", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}
            for i in range(10)
        ]
    },
    "unknown-output-and-bad-width": _v2([1, 9], ROW[:9], outputs=[{"name": "nope"}]),
    "one-dimension": _v2([10], ROW),
    "wide-rows": _v2([1, 11], [*ROW, 1.0]),
}

RAW_V2: dict[str, bytes] = {
    "not-json": b'{"inputs": [',
    "nan-data": b'{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64", '
    b'"data": [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}',
    "too-large-a-number": b'{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64", '
    b'"data": [1e999, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}',
    "per-feature-nan": b'{"inputs": ['
    + b", ".join(
        b'{"name": "x%d", "shape": [1], "datatype": "FP64", "data": [%s]}'
        % (i, b"NaN" if i == 4 else b"1")
        for i in range(10)
    )
    + b"]}",
    "common-form-wrong-width": b'{"id":"7","inputs":[{"name":"input","shape":[1,3],'
    b'"datatype":"FP64","data":[1,2,3]}]}',
    "common-form-too-many-rows": b'{"inputs":[{"name":"input","shape":[10001,10],'
    b'"datatype":"FP64","data":[' + b",".join([b"0"] * 100_010) + b"]}]}",
}

CLF_V2: dict[str, object] = {
    "clf-all-outputs": {
        "inputs": [{"name": "i", "shape": [1, 4], "datatype": "FP64", "data": CLF_ROW}]
    },
    "clf-probabilities-only": {
        "inputs": [{"name": "i", "shape": [1, 4], "datatype": "FP64", "data": CLF_ROW}],
        "outputs": [{"name": "predict_proba"}],
    },
    "clf-binary": {
        "inputs": [{"name": "i", "shape": [1, 4], "datatype": "FP64", "data": CLF_ROW}],
        "parameters": {"binary_data_output": True},
    },
}

GETS = [
    "/health/live",
    "/health/ready",
    "/v1/models",
    "/v1/models/default",
    "/v1/models/default/versions/1",
    "/v1/models/default/versions/9",
    "/v1/models/nope",
    "/v1/models/clf",
    "/v1/models/default/versions/1/report.json",
    "/v1/models/default/versions/%D9%A1/report.json",
    "/v1/models/..%2F..%2Fetc/predict",
    "/nowhere",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/default",
    "/v2/models/default/versions/1",
    "/v2/models/default/versions/9",
    "/v2/models/default/ready",
    "/v2/models/default/versions/1/ready",
    "/v2/models/nope",
    "/v2/models/nope/ready",
    "/v2/models/clf",
    "/predict",
]


def _json_twice(name: str, path: str, document: object) -> list[Case]:
    return _raw_twice(name, path, json.dumps(document).encode())


def _raw_twice(name: str, path: str, body: bytes) -> list[Case]:
    cases = [Case(name, "POST", path, body, JSON_TYPE)]
    if body.endswith(b"}"):
        padded = body[:-1] + b" " * PAD + b"}"
        cases.append(Case(f"{name} (padded)", "POST", path, padded, JSON_TYPE))
    return cases


def cases() -> list[Case]:
    """Every request of the corpus, each with a name of its own."""
    made: list[Case] = []
    for path in NATIVE_PATHS:
        for name, document in NATIVE_BODIES.items():
            made += _json_twice(f"native {path} {name}", path, document)
    for name, raw in RAW_NATIVE.items():
        made += _raw_twice(f"native /predict {name}", "/predict", raw)
    for name, document in CLF_BODIES.items():
        made += _json_twice(f"native {name}", "/v1/models/clf/predict", document)
    made += _json_twice("native unknown model", "/v1/models/nope/predict", NATIVE_BODIES["one-row"])
    for version in ODD_VERSIONS:
        made += _json_twice(
            f"native version {version}",
            f"/v1/models/default/versions/{version}/predict",
            NATIVE_BODIES["one-row"],
        )
        made += _json_twice(
            f"v2 version {version}",
            f"/v2/models/default/versions/{version}/infer",
            V2_BODIES["one-row"],
        )
    for name, document in V2_BODIES.items():
        made += _json_twice(f"v2 {name}", "/v2/models/default/infer", document)
    for name, raw in RAW_V2.items():
        made += _raw_twice(f"v2 {name}", "/v2/models/default/infer", raw)
    for name, document in CLF_V2.items():
        made += _json_twice(f"v2 {name}", "/v2/models/clf/infer", document)
    made += _json_twice("v2 unknown model", "/v2/models/nope/infer", V2_BODIES["one-row"])
    made += _binary_cases()
    made += [Case(f"GET {path}", "GET", path) for path in GETS]
    made += [
        Case("GET on a POST route", "GET", "/v1/models/default/predict"),
        Case("DELETE on a model", "DELETE", "/v1/models/default"),
        Case("v2 index with the admin key", "POST", "/v2/repository/index", b"{}", ADMIN),
        Case("v2 index without a key", "POST", "/v2/repository/index", b"{}"),
        Case(
            "v2 index with a wrong key",
            "POST",
            "/v2/repository/index",
            b"{}",
            {"Authorization": "Bearer wrong"},
        ),
        Case("v2 index, ready only", "POST", "/v2/repository/index", b'{"ready": true}', ADMIN),
        Case("v2 index, not an object", "POST", "/v2/repository/index", b"[]", ADMIN),
    ]
    names = [case.name for case in made]
    assert len(set(names)) == len(names), "every case needs a name of its own"
    return made


def _binary_cases() -> list[Case]:
    path = "/v2/models/default/infer"
    made = []
    plain = [
        ("fp64", _doubles(*ROW, *ROW), [2, 10], "FP64", {}),
        ("fp32", struct.pack("<10f", *ROW), [1, 10], "FP32", {}),
        ("int32", struct.pack("<10i", *range(10)), [1, 10], "INT32", {}),
        ("int64", struct.pack("<10q", *range(10)), [1, 10], "INT64", {}),
        (
            "binary answer",
            _doubles(*ROW),
            [1, 10],
            "FP64",
            {"parameters": {"binary_data_output": True}},
        ),
        ("nan", _doubles(float("nan"), *ROW[1:]), [1, 10], "FP64", {}),
        ("size mismatch", _doubles(*ROW[:9]), [1, 10], "FP64", {}),
        ("huge shape", b"", [2**62, 0], "FP64", {}),
    ]
    for name, values, shape, datatype, extra in plain:
        body, length = _binary(values, shape, datatype, **extra)
        headers = {
            "Inference-Header-Content-Length": length,
            "content-type": "application/octet-stream",
        }
        made.append(Case(f"v2 binary {name}", "POST", path, body, headers))
    body, length = _binary(_doubles(*ROW), [1, 10], "FP64")
    octet = {"content-type": "application/octet-stream"}
    made += [
        Case("v2 binary, bytes no input claims", "POST", path, body + b"\0" * 8,
             {"Inference-Header-Content-Length": length, **octet}),
        Case("v2 binary, header length not a number", "POST", path, body,
             {"Inference-Header-Content-Length": "ten", **octet}),
        Case("v2 binary, header length past the body", "POST", path, body,
             {"Inference-Header-Content-Length": str(len(body) + 1), **octet}),
        Case("v2 binary, no header length", "POST", path, body, octet),
    ]  # fmt: skip
    return made
