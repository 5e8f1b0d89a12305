"""What a process leaves behind when it is killed, and the workers that outlive their supervisor.

``kill -9`` runs no cleanup: a publish leaves its ``.tmp-*`` directory in the store, a
``serve --workers N`` supervisor leaves its metrics directory in the temp folder, and its workers,
whose parent is gone, keep serving on the port. So:

- a directory that a live process is working in is *locked* (``flock`` on the directory
  itself, :func:`lock_directory`); the kernel drops the lock when the process dies, however it
  dies. :func:`remove_stale` removes the directories of a kind that nobody holds and that are
  older than a moment (so one being created right now, not yet locked, is left alone);
- a worker asks the kernel for SIGTERM when its parent dies (:func:`die_with_parent`), so it
  drains and exits as it would on an orderly stop; one whose supervisor died before it could ask
  exits at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

SUPERVISOR_ENV = "_MODELSERVE_SUPERVISOR_PID"
"""Set by ``serve --workers N`` for its workers: the process they must not outlive."""

_PR_SET_PDEATHSIG = 1


def lock_directory(path: Path) -> int:
    """Hold an exclusive lock on ``path`` until the returned descriptor is closed (or we die)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def remove_stale(parent: Path, prefix: str, older_than: float) -> list[Path]:
    """Remove the directories ``parent/prefix*`` that no live process holds; return them.

    Only real directories (no links) whose last change is over ``older_than`` seconds ago are
    looked at; one that cannot be locked is in use and is kept. Failures are logged, not raised:
    cleaning up must never stop what it runs before.
    """
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than:
                continue
            fd = lock_directory(Path(entry.path))
        except OSError:
            continue  # gone meanwhile, or held by a live process
        try:
            shutil.rmtree(entry.path)
            removed.append(Path(entry.path))
        except OSError as exc:
            logger.warning("could not remove the stale directory %s: %s", entry.path, exc)
        finally:
            os.close(fd)
    if removed:
        logger.info(
            "removed %d directories left by processes that were killed: %s",
            len(removed),
            ", ".join(str(path) for path in removed),
        )
    return removed


def die_with_parent() -> None:
    """In a worker of ``serve --workers N``: get SIGTERM when the supervisor dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op. A worker whose supervisor is
    already gone exits.
    """
    expected = os.environ.get(SUPERVISOR_ENV)
    if expected is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        logger.warning("cannot ask to be stopped with the supervisor: errno %d", ctypes.get_errno())
    if os.getppid() != int(expected):
        logger.error("the supervisor (pid %s) is gone; this worker exits", expected)
        raise SystemExit(1)


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock (:func:`lock_directory`) for the block."""
    fd = lock_directory(path)
    try:
        yield
    finally:
        os.close(fd)
