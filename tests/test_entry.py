"""The console script: the collector paused while the CLI and the server start, then back on."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from modelserve.ops.gc import paused_gc


def test_paused_gc_pauses_the_collector_and_freezes_what_the_block_made() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with paused_gc():
        assert not gc.isenabled()
        made = [[index] for index in range(1000)]  # 1,000 tracked containers
    assert gc.isenabled()
    assert all(gc.is_tracked(item) for item in made)
    # Kept out of every later collection, as the lifespan's gc.freeze() keeps the app's objects.
    assert gc.get_freeze_count() >= frozen + len(made)


def test_paused_gc_restores_the_collector_after_an_error() -> None:
    with pytest.raises(RuntimeError, match="boom"), paused_gc():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_paused_gc_leaves_a_collector_that_was_off_off() -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_python_dash_m_and_the_console_script_run_the_cli_through_the_entry() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gc, sys; from modelserve import entry; sys.argv = ['modelserve', '--help'];"
            "\ntry:\n    entry.main()\nexcept SystemExit as exit:\n"
            "    print('exit', exit.code, 'gc on', gc.isenabled())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "serve" in result.stdout  # the CLI's own help
    assert result.stdout.splitlines()[-1] == "exit 0 gc on True"
