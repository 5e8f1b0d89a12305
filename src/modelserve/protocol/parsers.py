"""The JSON parser the decoders share for their fast paths (simdjson: strict, into buffers)."""

from __future__ import annotations

import threading

import simdjson

_parsers = threading.local()


def simdjson_parser() -> simdjson.Parser:
    """This thread's simdjson parser (a parser is not thread-safe; its documents live until
    its next ``parse``, so callers copy what they keep before parsing again)."""
    parser: simdjson.Parser | None = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = simdjson.Parser()
    return parser
