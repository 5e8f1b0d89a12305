"""The ``modelserve`` command line."""

from modelserve.cli.commands import app, main

__all__ = ["app", "main"]
