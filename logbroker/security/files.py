"""The security files' one way to be written: private, whole or not at all, and durable."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["write_private"]


def write_private(directory: str, path: str, data: bytes) -> None:
    """Replace `path` (in `directory`) with `data`: mode 0600 in a 0700 directory, through a
    unique temporary file, fsynced, renamed over the old one, and the rename fsynced, so a
    reader or a crash sees the old file or the new one, never part of one."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is subject to the umask
    # mkstemp gives a unique name (two writers never share a temporary file) and mode 0600.
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # Makes the rename itself durable: without it a crash can bring the old file back.
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
