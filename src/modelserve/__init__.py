"""modelserve: turn a trained scikit-learn model into a fast, safe prediction API.

The three layers of the design are separate modules:

* :mod:`modelserve.train_model` fits an estimator and publishes a verified artifact,
* :mod:`modelserve.predictor` wraps one loaded artifact and predicts,
* :mod:`modelserve.main` is the HTTP app (``create_app(settings)`` and a module-level ``app``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelserve")
except PackageNotFoundError:  # pragma: no cover - only when run from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
