"""Fixtures chain: settings(tmp_path) -> a store with tiny fitted artifacts -> app -> client."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modelserve.core.settings import Settings
from modelserve.core.store import ModelStore
from modelserve.http.app import create_app
from tests.helpers import (
    ADMIN_KEY,
    free_port,
    running_server,
    serve_command,
    train_penguins,
    train_template,
    train_trees,
    write_penguins,
)


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store trained once: `default` v1 (linear, 10 features), `clf` v1 (4 features)."""
    root = tmp_path_factory.mktemp("template") / "models"
    train_template(root)
    return root


@pytest.fixture(scope="session")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Palmer penguins as a CSV: text, whole-number and decimal columns, empty cells."""
    return write_penguins(tmp_path_factory.mktemp("penguins") / "penguins.csv")


@pytest.fixture(scope="session")
def tabular_store(tmp_path_factory: pytest.TempPathFactory, penguins_csv: Path) -> Path:
    """A store trained once on the penguins: `penguins` v1 (HistGradientBoosting behind
    ordinal codes) and `penguins-lr` v1 (one-hot, imputation, scaling, LogisticRegression)."""
    root = tmp_path_factory.mktemp("tabular") / "models"
    train_penguins(root, penguins_csv)
    return root


@pytest.fixture(scope="session")
def trees_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`forest` (random forest regressor), `boost` (gradient boosting classifier), `hist`
    (hist gradient boosting regressor), each on 4 synthetic features, with compiled forms."""
    root = tmp_path_factory.mktemp("trees") / "models"
    train_trees(root)
    return root


@pytest.fixture(scope="session")
def live(template_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `modelserve serve` process over the template store, shared by the tests that
    only send it requests; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("live") / "server.log"
    with running_server(serve_command(template_store, port), port=port, log=log) as base:
        yield base


@pytest.fixture
def store_path(template_store: Path, tmp_path: Path) -> Path:
    """A private copy of the template store that a test may change."""
    path = tmp_path / "models"
    shutil.copytree(template_store, path)
    return path


@pytest.fixture
def store(store_path: Path) -> ModelStore:
    return ModelStore(store_path)


@pytest.fixture
def settings(store_path: Path) -> Settings:
    return Settings(store=store_path, max_rows=50, max_body_bytes=20_000, admin_api_key=ADMIN_KEY)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Tests that run `modelserve serve` in-process configure logging; undo it afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
