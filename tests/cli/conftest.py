"""Running the `logbroker` command as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run() -> Run:
    def run_(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "logbroker.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run_


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A private copy of the sample partition directory."""
    copy = tmp_path / "orders-0"
    shutil.copytree(FIXTURES / "sample-0", copy)
    return copy
