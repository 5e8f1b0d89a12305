"""`modelserve serve` listens before its FastAPI app is built: the lane answers, the rest waits."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from modelserve.core.settings import Settings
from modelserve.http.app import create_app
from modelserve.http.runtime import Runtime
from modelserve.http.staged import UNAVAILABLE, Build, StagedApp, build_app, create_staged_app
from tests.helpers import ROW, assert_problem, free_port, serve_command

V2 = {"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP64", "data": ROW}]}


class Served:
    """A uvicorn server run in a thread, and how it ended if it did."""

    def __init__(self, app: StagedApp) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, ws="none")
        self.server = uvicorn.Server(config)
        self.exit_code: int | str | None = None

    def run(self) -> None:
        try:
            self.server.run()
        except SystemExit as exc:  # what uvicorn does when the lifespan fails to start
            self.exit_code = exc.code


@contextlib.contextmanager
def serving(app: StagedApp) -> Iterator[tuple[str, Served]]:
    """``app`` under a real uvicorn server on loopback, in a thread; stopped on exit."""
    served = Served(app)
    server = served.server
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive():
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{served.port}", served
    finally:
        server.should_exit = True
        thread.join(30)


def gated(gate: threading.Event) -> Build:
    """The real build, held until ``gate`` is set: the app stays unbuilt while a test probes."""

    def build(runtime: Runtime) -> object:
        assert gate.wait(30), "the test never opened the gate"
        return build_app(runtime)

    return build  # type: ignore[return-value]


def test_the_lane_answers_predictions_and_probes_before_the_app_is_built(
    settings: Settings,
) -> None:
    gate = threading.Event()
    staged = StagedApp(Runtime(settings), build=gated(gate))
    with (
        serving(staged) as (base, _),
        TestClient(create_app(settings), raise_server_exceptions=False) as plain,
    ):
        try:
            requests = [
                ("GET", "/health/live", None),
                ("GET", "/health/ready", None),
                ("GET", "/v2/health/ready", None),
                ("POST", "/predict", {"instances": [ROW, ROW]}),
                ("POST", "/v2/models/default/infer", V2),
            ]
            for method, path, body in requests:
                early = httpx.request(method, base + path, json=body)
                expected = plain.request(method, path, json=body)
                assert early.status_code == 200, early.text
                assert (early.headers["content-type"], early.content) == (
                    expected.headers["content-type"],
                    expected.content,
                ), path
            assert staged.app is None  # all of that came from the lane
        finally:
            gate.set()


def test_what_the_lane_does_not_answer_waits_for_the_app_and_gets_its_answer(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(update={"compiled_forms": False})
    gate = threading.Event()
    staged = StagedApp(Runtime(settings), build=gated(gate))
    requests = [
        ("GET", "/v1/models/default", None),  # a route only the app has
        # a body past the lane's limit (and the body limit): the app's 413
        ("POST", "/predict", {"instances": [[1.0]], "padding": " " * 25_000}),
        # a model served by scikit-learn (compiled forms off): the route merges its requests
        (
            "POST",
            "/v1/models/clf/predict",
            {"instances": [[1, 2, 3, 4]], "return_probabilities": True},
        ),
        ("GET", "/nope", None),  # the app's 404
    ]
    answers: dict[str, httpx.Response] = {}
    with (
        caplog.at_level(logging.INFO, logger="modelserve.access"),
        serving(staged) as (base, _),
        TestClient(create_app(settings), raise_server_exceptions=False) as plain,
    ):
        try:

            def ask(method: str, path: str, body: object) -> None:
                answers[path] = httpx.request(method, base + path, json=body, timeout=30)

            threads = [threading.Thread(target=ask, args=request) for request in requests]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            assert answers == {}  # all held until the app exists
            assert all(thread.is_alive() for thread in threads)
        finally:
            gate.set()
        for thread in threads:
            thread.join(30)
        # A request's access line is written just after its last byte is sent: wait for all 4.
        deadline = time.monotonic() + 10
        while len(_access_lines(caplog)) < len(requests) and time.monotonic() < deadline:
            time.sleep(0.01)
        held = _access_lines(caplog)
        for method, path, body in requests:
            expected = plain.request(method, path, json=body)
            answer = answers[path]
            assert answer.status_code == expected.status_code, path
            assert answer.headers["content-type"] == expected.headers["content-type"], path
            assert answer.json() == expected.json(), path
    assert_problem(answers["/predict"], 413, "payload-too-large")
    assert len(answers["/v1/models/clf/predict"].json()["probabilities"]) == 1
    # The time held counts in each request's latency, as any queueing does.
    assert sorted(f["path"] for f in held) == sorted(path for _, path, _ in requests)
    assert all(f["latency_ms"] >= 200 for f in held), held  # held 0.5 s after being sent


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "modelserve.access"]  # type: ignore[attr-defined]


def test_a_failed_build_is_logged_answers_503_everywhere_and_asks_to_stop(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(runtime: Runtime) -> object:
        raise RuntimeError("boom")

    stop = threading.Event()
    staged = StagedApp(Runtime(settings), build=broken, on_failure=stop.set)  # type: ignore[arg-type]
    with (
        caplog.at_level(logging.ERROR, logger="modelserve.http.staged"),
        serving(staged) as (base, _),
    ):
        assert stop.wait(10)
        assert staged.failed
        for path in ("/health/ready", "/health/live", "/v1/models"):
            assert_problem(httpx.get(base + path), 503, "unavailable", detail_contains=UNAVAILABLE)
        native = httpx.post(base + "/predict", json={"instances": [ROW]})
        assert_problem(native, 503, "unavailable", detail_contains="could not build")
        v2 = httpx.post(base + "/v2/models/default/infer", json=V2)
        assert (v2.status_code, v2.json()) == (503, {"error": UNAVAILABLE})
    [record] = [r for r in caplog.records if r.name == "modelserve.http.staged"]
    assert record.getMessage() == "building the HTTP app failed"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "boom"


def test_a_store_that_cannot_be_served_fails_start_up(tmp_path: Path) -> None:
    not_a_store = tmp_path / "file"
    not_a_store.write_text("x")
    staged = StagedApp(Runtime(Settings(store=not_a_store)))
    with serving(staged) as (_, served):
        pass
    assert not served.server.started
    assert served.exit_code == 3  # uvicorn's start-up failure
    assert staged.app is None


def test_serve_exits_1_with_the_traceback_when_the_app_cannot_be_built(
    store_path: Path,
) -> None:
    """The real command, with the build made to fail: it stops instead of serving 503s."""
    script = (
        "import sys, modelserve.http.staged as staged\n"
        "def boom(runtime):\n"
        "    raise RuntimeError('boom')\n"
        "staged.build_app = boom\n"
        "from modelserve.entry import main\n"
        "sys.argv[0] = 'modelserve'\n"
        "main()\n"
    )
    command = [sys.executable, "-c", script, *serve_command(store_path, free_port())[3:]]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "building the HTTP app failed" in done.stderr
    assert "RuntimeError: boom" in done.stderr
    assert "could not build its HTTP app" in done.stderr


def test_each_worker_builds_its_staged_app_from_the_environment(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --workers N` hands uvicorn this factory; every worker serves MODELSERVE_STORE."""
    monkeypatch.setenv("MODELSERVE_STORE", str(store_path))
    staged = create_staged_app()
    assert staged.runtime.settings.store == store_path
    assert staged.on_failure is None  # a failed worker answers 503 instead of restarting
    with serving(staged) as (base, _):
        answer = httpx.post(base + "/predict", json={"instances": [ROW]})
        assert answer.status_code == 200, answer.text
        assert httpx.get(base + "/v1/models").status_code == 200  # the built app's route
