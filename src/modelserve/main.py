"""``uvicorn modelserve.main:app``: the HTTP app, where the original design put it.

The app factory lives in :mod:`modelserve.http.app`; ``app`` is built from the environment on
first use, so importing this module for :func:`create_app` builds nothing.
"""

from __future__ import annotations

from modelserve.http.app import ModelServeApp, create_app


def __getattr__(name: str) -> ModelServeApp:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = create_app()
    globals()["app"] = built
    return built


__all__ = ["ModelServeApp", "create_app"]
