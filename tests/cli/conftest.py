"""Running the `logbroker` command as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logbroker.testing import ServeProcess

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run() -> Run:
    def run_(
        *args: str, timeout: float = 60, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        import os

        return subprocess.run(
            [sys.executable, "-m", "logbroker.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={**os.environ, **(env or {})},
        )

    return run_


Spawn = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start `logbroker ARGS` in the background, with pipes for stdin, stdout and stderr (bytes);
    whatever still runs after the test is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn_(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "logbroker.cli", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(process)
        return process

    yield spawn_
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass  # unsent input


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A private copy of the sample partition directory."""
    copy = tmp_path / "orders-0"
    shutil.copytree(FIXTURES / "sample-0", copy)
    return copy


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start `logbroker serve` with more flags, its data in `data_dir` (tmp_path/data by default,
    none with `--memory`), `env` added to its environment; whatever still runs after the test is
    killed."""
    started: list[ServeProcess] = []

    def start(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> ServeProcess:
        if "--memory" in args:  # serve refuses a data directory with it
            process = ServeProcess(*(arg for arg in args if arg != "--memory"), memory=True, env=env)
        else:
            process = ServeProcess(*args, data_dir=data_dir or tmp_path / "data", env=env)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill()
        process.close()
