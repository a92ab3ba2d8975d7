"""Running the `logbroker` command as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A private copy of the sample partition directory."""
    copy = tmp_path / "orders-0"
    shutil.copytree(FIXTURES / "sample-0", copy)
    return copy


class ServeProcess:
    """`logbroker serve` as a subprocess on a free port."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, timeout: float = 30) -> ServeProcess:
        import os
        import select

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "logbroker.cli",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("logbroker listening on "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"serve did not start: {line!r} {err.decode()[-2000:]}")
        self.address = line.split()[-1]
        os.set_blocking(self.proc.stdout.fileno(), False)
        return self

    def stop(self, sig: int = 15, timeout: float = 30) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(*args: str, data_dir: Path | None = None) -> ServeProcess:
        process = ServeProcess(data_dir or tmp_path / "data", *args).start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()
