"""Logging: human-readable lines on a terminal, one JSON object per line everywhere else.

Configured once at the entry point (``modelserve serve``) through :func:`logging_config`, a
``logging.config.dictConfig`` document that uvicorn applies in the server process and in every
worker process alike. Request logs come from the ``modelserve.access`` logger; each record
carries its fields in ``record.fields``, which the JSON formatter writes as top-level keys.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

ACCESS_LOGGER = "modelserve.access"
ACCESS_MESSAGE = "%s %s %d %.3f ms id=%s%s"
"""The access line's message: method, path, status, latency, request id, model part."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LogFormat = Literal["auto", "json", "text"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's fields."""

    # (millisecond since the epoch, its timestamp): replaced as a whole, so threads never see
    # a mix.
    _last: tuple[int, str] = (-1, "")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._access_parts: dict[tuple[object, ...], _AccessParts] = {}
        self._clients: dict[str, str] = {}  # client address -> as a JSON string

    def timestamp(self, created: float) -> str:
        """An ISO 8601 UTC timestamp to the millisecond, formatted once per millisecond."""
        millis = int(created * 1000)
        last_millis, stamp = self._last
        if millis != last_millis:
            second, fraction = divmod(millis, 1000)
            prefix = (
                stamp[:19]
                if second == last_millis // 1000
                else datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            )
            stamp = f"{prefix}.{fraction:03d}Z"
            self._last = (millis, stamp)
        return stamp

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()

    def format_access(self, created: float, entry: AccessEntry) -> str:
        """What :meth:`format` makes of ``entry``'s AccessRecord (with the newline), directly.

        Requests of one kind (same method, path, status, model, version and rows) share all
        of their line but the time, latency, request id and client, so the rest is escaped
        once, by orjson, and kept; a line is then one f-string. Byte for byte equal to
        :meth:`format`'s line (tested); ~12k instructions against ~22k for building the
        line's dict and dumping it whole.
        """
        request_id, method, path, route, status, latency_ms, model, version, rows, client = entry
        key = (method, path, route, status, model, version, rows)
        parts = self._access_parts.get(key)
        if parts is None:
            parts = self._parts_of(key)
        head, tail, before, after = parts
        if client is None:
            client_json = "null"
        else:
            client_json = self._clients.get(client) or self._client_json(client)
        # Ids are tokens modelserve checked or made (see observe.request_id_of): as JSON,
        # only quoted; anything else is escaped the way orjson escapes it.
        rid = request_id if request_id.isalnum() else _escaped(request_id)
        latency = f"{latency_ms:.3f}"
        # The latency is in milliseconds to 3 places, so its shortest form (orjson's) is
        # these digits without trailing zeros: a quarter of the cost of a second float format.
        number = latency.rstrip("0")
        if number[-1] == ".":
            number += "0"
        return (
            f'{{"time":"{self.timestamp(created)}",{head}{latency} ms id={rid}{tail}",'
            f'"request_id":"{rid}",{before},"latency_ms":{number},{after},'
            f'"client":{client_json}}}\n'
        )

    def _client_json(self, client: str) -> str:
        if len(self._clients) >= _MAX_ACCESS_PARTS:
            self._clients.clear()
        quoted = self._clients[client] = orjson.dumps(client).decode()
        return quoted

    def _parts_of(self, key: tuple[object, ...]) -> _AccessParts:
        method, path, route, status, model, version, rows = key
        message_head = _escaped(f"{method} {path} {status} ")
        message_tail = _escaped("" if model is None else f" model={model} v{version} rows={rows}")
        fields = {"method": method, "path": path, "route": route, "status": status}
        more = {"model": model, "version": version, "rows": rows}
        parts = (
            f'"level":"info","logger":"{ACCESS_LOGGER}","message":"{message_head}',
            message_tail,
            orjson.dumps(fields, default=str).decode()[1:-1],
            orjson.dumps(more, default=str).decode()[1:-1],
        )
        if len(self._access_parts) >= _MAX_ACCESS_PARTS:  # e.g. a scan of random paths
            self._access_parts.clear()
        self._access_parts[key] = parts
        return parts


_AccessParts = tuple[str, str, str, str]
_MAX_ACCESS_PARTS = 1024
"""Kinds of request (and client addresses) whose line parts are kept; then kept afresh."""


def _escaped(text: str) -> str:
    """``text`` as the inside of a JSON string, as orjson writes it."""
    return orjson.dumps(text).decode()[1:-1]


AccessEntry = tuple[str, str, str, str, int, float, str | None, int | None, int, str | None]
"""One access line: request id, method, path, route, status, latency (milliseconds, rounded to
3 places), model, version, rows, client: a plain tuple, the cheapest thing to build on every
request."""
ACCESS_FIELDS = (
    "request_id", "method", "path", "route", "status", "latency_ms", "model", "version", "rows",
    "client",
)  # fmt: skip
"""The names of an :data:`AccessEntry`'s values: its record's ``fields`` and their order."""


def access_record(entry: AccessEntry, created: float | None = None) -> AccessRecord:
    """The LogRecord of one access line, for handlers other than modelserve's own."""
    request_id, method, path, _, status, latency_ms, model, version, rows, _ = entry
    model_part = "" if model is None else f" model={model} v{version} rows={rows}"
    return AccessRecord(
        ACCESS_MESSAGE,
        (method, path, status, latency_ms, request_id, model_part),
        dict(zip(ACCESS_FIELDS, entry, strict=True)),
        created,
    )


