"""A real logbroker for your tests: inside the test process, or as a `logbroker serve` process.

In trio code (and with pytest-trio):

    async with logbroker.testing.run_broker() as broker:      # memory storage, port 0
        client = await logbroker.connect(broker.address)

Anywhere else (plain functions, asyncio, threads, Kafka clients):

    with logbroker.testing.BrokerThread() as broker:           # runs in a background thread
        ...  # broker.address is "127.0.0.1:<port>"

    with logbroker.testing.BrokerThread(kafka_port=0) as broker:   # also speaks Kafka
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.kafka_address})

With logbroker installed, pytest gets two fixtures: `logbroker_broker` (trio, needs pytest-trio)
and `logbroker_thread` (any test); each yields a `RunningBroker` with `.address`.

When the test needs a real process (to kill it with SIGKILL and start it again on the same port,
to send it signals, to read its log, to count its descriptors), `ServeProcess` runs
`logbroker serve` as a child process on free ports:

    with logbroker.testing.ServeProcess("--fsync", "never", data_dir=tmp_path / "data") as broker:
        ...  # broker.address, broker.pid
        broker.kill()                     # SIGKILL: no clean shutdown
        broker.start()                    # recovery, then the same address again
        code, log = broker.stop()         # SIGTERM: a clean shutdown; exit code and stderr

Its calls block (a trio program runs `start` in a thread: `await trio.to_thread.run_sync(broker.start)`).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import attrs
import trio

from logbroker.broker.broker import Broker
from logbroker.engine.engine import Engine
from logbroker.server.config import Settings
from logbroker.server.server import Server, serve_settings

__all__ = ["BrokerThread", "RunningBroker", "ServeProcess", "run_broker"]

#: The lines `logbroker serve` prints on stdout once it accepts connections, in this order.
LISTENING = "logbroker listening on "
SPEAKS_KAFKA = "logbroker speaks Kafka on "
#: How much of the end of its stderr an error about a process that did not start quotes.
STDERR_TAIL_CHARS = 3000
_EXITED = "it closed its stdout (exited) before announcing its address"


@attrs.frozen
class RunningBroker:
    """A broker serving on loopback: connect to `address`."""

    address: str
    server: Server
    broker: Broker

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def kafka_address(self) -> str:
        """Where Kafka clients connect (`kafka_port` must have been given, 0 for a free one)."""
        if self.server.kafka_port < 0:
            raise RuntimeError("this broker has no Kafka listener: start it with kafka_port=0")
        host, port = self.server.kafka_address
        return f"{host}:{port}"

    @property
    def engine(self) -> Engine:
        """The broker's services (`logbroker.engine`), for tests that look inside."""
        return self.server.engine

    def __str__(self) -> str:
        return self.address


@asynccontextmanager
async def run_broker(
    *,
    data_dir: str | None = None,
    fsync: str = "always",
    auto_create_topics: bool | None = None,
    default_partitions: int = 1,
    **server_settings: Any,
) -> AsyncIterator[RunningBroker]:
    """Run a broker in the current trio task tree, on 127.0.0.1 and a free port, started as
    `logbroker serve` starts (`serve_settings`: bind, then open the data directory, then accept).

    Memory storage unless `data_dir` is given (then the files stay for the test to inspect).
    `auto_create_topics`: None leaves `serve`'s default (on: producers create missing topics).
    `server_settings` are any other settings `logbroker serve` takes, by their names
    (`logbroker.server.config.Settings`: limits, timeouts, group defaults, `kafka_port`...).
    """
    if auto_create_topics is not None:
        server_settings["auto_create_topics"] = auto_create_topics
    settings = Settings.from_mapping(
        {
            "host": "127.0.0.1",
            "port": 0,
            "memory": data_dir is None,
            "data_dir": data_dir or "",
            "fsync": fsync,
            "default_partitions": default_partitions,
            **server_settings,
        }
    )
    failed: Exception | None = None
    async with trio.open_nursery() as nursery:
        try:
            server: Server = await nursery.start(serve_settings, settings)
        except Exception as exc:  # raised below, as itself rather than in the nursery's group
            failed = exc
        else:
            try:
                yield RunningBroker(server.address, server, server.broker)
            finally:
                server.request_shutdown()
    if failed is not None:
        raise failed  # a port in use, a locked data directory, ...: nothing was left running


