"""Disk full and I/O errors (fast tier): a real tmpfs filled by a producer, and the N-th write,
fsync or rename failing for every N. The long tier: `python tools/reliability.py disk-full|io-errors`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tools.campaigns.disk_full import run_disk_full, run_io_errors


def can_mount_tmpfs(where: Path) -> bool:
    """Root, and a kernel and container that let it mount (the campaign needs a small disk)."""
    if os.geteuid() != 0:
        return False
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        return False
    subprocess.run(["umount", str(where)], check=True)
    return True


async def test_a_full_disk_refuses_cleanly_and_deleting_a_topic_frees_it(tmp_path: Path) -> None:
    if not can_mount_tmpfs(tmp_path / "probe"):
        pytest.skip("mounting a tmpfs needs root and a system that allows it")
    result = await run_disk_full(tmp_path)
    print(result.summary())
    assert result.ok, result.summary()
    assert result.acked > 100 and result.refused == 20 and result.resumed == 50


async def test_io_errors_at_every_step_never_ack_what_was_not_stored() -> None:
    result = await run_io_errors()
    print(result.summary())
    assert result.ok, result.summary()
    # Some writes come at the shutdown (markers, snapshots): their failure costs no produce.
    assert result.cases > 40 and result.read_only > 0 and result.faults_hit > result.cases // 2
