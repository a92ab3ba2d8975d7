"""`logbroker serve` as a subprocess that a campaign can kill -9 and start again on the same port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

__all__ = ["BrokerProcess"]


class BrokerProcess:
    """A broker on 127.0.0.1 with file storage in `data_dir`. The first start takes a free port;
    later starts reuse it, so clients reconnect to the same address."""

    def __init__(self, data_dir: Path, *args: str, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, *, ready_within: float = 30.0) -> None:
        """Start the broker and wait until it accepts connections (recovery included)."""
        proc = self._spawn()
        stdout = proc.stdout
        assert stdout is not None
        with trio.fail_after(ready_within):
            line = (await trio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)).decode()
        if not line.startswith("logbroker listening on "):
            self.kill()
            raise RuntimeError(f"the broker did not start (exit {proc.poll()}): {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.starts += 1

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self.proc is None, "already running"
        command = [
            sys.executable,
            "-m",
            "logbroker.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        if self.log_path is None:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        else:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        return self.proc

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no clean-shutdown marker."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def stop(self, *, timeout: float = 30.0) -> int:
        """SIGTERM and wait: a graceful shutdown. Returns the exit code."""
        assert self.proc is not None
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        return code

    def descriptors(self) -> int:
        """How many file descriptors the running broker holds."""
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_mb(self) -> float:
        """The running broker's resident memory (MB)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0