class AccessRecord(logging.LogRecord):
    """An INFO record of the access logger, built for the cost of one dict update.

    ``LogRecord.__init__`` looks up the thread, process and caller for every record (half the
    cost of an access line at thousands of requests a second); here those are the same for
    every access line (the event loop's thread, this process), so they are looked up once.
    Every attribute a ``logging`` format string can name is set, so handlers and formatters
    configured by the user work unchanged. ``fields`` carries the structured data.
    """

    _static: dict[str, Any] | None = None

    def __init__(
        self,
        msg: str,
        args: tuple[Any, ...],
        fields: dict[str, Any],
        created: float | None = None,
    ) -> None:
        static = AccessRecord._static
        if static is None:
            static = AccessRecord._static = _static_attributes()
        self.__dict__.update(static)
        created = time.time() if created is None else created
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0
        self.relativeCreated = (created - _STARTED) * 1000
        self.msg = msg
        self.args = args
        self.fields = fields


_STARTED = time.time()


def _static_attributes() -> dict[str, Any]:
    reference = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "", (), None)
    names = (
        "name", "levelno", "levelname", "pathname", "filename", "module", "lineno", "funcName",
        "exc_info", "exc_text", "stack_info", "thread", "threadName", "processName", "process",
        "taskName",
    )  # fmt: skip
    return {name: getattr(reference, name, None) for name in names}


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes lines in batches instead of one write per record.

    At thousands of requests a second, one ``write`` + ``flush`` per access-log line is a
    syscall per request. Each line is formatted when it is emitted (so the cost is spread
    evenly over the requests, not paid for a whole batch by the request that fills it) and
    held until ``capacity`` lines are waiting, a record of WARNING or above arrives (written at
    once, with everything before it), or ``flush()`` is called: the app's lifespan calls it
    every second and at shutdown, and ``logging`` calls it at exit. A process killed with
    SIGKILL can lose up to a second of INFO lines.
    """

    def __init__(self, stream: Any = None, capacity: int = 256) -> None:
        super().__init__(stream)
        self.capacity = capacity
        self.pending: list[str] = []

    def emit_access(self, created: float, entry: AccessEntry) -> None:
        """Queue one access line, formatted straight from its data (see :class:`AccessLog`)."""
        formatter = self.formatter
        try:
            if type(formatter) is JsonFormatter:
                line = formatter.format_access(created, entry)
            else:  # the formatter was replaced since the route was chosen
                line = self.format(access_record(entry, created)) + self.terminator
        except Exception:  # logging's contract: a bad record never raises into the caller
            self.handleError(access_record(entry, created))
            return
        self.pending.append(line)
        if len(self.pending) >= self.capacity:
            try:
                self.flush()
            except Exception:
                self.handleError(access_record(entry, created))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record) + self.terminator)
        except Exception:  # logging's contract: a bad record never raises into the caller
            self.handleError(record)
            return
        if len(self.pending) >= self.capacity or record.levelno >= logging.WARNING:
            try:
                self.flush()
            except Exception:
                self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            # Taken before writing: a stream that fails does not make the buffer grow.
            pending, self.pending = self.pending, []
            if pending:
                self.stream.write("".join(pending))
            super().flush()
        finally:
            self.release()


class AccessLog:
    """Writes ``modelserve.access`` records, through a fast lane when nothing else sees them.

    An access record through ``logging`` costs ~20 µs (the record, the handler's lock and
    filters, the formatter) against a predict that costs ~12 µs. When the records' only
    destination is modelserve's own :class:`BufferedStreamHandler` with the JSON formatter
    (what ``modelserve serve`` configures off a terminal) and no filter is on the way, each
    request's line is formatted straight from its data (no LogRecord) and queued there, byte
    for byte the line ``logging`` would have made. Any other set-up (a handler or filter of the
    user's, text lines, pytest's caplog) gets real LogRecords. The route is looked up again
    once a second, so a logging re-configuration takes effect within a second.
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self._direct: BufferedStreamHandler | None = None
        self._checked = -1.0

    def write(self, entry: AccessEntry) -> None:
        created = time.time()
        if created - self._checked >= 1.0:
            self._direct = _only_json_buffer(self.logger)
            self._checked = created
        direct = self._direct
        if direct is not None:
            direct.emit_access(created, entry)
        else:
            self.logger.handle(access_record(entry, created))


