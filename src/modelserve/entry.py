"""The ``modelserve`` console script: the CLI, imported with the cyclic garbage collector paused.

It is paused while the CLI is imported and, for ``serve``, while the server is imported and its
app built (:func:`modelserve.ops.gc.paused_gc`), and is back on before any command does its work.
"""

from __future__ import annotations

from modelserve.ops.gc import paused_gc


def main() -> None:
    """Console script entry point."""
    with paused_gc():
        from modelserve.cli import main as cli_main  # noqa: PLC0415 - imported with gc paused

    cli_main()
