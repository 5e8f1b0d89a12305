"""Record the answers to every case of :mod:`tests.replay.cases`, and compare two recordings.

An answer is its status, content type, and body: JSON bodies as JSON, a /v2 binary answer as
its JSON header and each binary output decoded by its datatype, anything else as text.
Request ids and timings are not part of an answer, nor are the manifest fields that change with
the time and the library versions of training (:data:`VOLATILE`). Numbers compare equal to 1e-9
(relative), so that a new NumPy or scikit-learn rounding a prediction's last bit does not fail
the replay; everything else, error messages included, must be equal.

    python -m tests.replay.corpus            # re-record tests/replay/corpus.json (on purpose only)
"""

from __future__ import annotations

import base64
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.helpers import ADMIN_KEY, free_port, running_server, serve_command, train_template
from tests.replay.cases import Case, cases

CORPUS = Path(__file__).with_name("corpus.json")
SERVER_ENV = {"MODELSERVE_ADMIN_API_KEY": ADMIN_KEY}
_BINARY_TYPES = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "?"}


def answer(response: httpx.Response) -> dict[str, Any]:
    """What a response says, in the corpus's form."""
    content_type = response.headers.get("content-type", "")
    recorded: dict[str, Any] = {"status": response.status_code, "content_type": content_type}
    length = response.headers.get("inference-header-content-length")
    if length is not None:
        head, tail = response.content[: int(length)], response.content[int(length) :]
        header = json.loads(head)
        recorded["json"] = header
        recorded["binary"] = _outputs(header, tail)
    elif "json" in content_type and response.content:
        recorded["json"] = _steady(response.json())
    else:
        recorded["text"] = response.text
    return recorded


VOLATILE = frozenset({"created_at", "runtime", "sha256", "size_bytes", "attachments", "params"})
"""Manifest fields that differ with when a model was trained and with which library versions."""


def _steady(document: Any) -> Any:
    """``document`` with the values of :data:`VOLATILE` keys replaced by a placeholder."""
    if isinstance(document, dict):
        return {k: "<volatile>" if k in VOLATILE else _steady(v) for k, v in document.items()}
    if isinstance(document, list):
        return [_steady(item) for item in document]
    return document


def _outputs(header: dict[str, Any], tail: bytes) -> list[Any]:
    values: list[Any] = []
    offset = 0
    for output in header.get("outputs", []):
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            continue
        raw = tail[offset : offset + size]
        offset += size
        dtype = _BINARY_TYPES.get(output["datatype"])
        values.append(
            np.frombuffer(raw, dtype=dtype).tolist()
            if dtype is not None
            else base64.b64encode(raw).decode()
        )
    return values


def send(client: httpx.Client, case: Case) -> httpx.Response:
    return client.request(case.method, case.path, content=case.body, headers=case.headers)


def same(expected: Any, actual: Any, where: str = "") -> str | None:
    """None when the two are equal (numbers to 1e-9), else where they first differ."""
    numbers = (int, float)
    if type(expected) in numbers and type(actual) in numbers:  # exact types: not booleans
        equal = math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    elif isinstance(expected, dict) and isinstance(actual, dict):
        if expected.keys() != actual.keys():
            return f"{where}: keys {sorted(expected)} != {sorted(actual)}"
        pairs = [(expected[key], actual[key], f"{where}.{key}") for key in expected]
        return next(filter(None, (same(*pair) for pair in pairs)), None)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        pairs = [
            (a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(expected, actual, strict=True))
        ]
        return next(filter(None, (same(*pair) for pair in pairs)), None)
    else:
        equal = type(expected) is type(actual) and expected == actual
    return None if equal else f"{where}: {expected!r} != {actual!r}"


def record(base: str) -> dict[str, dict[str, Any]]:
    """Every case's answer from the server at ``base``."""
    with httpx.Client(base_url=base, timeout=60) as client:
        return {case.name: answer(send(client, case)) for case in cases()}


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "models"
        train_template(root)
        port = free_port()
        with running_server(
            serve_command(root, port), port=port, log=Path(scratch) / "log", env=SERVER_ENV
        ) as base:
            recorded = record(base)
    CORPUS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    sys.stdout.write(f"{len(recorded)} answers recorded in {CORPUS}\n")


if __name__ == "__main__":
    main()