class BrokerThread:
    """`run_broker` in a background thread with its own trio loop, as a plain context manager."""

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._running: RunningBroker | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="logbroker-test-broker", daemon=True)

    def __enter__(self) -> RunningBroker:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._running is not None
        return self._running

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and self._token is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to the thread that waits in __enter__
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with run_broker(**self._settings) as running:
            self._running = running
            self._ready.set()
            await self._stop.wait()


class ServeProcess:
    """`logbroker serve` as a child process on 127.0.0.1, for tests and tools that need a process.

    `args` are more `serve` flags (all but `--port` and `--kafka-port`: the ports are chosen here).
    Storage: `--data-dir data_dir` when given, else `--memory`; `memory=False` without a
    `data_dir` passes neither and leaves the choice to `serve` (LOGBROKER_DATA_DIR, a `--config`
    file, else ./data). `kafka=True` adds a Kafka listener. `env` is added to this process's
    environment (LOGBROKER_FAILPOINTS, LOGBROKER_DATA_DIR, ...).

    The first `start` takes free ports (0); a later `start`, after `stop` or `kill`, asks for the
    same ones, so clients reconnect to the same address. `start` returns once `serve` announces
    its address on stdout ("logbroker listening on HOST:PORT", then "logbroker speaks Kafka on
    HOST:PORT" with `kafka`), and raises `RuntimeError` quoting the end of its stderr when it
    exits first or says nothing within `ready_timeout` seconds.

    Its stderr (the broker's log) is appended to `log_path`, or to an anonymous temporary file:
    never a pipe, which a chatty broker would fill (64 KiB) and then block on when nobody reads
    it. `stderr_text()` reads what the current (or last) run wrote there. Signals go to the PID
    this object started, and only while that process has not been waited for, so never to another
    process that reuses the PID.

    A context manager: entering starts it (unless it runs), leaving stops it (SIGTERM, SIGKILL
    after 30 s) and closes the log; without `with`, call `close()`.
    """

    def __init__(
        self,
        *args: str,
        data_dir: str | os.PathLike[str] | None = None,
        memory: bool | None = None,
        kafka: bool = False,
        env: dict[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        if data_dir is not None and memory:
            raise ValueError("a broker keeps its data in a directory or in memory, not both")
        self.args = args
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.memory = memory if memory is not None else data_dir is None
        self.kafka = kafka
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0  # where the current (or last) run's stderr begins in the log
        self._address = ""
        self._kafka_address = ""
        self.port = 0  # the native listener's port: 0 until the first start
        self.kafka_port = 0

    # -- starting ----------------------------------------------------------------------------------

    def start(self) -> ServeProcess:
        """Start `serve` and wait until it accepts connections (after its recovery); returns self.

        If it does not start, no process is left and the `RuntimeError` quotes its stderr."""
        if self._proc is not None:
            raise RuntimeError(f"logbroker serve is already running (pid {self._proc.pid})")
        if self._log is None:
            self._log = self._open_log()
        self._log_start = os.fstat(self._log.fileno()).st_size
        proc = self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # the announcements only: nothing else is written there
            stderr=self._log,
            env={**os.environ, **self.env},
            bufsize=0,  # unbuffered: select() sees what a read has not taken yet
        )
        try:
            lines, problem = self._announcements(proc, 2 if self.kafka else 1)
        except BaseException:
            self._abandon()
            raise
        if not problem and not lines[0].startswith(LISTENING):
            problem = f"its first line was {lines[0]!r}, not {LISTENING!r}"
        if not problem and self.kafka and not lines[1].startswith(SPEAKS_KAFKA):
            problem = f"its second line was {lines[1]!r}, not {SPEAKS_KAFKA!r}"
        if problem:
            try:  # a process that closed its stdout is exiting: let it finish writing and exit
                code: int | None = proc.wait(timeout=10 if problem == _EXITED else 0)
            except subprocess.TimeoutExpired:
                code = None
            self.kill()
            tail = self.stderr_text()[-STDERR_TAIL_CHARS:]
            self._close_log()
            ended = f"exit code {code}" if code is not None else "killed"
            raise RuntimeError(
                f"logbroker serve did not start: {problem} ({ended}); its stderr ends:\n{tail}"
            )
        self._address = lines[0].split()[-1]
        self.port = int(self._address.rsplit(":", 1)[1])
        if self.kafka:
            self._kafka_address = lines[1].split()[-1]
            self.kafka_port = int(self._kafka_address.rsplit(":", 1)[1])
        return self

    def command(self) -> list[str]:
        """The command line the next `start` runs."""
        if self.data_dir is not None:
            storage = ["--data-dir", str(self.data_dir)]
        else:
            storage = ["--memory"] if self.memory else []
        kafka = ["--kafka-port", str(self.kafka_port)] if self.kafka else []
        serve = [sys.executable, "-m", "logbroker.cli", "serve", "--port", str(self.port)]
        return [*serve, *storage, *kafka, *self.args]

    def _announcements(self, proc: subprocess.Popen[bytes], count: int) -> tuple[list[str], str]:
        """The first `count` lines on the process's stdout, and what went wrong ('' if nothing)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.ready_timeout
        lines: list[str] = []
        pending = b""
        while len(lines) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return lines, f"no address announced within {self.ready_timeout:g} s"
            chunk = os.read(fd, 4096)
            if not chunk:
                return lines, _EXITED
            *complete, pending = (pending + chunk).split(b"\n")
            lines += [line.decode(errors="replace") for line in complete]
        return lines, ""

    # -- what it is --------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The native listener's HOST:PORT (the same across restarts; kept after a stop)."""
        if not self._address:
            raise RuntimeError("logbroker serve has not been started")
        return self._address

    @property
    def kafka_address(self) -> str:
        """The Kafka listener's HOST:PORT (needs `kafka=True`)."""
        if not self.kafka:
            raise RuntimeError("this broker has no Kafka listener: create it with kafka=True")
        if not self._kafka_address:
            raise RuntimeError("logbroker serve has not been started")
        return self._kafka_address

    @property
    def running(self) -> bool:
        """Started, and neither stopped, killed nor waited for (it may have exited by itself)."""
        return self._proc is not None

    @property
    def pid(self) -> int:
        return self._running().pid

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("logbroker serve is not running")
        return self._proc

    def stderr_text(self) -> str:
        """What the current (or last) run has written to stderr so far."""
        if self._log is None:
            return ""
        size = os.fstat(self._log.fileno()).st_size
        # pread: the child shares the file offset (a temporary file is not opened to append).
        data = os.pread(self._log.fileno(), size - self._log_start, self._log_start)
        return data.decode(errors="replace")

    def descriptors(self) -> int:
        """How many file descriptors the running broker holds (from /proc)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mb(self) -> float:
        """The running broker's resident memory in MB (from /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    # -- ending ------------------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        """Send `sig` (SIGTERM or SIGINT: a clean shutdown) and wait for the process to exit.

        Returns its exit code and this run's stderr. If it has not exited within `timeout`
        seconds it is killed and `subprocess.TimeoutExpired` raised.
        """
        proc = self._running()
        proc.send_signal(sig)  # nothing if it has already been reaped
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._ended()
        return code, self.stderr_text()

    def kill(self) -> None:
        """SIGKILL (kill -9) and wait: no shutdown, no flush, no clean-shutdown marker.
        Nothing happens if it is not running."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._ended()

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit by itself (no signal) and return its exit code; raises
        `subprocess.TimeoutExpired`, and leaves it running, if it does not within `timeout`."""
        code = self._running().wait(timeout)
        self._ended()
        return code

    def _ended(self) -> None:
        assert self._proc is not None
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def _abandon(self) -> None:
        """After a failed start: no process, and no log left open."""
        try:
            self.kill()
        finally:
            self._close_log()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the process if it runs (SIGTERM, SIGKILL after `timeout`) and close its log."""
        try:
            if self._proc is not None:
                self.stop(timeout=timeout)
        finally:
            self._close_log()

    def _open_log(self) -> IO[bytes]:
        """Opened at the first start and kept until `close`: every run appends to it."""
        if self.log_path is None:
            return tempfile.TemporaryFile()
        return open(self.log_path, "ab+")

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServeProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self._proc is not None else "not running"
        return f"<ServeProcess {self._address or 'not started'}, {state}>"
