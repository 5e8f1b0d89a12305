"""The cyclic garbage collector, paused while long-lived objects are made.

Importing the CLI, FastAPI and the app, and building the app, allocate a few hundred thousand
objects that live as long as the process; the collector would walk them again and again while
they are being made. :func:`paused_gc` pauses it for such a block and freezes what the block
made, so later collections leave it out.
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
