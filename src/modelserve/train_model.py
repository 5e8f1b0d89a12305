"""``python -m modelserve.train_model``: the ``modelserve train`` command, where the original
design put it. Training itself lives in :mod:`modelserve.training.train`.
"""

from __future__ import annotations

from modelserve.training.importer import import_pickle
from modelserve.training.train import TrainConfig, TrainResult, train


def main() -> None:
    """Entry point of ``python -m modelserve.train_model``."""
    from modelserve.cli.app import train_app  # noqa: PLC0415 - only when run as a script

    train_app()


if __name__ == "__main__":
    main()

__all__ = ["TrainConfig", "TrainResult", "import_pickle", "main", "train"]
