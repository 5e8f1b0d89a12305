"""scripts/bootstrap, the install/start/healthcheck steps shared by make, CI and the Dockerfile."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from modelserve.core.store import ModelStore
from modelserve.training.train import TrainConfig, train
from tests.helpers import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "scripts" / "bootstrap"
VENV = {"VENV": sys.prefix}


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BOOTSTRAP), "healthcheck"],
        env={**os.environ, **VENV, "MODELSERVE_PORT": str(port)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_serve_starts_the_server_and_healthcheck_follows_readiness(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(samples=100), store)
    port = free_port()
    command = [str(BOOTSTRAP), "serve", "--store", str(store.root), "--port", str(port)]
    with running_server(command, port=port, log=tmp_path / "server.log", env=VENV):
        assert healthcheck(port).returncode == 0
    result = healthcheck(port)  # stopped: nothing listens any more
    assert result.returncode == 1
    assert f"not ready: http://127.0.0.1:{port}/health/ready" in result.stderr


def test_healthcheck_fails_while_the_server_is_not_ready(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    (train(TrainConfig(samples=100), store).path / "model.skops").write_bytes(b"corrupt")
    port = free_port()
    command = [str(BOOTSTRAP), "serve", "--store", str(store.root), "--port", str(port)]
    with running_server(command, port=port, log=tmp_path / "server.log", env=VENV):
        result = healthcheck(port)
    assert result.returncode == 1
    assert "503" in result.stderr


def test_unknown_subcommand_prints_usage() -> None:
    result = subprocess.run(
        [str(BOOTSTRAP), "frobnicate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "usage: scripts/bootstrap install" in result.stderr


def test_the_dockerfile_installs_starts_and_probes_through_bootstrap() -> None:
    """No container engine here: the Dockerfile must at least call the script CI exercises."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    kinds = "RUN|ENTRYPOINT|CMD|HEALTHCHECK|USER|VOLUME|FROM"
    # An instruction and its continuation lines (ending in a backslash).
    pattern = rf"^({kinds})\b((?:[^\n]*\\\n)*[^\n]*)"
    instructions = re.findall(pattern, dockerfile, flags=re.MULTILINE)
    by_kind: dict[str, list[str]] = {}
    for kind, rest in instructions:
        by_kind.setdefault(kind, []).append(rest)
    assert len(by_kind["FROM"]) == 2  # multi-stage
    assert any("scripts/bootstrap install" in run for run in by_kind["RUN"])
    assert by_kind["ENTRYPOINT"] == [' ["/app/scripts/bootstrap", "serve"]']
    assert '"/app/scripts/bootstrap", "healthcheck"' in by_kind["HEALTHCHECK"][0]
    assert by_kind["USER"] == [" modelserve"]
    assert by_kind["VOLUME"] == [' ["/models"]']
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BOOTSTRAP) install" in makefile
    assert "$(BOOTSTRAP) serve" in makefile
