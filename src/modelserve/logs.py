"""Logging: human-readable lines on a terminal, one JSON object per line everywhere else.

Configured once at the entry point (``modelserve serve``) through :func:`logging_config`, a
``logging.config.dictConfig`` document that uvicorn applies in the server process and in every
worker process alike. Request logs come from the ``modelserve.access`` logger; each record
carries its fields in ``record.fields``, which the JSON formatter writes as top-level keys.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

ACCESS_LOGGER = "modelserve.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LogFormat = Literal["auto", "json", "text"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's fields."""

    _second = -1
    _prefix = ""

    def _time(self, created: float) -> str:
        # An ISO 8601 UTC timestamp; the date-time part is formatted once per second.
        second = int(created)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self._time(record.created),
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


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes lines in batches instead of one write per record.

    At thousands of requests a second, one ``write`` + ``flush`` per access-log line is a
    syscall per request. Lines are held until ``capacity`` of them are waiting, a record of
    WARNING or above arrives (written at once, with everything before it), or ``flush()`` is
    called: the app's lifespan calls it every second and at shutdown, and ``logging`` calls it
    at exit. A process killed with SIGKILL can lose up to a second of INFO lines.
    """

    def __init__(self, stream: Any = None, capacity: int = 256) -> None:
        super().__init__(stream)
        self.capacity = capacity
        self.pending: list[str] = []

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
            lines, self.pending = "".join(self.pending), []
            if lines:
                self.stream.write(lines)
            super().flush()
        finally:
            self.release()


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
    "ACCESS_LOGGER",
    "BufferedStreamHandler",
    "JsonFormatter",
    "LogFormat",
    "flush_handlers",
    "logging_config",
    "resolve_format",
]
