"""The ``modelserve`` command line (:mod:`modelserve.cli.app`)."""

from modelserve.cli.app import app, main

__all__ = ["app", "main"]