def _only_json_buffer(logger: logging.Logger) -> BufferedStreamHandler | None:
    """The handler when it is the one place ``logger``'s INFO records go, unfiltered."""
    if logger.filters:
        return None
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:  # the walk Logger.callHandlers makes
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (
        type(handler) is not BufferedStreamHandler
        or type(handler.formatter) is not JsonFormatter
        or handler.filters
        or handler.level > logging.INFO
    ):
        return None
    return handler


def flush_handlers() -> None:
    """Write out every buffered log line now (the lifespan calls this every second)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BufferedStreamHandler):
            try:
                handler.flush()
            except (OSError, ValueError):  # a closed or broken stream never stops the server
                continue


def resolve_format(log_format: LogFormat) -> Literal["json", "text"]:
    """``auto`` is text when standard error is a terminal (a person reads it), else JSON."""
    if log_format != "auto":
        return log_format
    return "text" if sys.stderr.isatty() else "json"


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """The dictConfig for modelserve's and uvicorn's loggers.

    uvicorn's own access log is switched off: the access logger here writes one line per
    request with the model, version and rows, which uvicorn's cannot know.
    """
    json_lines = resolve_format(log_format) == "json"
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if json_lines else {"format": TEXT_FORMAT}
    )
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"modelserve": formatter},
        "handlers": {
            "stderr": {
                "()": f"{__name__}.BufferedStreamHandler",
                "formatter": "modelserve",
                "stream": "ext://sys.stderr",
                # A person at a terminal sees each line at once; machines get batches.
                "capacity": 256 if json_lines else 1,
            }
        },
        "root": {"handlers": ["stderr"], "level": upper},
        "loggers": {
            "uvicorn": {"level": upper, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": upper, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


__all__ = [
    "ACCESS_FIELDS",
    "ACCESS_LOGGER",
    "ACCESS_MESSAGE",
    "AccessEntry",
    "AccessLog",
    "AccessRecord",
    "BufferedStreamHandler",
    "JsonFormatter",
    "LogFormat",
    "access_record",
    "flush_handlers",
    "logging_config",
    "resolve_format",
]
