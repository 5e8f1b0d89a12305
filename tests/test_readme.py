"""The README holds to the code: its error table lists what the server sends, and the files
its examples read ship in examples/."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _table_types() -> set[str]:
    start = README.index("| problem `type` (after `urn:modelserve:problem:`)")
    table = README[start : README.index("\n\n", start)]
    return {
        name
        for line in table.splitlines()[2:]
        for name in re.findall(r"`([a-z-]+)`", line.split("|")[1])
    }


def test_every_problem_type_the_server_sends_is_in_the_error_table() -> None:
    corpus = json.loads((ROOT / "tests" / "replay" / "corpus.json").read_text())
    sent = {
        answer["json"]["type"].removeprefix("urn:modelserve:problem:")
        for answer in corpus.values()
        if isinstance(answer.get("json"), dict)
        and str(answer["json"].get("type")).startswith("urn:")
    }
    assert sent, "the replay corpus holds problem answers"
    assert sent <= _table_types(), sent - _table_types()


def test_every_problem_type_in_the_table_is_one_the_code_can_send() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    pydantic_types = {"missing", "list-type", "model-type", "bool-type", "extra-forbidden"}
    phrases = {status.phrase.lower().replace(" ", "-") for status in HTTPStatus}
    for name in _table_types() - pydantic_types - phrases:  # Pydantic's, and HTTP's own
        assert f'"{name}"' in source, name


def test_the_files_the_examples_read_are_shipped() -> None:
    named = set(re.findall(r"examples/[A-Za-z0-9_.-]+", README))
    assert named, "the README's examples read files from examples/"
    for path in sorted(named):
        assert (ROOT / path).is_file(), path


def test_the_penguins_example_is_the_packaged_data_set() -> None:
    import palmerpenguins  # noqa: PLC0415

    shipped = pd.read_csv(ROOT / "examples" / "penguins.csv")
    pd.testing.assert_frame_equal(shipped, palmerpenguins.load_penguins(), check_dtype=False)
