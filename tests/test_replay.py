"""Every answer of the recorded corpus, replayed against a real server: the same, request for
request (status, content type, body), so that moving code cannot change what a client sees.

The corpus (tests/replay/corpus.json) was recorded from this server before the data plane was
redrawn; re-record it (``python -m tests.replay.corpus``) only for a change of answer made on
purpose, and say so in the commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port, running_server, serve_command
from tests.replay.cases import Case, cases
from tests.replay.corpus import CORPUS, SERVER_ENV, answer, same, send

RECORDED: dict[str, dict[str, Any]] = json.loads(CORPUS.read_text())
CASES = cases()


@pytest.fixture(scope="module")
def client(
    template_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    port = free_port()
    log = tmp_path_factory.mktemp("replay") / "server.log"
    command = serve_command(template_store, port)
    with (
        running_server(command, port=port, log=log, env=SERVER_ENV) as base,
        httpx.Client(base_url=base, timeout=60) as http,
    ):
        yield http


def test_the_corpus_covers_every_case_and_no_other() -> None:
    assert sorted(RECORDED) == sorted(case.name for case in CASES)
    assert len(CASES) >= 200
    statuses = {entry["status"] for entry in RECORDED.values()}
    assert {200, 401, 403, 404, 405, 422} <= statuses


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_answer_is_the_recorded_one(client: httpx.Client, case: Case) -> None:
    expected = RECORDED[case.name]
    actual = answer(send(client, case))
    difference = same(expected, actual)
    assert difference is None, f"{case.name}: {difference}\nrecorded: {expected}\nnow: {actual}"
