"""The real file system behind the seam."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logbroker.storage.fs import OsFileSystem, write_atomic


def test_append_survives_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel may write fewer bytes than asked (a signal, a nearly full disk); such a short
    # write cannot be produced on demand, so os.writev is made to stop after 7 bytes a call.
    real_writev = os.writev

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        first = bytes(buffers[0])[:7] if buffers else b""
        return real_writev(fd, [first])

    fs = OsFileSystem()
    handle = fs.open(str(tmp_path / "f"), "a")
    monkeypatch.setattr(os, "writev", short_writev)
    parts = [b"0123456789", memoryview(b"abcdefghij")[3:], b"", b"XYZ"]
    handle.append(parts)
    monkeypatch.undo()
    handle.close()
    assert (tmp_path / "f").read_bytes() == b"0123456789defghijXYZ"


def test_append_of_more_parts_than_one_call_takes(tmp_path: Path) -> None:
    fs = OsFileSystem()
    handle = fs.open(str(tmp_path / "f"), "a")
    handle.append([b"%d," % i for i in range(3000)])
    handle.close()
    assert (tmp_path / "f").read_bytes() == b"".join(b"%d," % i for i in range(3000))


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    fs = OsFileSystem()
    path = str(tmp_path / "meta")
    write_atomic(fs, path, b"one")
    write_atomic(fs, path, b"two")
    assert (tmp_path / "meta").read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["meta"]


def test_make_dirs_and_reads(tmp_path: Path) -> None:
    fs = OsFileSystem()
    nested = str(tmp_path / "a" / "b" / "c")
    fs.make_dirs(nested)
    fs.make_dirs(nested)  # idempotent
    handle = fs.open(os.path.join(nested, "x"), "a")
    handle.append([b"hello world"])
    assert handle.pread(5, 6) == b"world"
    assert handle.pread(100, 6) == b"world"
    twin = handle.dup()
    handle.close()
    twin.fsync()  # the duplicate outlives the original
    twin.close()
    assert fs.file_size(os.path.join(nested, "x")) == 11
    assert fs.mtime_ms(os.path.join(nested, "x")) > 0
