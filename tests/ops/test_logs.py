"""Log lines: JSON objects off a terminal, human-readable text on one, from a real server."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelserve.core.store import ModelStore
from modelserve.ops.logs import (
    TEXT_FORMAT,
    AccessEntry,
    AccessLog,
    BufferedStreamHandler,
    JsonFormatter,
    _only_json_buffer,
    access_record,
    flush_handlers,
    logging_config,
    resolve_format,
)
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW, free_port, running_server, serve_command


def test_json_formatter_writes_one_object_with_the_records_fields() -> None:
    record = logging.LogRecord(
        "modelserve.access", logging.INFO, __file__, 1, "%s ok", ("x",), None
    )
    record.fields = {"request_id": "abc", "status": 200}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    document = orjson.loads(line)
    assert document["message"] == "x ok"
    assert document["level"] == "info"
    assert document["logger"] == "modelserve.access"
    assert (document["request_id"], document["status"]) == ("abc", 200)
    assert document["time"].endswith("Z")
    assert document["time"][:4].isdigit()


def test_json_formatter_keeps_the_traceback_inside_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "modelserve", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    document = orjson.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in document["exception"]


def test_auto_is_text_on_a_terminal_and_json_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert resolve_format("auto") == "text"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert resolve_format("auto") == "json"
    assert resolve_format("text") == "text"
    config = logging_config("info", "json")
    assert config["loggers"]["uvicorn.access"]["propagate"] is False


@pytest.fixture
def served_store(tmp_path: Path) -> Path:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(samples=100), store)
    return store.root


def test_a_server_off_a_terminal_writes_one_json_line_per_request(
    served_store: Path, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with running_server(serve_command(served_store, port), port=port, log=log) as base:
        httpx.get(base + "/health/ready")
        response = httpx.post(
            base + "/predict", json={"instances": [ROW]}, headers={"X-Request-ID": "from-client"}
        )
        assert response.headers["x-request-id"] == "from-client"
        httpx.post(base + "/v1/models/default/predict", json={"instances": [[1]]})
        time.sleep(0.2)
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "modelserve.access"]
    assert [(a["path"], a["status"]) for a in access] == [
        ("/predict", 200),
        ("/v1/models/default/predict", 422),
    ]
    assert access[0]["request_id"] == "from-client"
    assert (access[0]["model"], access[0]["version"], access[0]["rows"]) == ("default", 1, 1)
    # uvicorn's own lines are JSON too, and uvicorn's access log is replaced by modelserve's.
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert not any(line["logger"] == "uvicorn.access" for line in lines)


def test_numpy_warnings_are_log_lines_too(served_store: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with running_server(serve_command(served_store, port), port=port, log=log) as base:
        # scikit-learn and skops, imported in the background after the server is ready, add
        # warning filters, and each new filter makes Python show a warning once more: count
        # the warnings of a settled server.
        deadline = time.monotonic() + 60
        while "confirmed default v1" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        overflow = {"instances": [[1e308] * 10]}  # finite in, an overflowing prediction out
        for _ in range(3):
            response = httpx.post(base + "/predict", json=overflow)
            assert response.status_code == 422
            assert "not a finite number" in response.json()["detail"]
        time.sleep(1.2)  # the buffered handler writes at least once a second
    lines = log.read_text().splitlines()
    records = [orjson.loads(line) for line in lines]  # every line is JSON
    warned = [r for r in records if r["logger"] == "py.warnings"]
    assert warned, records
    assert all("RuntimeWarning: overflow" in r["message"] for r in warned), warned
    assert len(warned) < 3  # once per place in the code, as Python's warnings go


def test_a_server_on_a_terminal_writes_readable_lines(served_store: Path) -> None:
    port = free_port()
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        serve_command(served_store, port), stdout=follower, stderr=follower, env=dict(os.environ)
    )
    os.close(follower)
    output = b""
    try:
        deadline = time.monotonic() + 60
        while b"Application startup complete" not in output:
            assert time.monotonic() < deadline, output
            assert process.poll() is None, output
            output += _read_some(leader)
        httpx.post(f"http://127.0.0.1:{port}/predict", json={"instances": [ROW]})
        while b"POST /predict 200" not in output:
            assert time.monotonic() < deadline, output
            output += _read_some(leader)
    finally:
        process.terminate()
        process.wait(timeout=15)
        os.close(leader)
    text = output.decode()
    assert "INFO modelserve.access: POST /predict 200 " in text
    assert "model=default v1 rows=1" in text
    assert not any(line.lstrip().startswith("{") for line in text.splitlines())


def _read_some(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], 0.5)
    return os.read(fd, 65536) if ready else b""


def test_buffered_handler_writes_in_batches_and_at_once_for_warnings() -> None:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, capacity=3)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.buffered")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("one")
        logger.info("two")
        assert stream.getvalue() == ""  # held
        logger.info("three")  # capacity reached
        assert stream.getvalue() == "INFO one\nINFO two\nINFO three\n"
        logger.info("four")
        logger.warning("five")  # a warning goes out at once, with what came before it
        assert stream.getvalue().endswith("INFO four\nWARNING five\n")
        logger.info("six")
        handler.flush()  # what the lifespan does every second
        assert stream.getvalue().endswith("INFO six\n")
    finally:
        logger.removeHandler(handler)


def test_access_records_work_with_any_format_string(caplog: pytest.LogCaptureFixture) -> None:
    from modelserve.ops.observe import AccessRecord  # noqa: PLC0415

    record = AccessRecord("%s %d", ("GET /x", 200), {"status": 200})
    every = (
        "%(asctime)s %(created)f %(msecs)d %(relativeCreated)d %(name)s %(levelname)s "
        "%(levelno)s %(pathname)s %(filename)s %(module)s %(lineno)d %(funcName)s "
        "%(thread)d %(threadName)s %(process)d %(processName)s %(message)s"
    )
    line = logging.Formatter(every).format(record)
    assert line.endswith(" GET /x 200")
    assert " modelserve.access INFO 20 " in line
    assert f" {os.getpid()} " in line
    assert orjson.loads(JsonFormatter().format(record))["status"] == 200


def test_a_closed_stream_never_raises_into_the_server() -> None:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, capacity=100)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        handler.emit(logging.LogRecord("x", logging.INFO, __file__, 1, "held", (), None))
        stream.close()
        flush_handlers()  # what the lifespan calls: swallowed, and the buffer is dropped
        assert handler.pending == []
    finally:
        root.removeHandler(handler)


# -- the access log's fast lane --------------------------------------------------------------

ENTRY: AccessEntry = (
    "abc", "POST", "/predict", "/predict", 200, 0.25, "default", 1, 1, "127.0.0.1:5000"
)  # fmt: skip


def json_root() -> tuple[BufferedStreamHandler, io.StringIO]:
    """The root logger as `modelserve serve` sets it up off a terminal, into a string.

    Called inside the test: pytest adds its capture handlers to the root logger for the call.
    """
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, capacity=1000)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]  # conftest's _restore_logging puts pytest's back
    root.setLevel(logging.INFO)
    return handler, stream


def test_access_lines_are_formatted_directly_and_written_as_logging_would_write_them() -> None:
    _, stream = json_root()
    access = AccessLog()
    access.write(ENTRY)
    logging.getLogger("modelserve").warning("after")  # a normal record keeps its place
    assert stream.getvalue() != ""  # the warning flushed both
    first, second = stream.getvalue().splitlines()
    assert orjson.loads(second)["message"] == "after"
    created = orjson.loads(first)
    # Byte for byte what the JSON formatter makes of the equivalent LogRecord.
    expected = orjson.loads(JsonFormatter().format(access_record(ENTRY)))
    assert {**created, "time": None} == {**expected, "time": None}
    assert list(created) == list(expected)  # same key order too


@pytest.mark.parametrize(
    "entry",
    [
        ENTRY,
        ("abc", "GET", "/nope", "unmatched", 404, 0.0, None, None, 0, None),
        (
            "abc",
            "POST",
            '/v1/models/"x"\\\n\u00e9/predict',
            "unmatched",
            404,
            1234.5,
            None,
            None,
            0,
            "::1:80",
        ),
        ("abc", "POST", "/predict", "/predict", 200, 0.001, 'm"odel', 12, 10_000, "1.2.3.4:5"),
    ],
)
def test_an_access_line_is_byte_for_byte_what_the_formatter_makes_of_its_record(
    entry: AccessEntry,
) -> None:
    formatter = JsonFormatter()
    for created in (1_790_000_000.0, 1_790_000_000.999, 1_790_000_001.0005, 1_790_000_001.0009):
        line = formatter.format_access(created, entry)
        assert line == JsonFormatter().format(access_record(entry, created)) + "\n"


_TEXT = st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    request_id=st.one_of(st.text(alphabet="0123456789abcdef", min_size=1), _TEXT),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=_TEXT,
    route=_TEXT,
    status=st.integers(100, 599),
    micros=st.integers(0, 10**12),
    model=st.one_of(st.none(), _TEXT),
    version=st.one_of(st.none(), st.integers(1, 10**6)),
    rows=st.integers(0, 10**7),
    client=st.one_of(st.none(), _TEXT),
    created=st.floats(0, 4e9),
)
def test_any_access_line_is_what_the_formatter_makes_of_its_record(
    request_id: str,
    method: str,
    path: str,
    route: str,
    status: int,
    micros: int,
    model: str | None,
    version: int | None,
    rows: int,
    client: str | None,
    created: float,
) -> None:
    # Latencies as the observer makes them: milliseconds to 3 places, up to ~30 years.
    entry = (request_id, method, path, route, status, micros / 1000, model, version, rows, client)
    formatter = JsonFormatter()
    for _ in range(2):  # the line's parts are made once, then reused
        line = formatter.format_access(created, entry)
        assert line == JsonFormatter().format(access_record(entry, created)) + "\n"


def test_timestamps_are_right_to_the_millisecond_across_seconds() -> None:
    formatter = JsonFormatter()
    stamps = [formatter.timestamp(t) for t in (0.0, 0.0004, 0.0011, 0.9999, 1.0, 86_400.5)]
    assert stamps == [
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T00:00:00.001Z",
        "1970-01-01T00:00:00.999Z",
        "1970-01-01T00:00:01.000Z",
        "1970-01-02T00:00:00.500Z",
    ]


def test_the_fast_lane_formats_each_line_when_emitted_and_writes_them_in_batches() -> None:
    handler, stream = json_root()
    access = AccessLog()
    access.write(ENTRY)
    # Formatted at once (each request pays for its own line, no batch stalls one request) ...
    assert len(handler.pending) == 1
    assert orjson.loads(handler.pending[0])["message"] == (
        "POST /predict 200 0.250 ms id=abc model=default v1 rows=1"
    )
    assert stream.getvalue() == ""  # ... and held until the batch is written.
    access.write(ENTRY)
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert [orjson.loads(line)["request_id"] for line in lines] == ["abc", "abc"]
    assert handler.pending == []


def test_a_batch_is_written_when_it_reaches_its_capacity() -> None:
    handler, stream = json_root()
    handler.capacity = 3
    access = AccessLog()
    for _ in range(2):
        access.write(ENTRY)
    assert stream.getvalue() == ""
    access.write(ENTRY)
    assert len(stream.getvalue().splitlines()) == 3
    assert handler.pending == []


def test_a_formatter_replaced_after_the_route_was_chosen_is_used() -> None:
    handler, stream = json_root()
    access = AccessLog()
    access.write(ENTRY)  # chooses the direct route for the next second
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    access.write(ENTRY)
    handler.flush()
    json_line, text_line = stream.getvalue().splitlines()
    assert orjson.loads(json_line)["logger"] == "modelserve.access"
    assert text_line.endswith(
        " INFO modelserve.access: POST /predict 200 0.250 ms id=abc model=default v1 rows=1"
    )


def test_any_other_destination_gets_real_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, _ = json_root()
    logging.getLogger().addHandler(caplog.handler)
    with caplog.at_level(logging.INFO, logger="modelserve.access"):
        AccessLog().write(ENTRY)
    (record,) = [r for r in caplog.records if r.name == "modelserve.access"]
    assert record.getMessage().startswith("POST /predict 200 0.250 ms")
    assert record.fields == {  # type: ignore[attr-defined]
        "request_id": "abc",
        "method": "POST",
        "path": "/predict",
        "route": "/predict",
        "status": 200,
        "latency_ms": 0.25,
        "model": "default",
        "version": 1,
        "rows": 1,
        "client": "127.0.0.1:5000",
    }
    assert len(handler.pending) == 1  # the JSON handler still got the line, through logging


def test_the_fast_lane_is_taken_only_when_nothing_else_would_see_the_record() -> None:
    handler, _ = json_root()
    access = logging.getLogger("modelserve.access")
    assert _only_json_buffer(access) is handler
    handler.addFilter(logging.Filter("other"))
    assert _only_json_buffer(access) is None
    handler.filters.clear()
    access.addFilter(logging.Filter("other"))
    assert _only_json_buffer(access) is None
    access.filters.clear()
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    assert _only_json_buffer(access) is None
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.WARNING)
    assert _only_json_buffer(access) is None
    handler.setLevel(logging.NOTSET)
    extra = logging.StreamHandler(io.StringIO())
    access.addHandler(extra)
    try:
        assert _only_json_buffer(access) is None
    finally:
        access.removeHandler(extra)
    assert _only_json_buffer(access) is handler
