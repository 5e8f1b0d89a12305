"""The ``modelserve`` console script: the CLI, started with the cyclic garbage collector paused.

Importing the CLI, FastAPI and the app, and building the app, allocate a few hundred thousand
objects that live as long as the process; the collector would walk them again and again while
they are being made (~3 % of a server's instructions to listening, counted with callgrind).
It is paused while the CLI is imported and, for ``serve``, while the server is imported and
its app built (:func:`paused_gc`), and is back on before any command does its work.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection inside the block; then freeze what exists and restore the collector.

    Frozen objects are left out of every later collection, as the lifespan's ``gc.freeze()``
    leaves the loaded app; the collector is switched back on only if it was on before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def main() -> None:
    """Console script entry point."""
    with paused_gc():
        from modelserve.cli import main as cli_main  # noqa: PLC0415 - imported with gc paused

    cli_main()
