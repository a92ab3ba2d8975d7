"""`logbroker.testing.ServeProcess`: `logbroker serve` as a child process, started, killed with
SIGKILL, started again on the same port, and stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import trio

import logbroker
import logbroker.sync
from logbroker.testing import ServeProcess


def test_it_starts_and_announces_its_address() -> None:
    with ServeProcess(kafka=True) as broker:
        assert broker.running and broker.pid > 0
        assert broker.address == f"127.0.0.1:{broker.port}" and broker.port > 0
        assert broker.kafka_address == f"127.0.0.1:{broker.kafka_port}" and broker.kafka_port > 0
        assert "--memory" in broker.command()  # no data directory given
        with logbroker.sync.connect(broker.address) as client:
            assert client.list_topics() == []
        with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5):
            pass
        assert broker.descriptors() > 3 and broker.rss_mb() > 1
    assert not broker.running  # leaving the block stopped it


def test_kill_9_then_a_restart_on_the_same_port(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServeProcess(data_dir=data) as broker:
        port, pid = broker.port, broker.pid
        with logbroker.sync.connect(broker.address) as client:
            client.create_topic("t")
            client.produce("t", [b"kept"])
        broker.kill()
        assert not broker.running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone, and reaped
        assert not (data / "t-0" / "clean-shutdown").exists()  # no shutdown ran
        broker.start()
        assert broker.port == port and broker.pid != pid
        with logbroker.sync.connect(broker.address) as client:
            assert [m.value for m in client.consume("t", max_messages=1, timeout=10)] == [b"kept"]
        code, log = broker.stop()
        assert code == 0, log
        assert "recovered after an unclean shutdown" in log and "closed the data directory cleanly" in log
        assert (data / "t-0" / "clean-shutdown").exists()


def test_stop_with_sigint_returns_the_exit_code_and_this_runs_stderr(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    broker = ServeProcess("--log-level", "info", data_dir=tmp_path / "data", log_path=log)
    try:
        broker.start()
        assert broker.stop(signal.SIGINT) == (0, log.read_text())
        broker.start()
        code, second = broker.stop()
        assert code == 0 and "SIGTERM: shutting down" in second and "SIGINT" not in second
        assert log.read_text().count("closed the data directory cleanly") == 2  # appended to
    finally:
        broker.close()


def test_a_failing_start_raises_with_the_end_of_stderr(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)exit code 2.*not 'sometimes'"):
        ServeProcess("--fsync", "sometimes").start()
    with ServeProcess(data_dir=tmp_path / "data") as first:
        second = ServeProcess(data_dir=tmp_path / "data")
        with pytest.raises(RuntimeError, match="is locked by another process"):
            second.start()
        assert not second.running and first.running
    slow = ServeProcess(ready_timeout=0.001)
    with pytest.raises(RuntimeError, match=r"no address announced within 0.001 s \(killed\)"):
        slow.start()
    assert not slow.running


def test_a_broker_that_logs_more_than_a_pipe_holds_keeps_serving() -> None:
    # Each connection logs two debug lines (about 200 bytes): 1000 of them are three times what
    # a pipe holds. A broker writing to a pipe nobody read would block on its log.
    with ServeProcess("--log-level", "debug") as broker:
        for _ in range(1000):
            socket.create_connection(("127.0.0.1", broker.port), timeout=5).close()
        with logbroker.sync.connect(broker.address) as client:
            client.create_topic("after")
        code, log = broker.stop(timeout=60)
    assert code == 0 and len(log) > 3 * 65536 // 2


def test_extra_environment_and_storage_left_to_serve(tmp_path: Path) -> None:
    env = {"LOGBROKER_DATA_DIR": str(tmp_path / "from-env")}
    with ServeProcess(memory=False, env=env) as broker:
        assert "--memory" not in broker.command() and "--data-dir" not in broker.command()
        with logbroker.sync.connect(broker.address) as client:
            client.create_topic("t")
    assert (tmp_path / "from-env" / "t-0").is_dir()
    with pytest.raises(ValueError, match="not both"):
        ServeProcess(data_dir=tmp_path, memory=True)


def test_wait_for_a_process_that_exits_by_itself() -> None:
    with ServeProcess() as broker:
        with pytest.raises(subprocess.TimeoutExpired):
            broker.wait(timeout=0.1)  # still serving
        os.kill(broker.pid, signal.SIGTERM)
        assert broker.wait() == 0 and not broker.running


async def test_from_trio_the_start_runs_in_a_thread(tmp_path: Path) -> None:
    broker = ServeProcess(data_dir=tmp_path / "data")
    try:
        await trio.to_thread.run_sync(broker.start)
        async with await logbroker.connect(broker.address) as client:
            await client.create_topic("t")
        broker.kill()
        await trio.to_thread.run_sync(broker.start)
        async with await logbroker.connect(broker.address) as client:
            assert [t.name for t in await client.list_topics()] == ["t"]
    finally:
        broker.kill()
        broker.close()
