"""--engine ray without a cluster: deployment options, and a clear error without Ray.

The deployment itself runs in tests/slow/test_ray.py (make test-slow installs Ray).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelserve.cli import app
from modelserve.cli.ray_engine import RayOptions, deployment_options, run
from modelserve.core.errors import EngineUnavailableError
from modelserve.core.settings import Settings


def test_fixed_replicas() -> None:
    options = deployment_options(RayOptions(replicas=3, replica_cpus=0.5))
    assert options["num_replicas"] == 3
    assert options["ray_actor_options"] == {"num_cpus": 0.5}
    assert "autoscaling_config" not in options


def test_autoscaling_between_replicas_and_max_replicas() -> None:
    options = deployment_options(RayOptions(replicas=2, max_replicas=6))
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 2,
        "initial_replicas": 2,
        "max_replicas": 6,
        "target_ongoing_requests": 32.0,
    }
    # A maximum that is not above the minimum is just a fixed count.
    assert deployment_options(RayOptions(replicas=2, max_replicas=2))["num_replicas"] == 2


def test_without_ray_the_engine_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(EngineUnavailableError, match=r"pip install 'modelserve\[ray\]'"):
        run(Settings(store=tmp_path), RayOptions())
    (tmp_path / "default").mkdir()
    result = CliRunner().invoke(
        app, ["serve", "--engine", "ray", "--store", str(tmp_path), "--no-train-if-empty"]
    )
    assert result.exit_code == 1
    assert "--engine ray needs Ray Serve: pip install 'modelserve[ray]'" in result.stderr
