"""`FaultFileSystem`: an in-memory `FileSystem` that fails, crashes and forgets on command.

It is the test double of the file-system seam (SQLite's test VFS is the model). It keeps, for every
file, what the page cache holds and what was made durable by the last fsync, and for every
directory the entries a `fsync_dir` made durable. On top of that a test can:

- fail an operation with an errno: `fail("fsync", after=3, error=errno.EIO)`;
- limit the space: `FaultFileSystem(capacity=4096)` fails writes with ENOSPC once full, after
  writing what fits (as a real disk does);
- crash at the N-th mutating operation: `crash_after(n)` makes that operation raise
  `SimulatedCrash` before it does anything;
- lose power: `power_loss()` throws away every byte and directory entry not covered by a completed
  fsync; with `tear=True` it keeps a random prefix of the unsynced tail of each file (a torn write)
  and of each directory's unsynced entry changes (file systems journal those in order);
- count: `counts["fsync"]`, `open_handles`.

It is deterministic and thread-safe (a worker thread may fsync while the test appends).
"""

from __future__ import annotations

import errno as errno_codes
import itertools
import posixpath
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import attrs

from logbroker.storage.fs import Buffer, DirectoryLock, FileHandle, OpenMode

__all__ = ["FaultFileSystem", "SimulatedCrash"]

MUTATING_OPS = ("open", "write", "truncate", "fsync", "rename", "unlink", "mkdir", "rmdir", "fsync_dir")


class SimulatedCrash(BaseException):
    """The simulated process died at an armed crash point.

    A `BaseException`, like `KeyboardInterrupt`, so that no `except Exception` in the code under
    test can swallow it.
    """


class _Inode:
    __slots__ = ("data", "durable", "mtime_ms", "number")

    def __init__(self, number: int, mtime_ms: int) -> None:
        self.number = number
        self.data = bytearray()
        self.durable = b""
        self.mtime_ms = mtime_ms


class _Dir:
    __slots__ = ("durable", "entries", "pending")

    def __init__(self) -> None:
        self.entries: dict[str, _Inode | _Dir] = {}
        self.durable: dict[str, _Inode | _Dir] = {}
        # Entry changes since the last fsync of this directory, in order: (name, node or None).
        self.pending: list[tuple[str, _Inode | _Dir | None]] = []

    def set(self, name: str, node: _Inode | _Dir) -> None:
        self.entries[name] = node
        self.pending.append((name, node))

    def remove(self, name: str) -> _Inode | _Dir:
        node = self.entries.pop(name)
        self.pending.append((name, None))
        return node

    def sync(self) -> None:
        self.durable = dict(self.entries)
        self.pending.clear()


@attrs.define
class _Fault:
    op: str
    remaining_before: int
    error: int
    times: int | None


