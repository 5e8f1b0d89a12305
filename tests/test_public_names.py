"""The names users and docs rely on: the original design's three, and every module's __all__."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import modelserve


def _modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(modelserve.__path__, "modelserve.")
        if not info.name.endswith("__main__")
    )


def test_the_original_three_names_are_the_layers_own() -> None:
    from modelserve.core.predictor import Predictor as CorePredictor  # noqa: PLC0415
    from modelserve.http.app import create_app as factory  # noqa: PLC0415
    from modelserve.main import create_app  # noqa: PLC0415
    from modelserve.predictor import Predictor  # noqa: PLC0415
    from modelserve.train_model import train  # noqa: PLC0415
    from modelserve.training.train import train as training_train  # noqa: PLC0415

    assert Predictor is CorePredictor
    assert create_app is factory
    assert train is training_train


def test_python_dash_m_train_model_is_the_train_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "modelserve.train_model", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Fit a model and publish it as the next version in the store." in completed.stdout


@pytest.mark.parametrize("name", _modules())
def test_every_declared_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    for exported in getattr(module, "__all__", []):
        assert hasattr(module, exported), f"{name}.__all__ names {exported!r}, which it lacks"
