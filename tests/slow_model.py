"""A model whose predict takes a known time: for deadline, overload and shutdown tests.

Published as a pickle (it is a custom class), so servers that load it need allow_pickle.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

from modelserve.core.manifest import LINEAR_FILE
from modelserve.core.store import LoadPolicy, ModelStore, sha256_hex
from modelserve.training.train import TrainConfig, train


class SlowRegressor:
    """Wraps a fitted regressor; ``predict`` sleeps ``delay`` seconds first."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.n_features_in_ = inner.n_features_in_

    def predict(self, X: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.predict(X)


class FailingRegressor(SlowRegressor):
    """Raises a plain RuntimeError (no modelserve error) for a row whose first value is 13."""

    def predict(self, X: Any) -> Any:
        if X[0][0] == FAILING_VALUE:
            raise RuntimeError("the model failed")
        return self.inner.predict(X)


FAILING_VALUE = 13.0


def publish_slow_model(
    store: ModelStore, name: str, delay: float, model_class: type[SlowRegressor] = SlowRegressor
) -> None:
    """Publish `name` v1: a 10-feature linear model whose predict sleeps ``delay`` seconds."""
    train(TrainConfig(name=name, samples=100, format="pickle"), store)
    inner = store.load(name, 1, LoadPolicy(allow_pickle=True)).estimator
    payload = pickle.dumps(model_class(inner, delay))
    directory = store.version_dir(name, 1)
    (directory / "model.pkl").write_bytes(payload)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.update(sha256=sha256_hex(payload), size_bytes=len(payload))
    # The linear form published by training describes the inner model, not this one.
    del manifest["attachments"][LINEAR_FILE]
    (directory / LINEAR_FILE).unlink()
    (directory / "manifest.json").write_text(json.dumps(manifest))