class FaultFileSystem:
    """In-memory file system with fault injection, crash points and simulated power loss."""

    def __init__(
        self,
        *,
        capacity: int | None = None,
        clock_ms: Callable[[], int] | None = None,
        seed: int = 0,
    ) -> None:
        self.capacity = capacity
        self.counts: Counter[str] = Counter()
        self.open_handles = 0
        self._clock = clock_ms or (lambda: int(time.time() * 1000))
        self._rng = random.Random(seed)
        self._root = _Dir()
        self._faults: list[_Fault] = []
        self._crash_in: int | None = None
        self._epoch = 0
        self._inode_numbers = itertools.count(1)
        self._lock = threading.RLock()
        #: Locked directories, with the epoch (the simulated process's life) they were taken in.
        self._dir_locks: dict[str, int] = {}

    # -- test controls -------------------------------------------------------------------------

    def fail(self, op: str, *, after: int = 0, error: int = errno_codes.EIO, times: int | None = 1) -> None:
        """Make the (after+1)-th next call of `op` fail with `error`, `times` times (None: forever).

        `op` is one of "open", "write", "truncate", "fsync", "rename", "unlink", "mkdir", "rmdir",
        "fsync_dir", "read". A failing write first writes half of its bytes, as a disk that fills
        up mid-write does.
        """
        with self._lock:
            self._faults.append(_Fault(op, after, error, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._crash_in = None

    def crash_after(self, n: int) -> None:
        """Let `n` more mutating operations run; the next one raises `SimulatedCrash`."""
        with self._lock:
            self._crash_in = n

    def kill(self) -> None:
        """The process dies (kill -9) and the machine does not: its handles and directory locks
        go with it, and the page cache (everything written) survives; armed faults and crash
        points are cleared."""
        with self._lock:
            self._epoch += 1
            self.open_handles = 0
            self._faults.clear()
            self._crash_in = None

    def power_loss(self, *, tear: bool = False) -> None:
        """Forget everything that was not made durable; with `tear`, keep torn unsynced tails.

        Every open handle and directory lock dies with the simulated process; armed faults and
        crash points are cleared.
        """
        with self._lock:
            self._epoch += 1
            self.open_handles = 0
            self._faults.clear()
            self._crash_in = None
            self._revert(self._root, tear)

    def free_bytes(self, path: str) -> int | None:
        with self._lock:
            return None if self.capacity is None else max(self.capacity - self.used_bytes(), 0)

    def used_bytes(self) -> int:
        with self._lock:
            return sum(len(inode.data) for inode in self._inodes(self._root))

    # -- FileSystem ----------------------------------------------------------------------------

    def lock(self, path: str) -> DirectoryLock:
        """Locks live as long as the simulated process: a power loss frees them."""
        with self._lock:
            self._dir(path)  # it exists
            key = "/" + "/".join(self._split(path))
            if self._dir_locks.get(key) == self._epoch:
                raise BlockingIOError(errno_codes.EWOULDBLOCK, "locked", path)
            self._dir_locks[key] = self._epoch
            return _FaultLock(self, key, self._epoch)

    def _unlock(self, key: str, epoch: int) -> None:
        with self._lock:
            if self._dir_locks.get(key) == epoch:
                del self._dir_locks[key]

    def open(self, path: str, mode: OpenMode = "r") -> FileHandle:
        with self._lock:
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if mode == "r" or (mode == "a" and node is not None):
                self._check("open", mutating=False)
                if node is None:
                    raise FileNotFoundError(errno_codes.ENOENT, "No such file", path)
                if isinstance(node, _Dir):
                    raise IsADirectoryError(errno_codes.EISDIR, "Is a directory", path)
                return self._handle(path, node, mode)
            self._check("open")
            if isinstance(node, _Dir):
                raise IsADirectoryError(errno_codes.EISDIR, "Is a directory", path)
            if node is None:
                node = _Inode(next(self._inode_numbers), self._clock())
                parent.set(name, node)
            else:
                node.data = bytearray()
                node.mtime_ms = self._clock()
            return self._handle(path, node, mode)

    def read_file(self, path: str) -> bytes:
        with self._lock:
            self._check("read", mutating=False)
            return bytes(self._file(path).data)

    def list_dir(self, path: str) -> list[str]:
        with self._lock:
            return list(self._dir(path).entries)

    def exists(self, path: str) -> bool:
        with self._lock:
            try:
                parent, name = self._parent(path)
            except OSError:
                return False
            return path == "/" or name in parent.entries

    def is_dir(self, path: str) -> bool:
        with self._lock:
            try:
                self._dir(path)
            except OSError:
                return False
            return True

    def make_dirs(self, path: str) -> None:
        with self._lock:
            current = self._root
            for name in self._split(path):
                node = current.entries.get(name)
                if node is None:
                    self._check("mkdir")
                    node = _Dir()
                    current.set(name, node)
                    self._check("fsync_dir")
                    current.sync()
                elif not isinstance(node, _Dir):
                    raise NotADirectoryError(errno_codes.ENOTDIR, "Not a directory", path)
                current = node

    def file_size(self, path: str) -> int:
        with self._lock:
            return len(self._file(path).data)

    def mtime_ms(self, path: str) -> int:
        with self._lock:
            return self._file(path).mtime_ms

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            self._check("rename")
            src_parent, src_name = self._parent(src)
            dst_parent, dst_name = self._parent(dst)
            if src_name not in src_parent.entries:
                raise FileNotFoundError(errno_codes.ENOENT, "No such file", src)
            dst_parent.set(dst_name, src_parent.remove(src_name))

    def unlink(self, path: str) -> None:
        with self._lock:
            self._check("unlink")
            self._file(path)  # a file must be there
            parent, name = self._parent(path)
            parent.remove(name)

    def remove_dir(self, path: str) -> None:
        with self._lock:
            self._check("rmdir")
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if not isinstance(node, _Dir):
                raise NotADirectoryError(errno_codes.ENOTDIR, "Not a directory", path)
            if node.entries:
                raise OSError(errno_codes.ENOTEMPTY, "Directory not empty", path)
            parent.remove(name)

    def fsync_dir(self, path: str) -> None:
        with self._lock:
            self._check("fsync_dir")
            self._dir(path).sync()

    # -- handle operations (called by _Handle under the lock) ----------------------------------

    def _append(self, handle: _Handle, parts: Sequence[Buffer]) -> None:
        with self._lock:
            self._alive(handle)
            data = b"".join(bytes(p) for p in parts)
            failure = self._check("write")
            room = None
            if self.capacity is not None:
                room = max(self.capacity - self.used_bytes(), 0)
            if failure is not None:
                handle.inode.data += data[: len(data) // 2]
                handle.inode.mtime_ms = self._clock()
                raise failure
            if room is not None and len(data) > room:
                handle.inode.data += data[:room]
                handle.inode.mtime_ms = self._clock()
                raise OSError(errno_codes.ENOSPC, "No space left on device", handle.path)
            handle.inode.data += data
            handle.inode.mtime_ms = self._clock()

    def _truncate(self, handle: _Handle, size: int) -> None:
        with self._lock:
            self._alive(handle)
            self._raise(self._check("truncate"))
            del handle.inode.data[size:]
            handle.inode.mtime_ms = self._clock()

    def _fsync(self, handle: _Handle) -> None:
        with self._lock:
            self._alive(handle)
            self._raise(self._check("fsync"))
            handle.inode.durable = bytes(handle.inode.data)

    def _pread(self, handle: _Handle, size: int, position: int) -> bytes:
        with self._lock:
            self._alive(handle)
            self._raise(self._check("read", mutating=False))
            return bytes(handle.inode.data[position : position + size])

    # -- internals -----------------------------------------------------------------------------

    def _handle(self, path: str, inode: _Inode, mode: OpenMode) -> _Handle:
        self.open_handles += 1
        return _Handle(self, path, inode, self._epoch, mode)

    def _alive(self, handle: _Handle) -> None:
        if handle.epoch != self._epoch or handle.closed:
            raise OSError(errno_codes.EBADF, "Bad file descriptor", handle.path)

    def _check(self, op: str, *, mutating: bool = True) -> OSError | None:
        """Count `op`, fire an armed crash point, and return the error an armed fault asks for.

        Every operation but `write` raises the returned error itself (via `_raise`); a write
        first stores part of its bytes.
        """
        self.counts[op] += 1
        if mutating and self._crash_in is not None:
            if self._crash_in == 0:
                self._crash_in = None
                raise SimulatedCrash(op)
            self._crash_in -= 1
        for fault in self._faults:
            if fault.op != op:
                continue
            if fault.remaining_before > 0:
                fault.remaining_before -= 1
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
            error = OSError(fault.error, f"injected {op} failure", op)
            if op != "write":
                raise error
            return error
        return None

    @staticmethod
    def _raise(error: OSError | None) -> None:
        if error is not None:
            raise error

    @staticmethod
    def _split(path: str) -> list[str]:
        norm = posixpath.normpath(posixpath.join("/", path))
        return [part for part in norm.split("/") if part]

    def _dir(self, path: str) -> _Dir:
        current = self._root
        for name in self._split(path):
            node = current.entries.get(name)
            if not isinstance(node, _Dir):
                raise FileNotFoundError(errno_codes.ENOENT, "No such directory", path)
            current = node
        return current

    def _parent(self, path: str) -> tuple[_Dir, str]:
        parts = self._split(path)
        if not parts:
            return self._root, ""
        return self._dir("/" + "/".join(parts[:-1])), parts[-1]

    def _file(self, path: str) -> _Inode:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise FileNotFoundError(errno_codes.ENOENT, "No such file", path)
        if isinstance(node, _Dir):
            raise IsADirectoryError(errno_codes.EISDIR, "Is a directory", path)
        return node

    def _inodes(self, directory: _Dir) -> list[_Inode]:
        found: list[_Inode] = []
        for node in directory.entries.values():
            if isinstance(node, _Dir):
                found.extend(self._inodes(node))
            else:
                found.append(node)
        return found

    def _revert(self, directory: _Dir, tear: bool) -> None:
        entries = dict(directory.durable)
        if tear and directory.pending:
            for name, change in directory.pending[: self._rng.randrange(len(directory.pending) + 1)]:
                if change is None:
                    entries.pop(name, None)
                else:
                    entries[name] = change
        directory.entries = entries
        directory.sync()
        for node in directory.entries.values():
            if isinstance(node, _Dir):
                self._revert(node, tear)
                continue
            durable = node.durable
            pending = len(node.data) - len(durable)
            if tear and pending > 0 and node.data.startswith(durable):
                keep = self._rng.randrange(pending + 1)
                node.data = bytearray(node.data[: len(durable) + keep])
            else:
                node.data = bytearray(durable)
            node.durable = bytes(node.data)


class _Handle:
    """A handle of `FaultFileSystem`; it dies with a simulated power loss."""

    __slots__ = ("closed", "epoch", "fs", "inode", "mode", "path")

    def __init__(self, fs: FaultFileSystem, path: str, inode: _Inode, epoch: int, mode: OpenMode):
        self.fs = fs
        self.path = path
        self.inode = inode
        self.epoch = epoch
        self.mode = mode
        self.closed = False

    def size(self) -> int:
        return len(self.inode.data)

    def pread(self, size: int, position: int) -> bytes:
        return self.fs._pread(self, size, position)

    def append(self, parts: Sequence[Buffer]) -> None:
        if self.mode == "r":
            raise OSError(errno_codes.EBADF, "File not open for writing", self.path)
        self.fs._append(self, parts)

    def truncate(self, size: int) -> None:
        self.fs._truncate(self, size)

    def fsync(self) -> None:
        self.fs._fsync(self)

    def dup(self) -> _Handle:
        with self.fs._lock:
            self.fs._alive(self)
            self.fs.open_handles += 1
            return _Handle(self.fs, self.path, self.inode, self.epoch, self.mode)

    def close(self) -> None:
        with self.fs._lock:
            if not self.closed:
                self.closed = True
                if self.epoch == self.fs._epoch:
                    self.fs.open_handles -= 1


class _FaultLock:
    def __init__(self, fs: FaultFileSystem, key: str, epoch: int) -> None:
        self._fs, self._key, self._epoch = fs, key, epoch

    def release(self) -> None:
        self._fs._unlock(self._key, self._epoch)
