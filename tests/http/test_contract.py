"""Contract fuzzing: schemathesis, all checks, against the OpenAPI document of a live server.

Both APIs are in the one document. The settings (and the one reasoned exception) are in
tests/contract/schemathesis.toml. The seed is fixed so CI is repeatable; run the same command
without --seed to explore further.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelserve.core.store import ModelStore
from modelserve.training.train import TrainConfig, train
from tests.helpers import ADMIN_KEY, free_port, running_server, serve_command

CONFIG = Path(__file__).parents[1] / "contract" / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_all_checks_pass_on_both_apis(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(name="default", samples=100), store)
    train(TrainConfig(name="clf", estimator="logistic-regression", samples=100, features=4), store)
    port = free_port()
    command = serve_command(store.root, port)
    env = {"MODELSERVE_ADMIN_API_KEY": ADMIN_KEY}
    with running_server(
        command, port=port, log=tmp_path / "server.log", env=env, wait_for="/health/ready"
    ) as base:
        completed = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(CONFIG),
                "run",
                f"{base}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "40",
                "--seed",
                "20261126",
                "-H",
                f"Authorization: Bearer {ADMIN_KEY}",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp_path,
        )
    summary = completed.stdout[-3000:]
    assert completed.returncode == 0, summary
    assert " passed" in summary
    assert "failures" not in summary.splitlines()[-1]
