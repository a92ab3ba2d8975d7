"""The file-system seam: every file the storage layer touches is reached through `FileSystem`.

`OsFileSystem` is the real thing, a thin layer over `os`. `FaultFileSystem` (in `fault_fs`) is the
test double: it keeps files in memory, can fail any operation with an errno after N calls, tear or
forget whatever was not fsynced, and counts fsyncs. Keeping the seam this small is what lets tests
drive every failure the disk can produce without touching a real disk.

Durability model the storage layer is written against (the conservative POSIX one): file data is
durable only after `FileHandle.fsync`; a created, renamed or unlinked directory entry only after
`FileSystem.fsync_dir` of its directory.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from typing import ClassVar, Literal, Protocol

from logbroker import failpoints

__all__ = [
    "LOCK_FILE",
    "Buffer",
    "DirectoryLock",
    "FileHandle",
    "FileSystem",
    "OsFileSystem",
    "empty_dir",
    "remove_tree",
    "write_atomic",
]

Buffer = bytes | bytearray | memoryview
OpenMode = Literal["r", "a", "w"]

# writev takes at most IOV_MAX buffers per call.
_IOV_MAX = 1024
#: The file inside a locked directory that carries its lock.
LOCK_FILE = ".lock"


class FileHandle(Protocol):
    """An open file. Appends go to the end; reads are positional."""

    path: str

    def size(self) -> int: ...

    def pread(self, size: int, position: int) -> bytes:
        """Up to `size` bytes from `position` (fewer only at the end of the file)."""
        ...

    def append(self, parts: Sequence[Buffer]) -> None:
        """Write `parts` at the end of the file, all of them, or raise `OSError`.

        After an error some prefix of the bytes may have reached the file: the caller truncates.
        """
        ...

    def truncate(self, size: int) -> None: ...

    def fsync(self) -> None: ...

    def dup(self) -> FileHandle:
        """A second handle on the same file, so a flush in a worker thread survives a close."""
        ...

    def close(self) -> None: ...


class DirectoryLock(Protocol):
    """An exclusive hold on a directory (see `FileSystem.lock`)."""

    def release(self) -> None: ...


class FileSystem(Protocol):
    """The operations the storage layer needs, and no more."""

    def lock(self, path: str) -> DirectoryLock:
        """Hold directory `path` exclusively until `release`, or until the holding process
        ends (a crash frees it too). Raises `BlockingIOError` while anyone else holds it,
        another process or another holder in this one."""
        ...

    def open(self, path: str, mode: OpenMode = "r") -> FileHandle:
        """'r' read only; 'a' read and append, created if missing; 'w' created empty for writing."""
        ...

    def read_file(self, path: str) -> bytes: ...

    def list_dir(self, path: str) -> list[str]: ...

    def exists(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def make_dirs(self, path: str) -> None:
        """Create `path` and missing parents, fsyncing each parent that got a new entry."""
        ...

    def file_size(self, path: str) -> int: ...

    def mtime_ms(self, path: str) -> int:
        """Last modification time, ms since the epoch."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace `dst` with `src`."""
        ...

    def unlink(self, path: str) -> None: ...

    def remove_dir(self, path: str) -> None:
        """Remove an empty directory."""
        ...

    def fsync_dir(self, path: str) -> None: ...

    def free_bytes(self, path: str) -> int | None:
        """Bytes an unprivileged writer may still write on the file system of `path` (None:
        not known)."""
        ...


def write_atomic(fs: FileSystem, path: str, data: bytes) -> None:
    """Replace `path` with `data` so that a crash at any point leaves the old or the new content.

    Writes `path.tmp`, fsyncs it, renames it over `path` and fsyncs the directory. A stray
    `.tmp` left by a crash is removed by whoever opens the directory next.
    """
    tmp = path + ".tmp"
    handle = fs.open(tmp, "w")
    try:
        handle.append([data])
        handle.fsync()
    finally:
        handle.close()
    failpoints.hit("metadata.before_rename")
    fs.rename(tmp, path)
    fs.fsync_dir(os.path.dirname(path) or ".")


def remove_tree(fs: FileSystem, path: str) -> None:
    """Delete a directory and everything below it, then make that durable in its parent."""
    empty_dir(fs, path)
    fs.remove_dir(path)
    fs.fsync_dir(os.path.dirname(path.rstrip("/")) or ".")


def empty_dir(fs: FileSystem, path: str) -> None:
    """Delete everything below a directory, keep the directory, and make that durable."""
    for name in fs.list_dir(path):
        child = os.path.join(path, name)
        if fs.is_dir(child):
            remove_tree(fs, child)
        else:
            fs.unlink(child)
    fs.fsync_dir(path)


class _OsFile:
    __slots__ = ("_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def pread(self, size: int, position: int) -> bytes:
        data = os.pread(self._fd, size, position)
        if len(data) == size or not data:
            return data
        # A short read before the end of the file: keep reading.
        parts = [data]
        got = len(data)
        while got < size:
            more = os.pread(self._fd, size - got, position + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def append(self, parts: Sequence[Buffer]) -> None:
        if len(parts) <= _IOV_MAX:
            expected = sum(map(len, parts))
            written = os.writev(self._fd, parts)
            if written == expected:
                return
        else:
            written = 0
        # A short write (or more parts than one call takes): go on from where it stopped.
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        while views:
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if written:
                views[0] = views[0][written:]
            if views:
                written = os.writev(self._fd, views[:_IOV_MAX])

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def dup(self) -> _OsFile:
        return _OsFile(self.path, os.dup(self._fd))

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class _FlockLock:
    """`flock` on `<dir>/.lock`: per open file, so two holders in one process exclude each
    other too, and the kernel drops it when the process dies."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class OsFileSystem:
    """The real file system."""

    def lock(self, path: str) -> DirectoryLock:
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return _FlockLock(fd)

    _FLAGS: ClassVar[dict[str, int]] = {
        "r": os.O_RDONLY,
        "a": os.O_RDWR | os.O_CREAT | os.O_APPEND,
        "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
    }

    def open(self, path: str, mode: OpenMode = "r") -> FileHandle:
        return _OsFile(path, os.open(path, self._FLAGS[mode] | os.O_CLOEXEC, 0o644))

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def list_dir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def make_dirs(self, path: str) -> None:
        path = os.path.abspath(path)
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        self.make_dirs(parent)
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            return
        self.fsync_dir(parent)

    def file_size(self, path: str) -> int:
        return os.stat(path).st_size

    def mtime_ms(self, path: str) -> int:
        return os.stat(path).st_mtime_ns // 1_000_000

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def remove_dir(self, path: str) -> None:
        os.rmdir(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def free_bytes(self, path: str) -> int | None:
        try:
            stats = os.statvfs(path)
        except OSError:
            return None
        return stats.f_bavail * stats.f_frsize
