"""Reading the model store's files as the store allows: regular files inside it, within limits.

Anyone who can write to the store (a sync job, a colleague, an attacker with a foothold) can put
anything there: a symbolic link to ``/etc/shadow`` or ``/dev/zero``, a FIFO that blocks every
reader, a 2 GB "manifest", a small zip that unpacks to gigabytes. The store reads every file
through :func:`read_regular`, which

- walks from the store's root one directory at a time with ``O_NOFOLLOW`` (no symbolic link is
  followed, whether it is the file, its version directory or its model directory; the root
  itself is the operator's choice and may be one);
- opens without blocking and reads only a regular file (no FIFO, socket or device);
- checks the file's size against a limit *before* reading it, and reads no more than the limit
  even if it grows meanwhile.

:func:`check_archive` checks a zip (a skops file) from its central directory, before anything is
unpacked: how many members it has and how large they unpack.

Refusals are :class:`RefusedFileError`, an ``OSError`` whose ``strerror`` says why, so the store's
existing translation of read errors (into its own ``ArtifactError`` types) covers them.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """The largest files the store reads; anything larger is refused unread."""

    manifest_bytes: int = 16 * MIB
    """manifest.json (and its signature): a few KB, even with thousands of features."""
    model_bytes: int = 4096 * MIB
    """The model file, and what a skops archive unpacks to in all (MODELSERVE_MAX_MODEL_BYTES)."""
    attachment_bytes: int = 64 * MIB
    """Each attachment: the report's plot and summary, linear.json."""
    archive_members: int = 200_000
    """Files in a skops archive (a 300-tree forest has ~900, a 300-round boosted model ~4,500)."""
    archive_schema_bytes: int = 128 * MIB
    """A skops archive's schema.json unpacked (~4 MB for either of those models)."""


class RefusedFileError(OSError):
    """A store file that is not read: a link, not a regular file, or over its limit."""


def read_regular(root: Path, parts: Sequence[str], limit: int) -> bytes:
    """The bytes of ``root/parts[0]/.../parts[-1]``, a regular file of at most ``limit`` bytes.

    Raises FileNotFoundError when it is not there, :class:`RefusedFileError` when it may not be
    read, and other ``OSError`` for what the system refuses.
    """
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = _open_at(directory, part, _DIRECTORY_FLAGS)
            os.close(directory)
            directory = inner
        handle = _open_at(directory, parts[-1], _FILE_FLAGS)
    finally:
        os.close(directory)
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFileError(errno.EINVAL, "is not a regular file", parts[-1])
        if info.st_size > limit:
            raise _too_large(parts[-1], info.st_size, limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(handle, min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while it was read
            raise _too_large(parts[-1], size, limit)
        return b"".join(chunks)
    finally:
        os.close(handle)


def is_directory(root: Path, parts: Sequence[str]) -> bool:
    """Whether ``root/parts...`` is a directory reached without following any link."""
    try:
        directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        for part in parts:
            inner = _open_at(directory, part, _DIRECTORY_FLAGS)
            os.close(directory)
            directory = inner
    except OSError:
        return False
    finally:
        os.close(directory)
    return True


def check_archive(payload: bytes, limits: StoreLimits) -> None:
    """Refuse a zip whose central directory promises more than ``limits`` allow.

    Only the directory at the end of the archive is read; nothing is unpacked. The sizes it
    declares are the most Python's zipfile (which skops uses) will unpack.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise RefusedFileError(errno.EINVAL, f"is not a zip archive ({exc})") from exc
    with archive:
        members = archive.infolist()
        if len(members) > limits.archive_members:
            raise RefusedFileError(
                errno.EFBIG,
                f"holds {len(members)} files; the limit is {limits.archive_members}",
            )
        unpacked = sum(member.file_size for member in members)
        if unpacked > limits.model_bytes:
            raise RefusedFileError(
                errno.EFBIG,
                f"unpacks to {unpacked} bytes; the limit is {limits.model_bytes} "
                "(MODELSERVE_MAX_MODEL_BYTES)",
            )
        for member in members:
            if member.filename == "schema.json" and member.file_size > limits.archive_schema_bytes:
                raise RefusedFileError(
                    errno.EFBIG,
                    f"has a schema.json of {member.file_size} bytes unpacked; the limit is "
                    f"{limits.archive_schema_bytes}",
                )


def _open_at(directory: int, name: str, flags: int) -> int:
    try:
        return os.open(name, flags, dir_fd=directory)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            try:
                info = os.stat(name, dir_fd=directory, follow_symlinks=False)
            except OSError:
                raise exc from None
            if stat.S_ISLNK(info.st_mode):
                raise RefusedFileError(
                    errno.ELOOP, "is a symbolic link (the store follows none)", name
                ) from None
            raise RefusedFileError(
                errno.EINVAL, "is not a regular file or directory", name
            ) from None
        raise


def _too_large(name: str, size: int, limit: int) -> RefusedFileError:
    return RefusedFileError(errno.EFBIG, f"has {size} bytes; the limit is {limit}", name)
