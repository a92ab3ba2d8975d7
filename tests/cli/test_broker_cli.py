"""The broker's command line, as subprocesses: serve, topics, produce, consume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kafka.record.memory_records import MemoryRecords

from logbroker.testing import ServeProcess
from tests.cli.conftest import Run

Serve = Callable[..., ServeProcess]


def test_topics_produce_consume(run: Run, serve_process: Serve) -> None:
    server = serve_process()
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    created = run(
        "topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000", env=env
    )
    assert created.returncode == 0 and "created topic orders with 3 partition(s)" in created.stdout
    listed = run("topics", "list", "--json", env=env)
    assert json.loads(listed.stdout) == [{"name": "orders", "partitions": 3, "internal": False}]
    assert run("topics", "list", env=env).stdout.splitlines() == ["NAME   PARTITIONS", "orders          3"]
    produced = run(
        "produce",
        "orders",
        "--key-separator",
        ":",
        "--header",
        "source=cli",
        input="a:1\nb:2\nc:3\na:4\n",
        env=env,
    )
    assert produced.returncode == 0 and "produced 4 message(s) to orders" in produced.stderr
    consumed = run("consume", "orders", "--format", "json", "--idle-timeout", "1", env=env)
    assert consumed.returncode == 0
    messages = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert len(messages) == 4
    assert set(messages[0]) == {
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
        "delivery_count",
    }
    by_key: dict[str, list[str]] = {}
    for m in messages:
        by_key.setdefault(m["key"], []).append(m["value"])
        assert m["headers"] == [["source", "cli"]] and m["delivery_count"] == 1
    assert by_key == {"a": ["1", "4"], "b": ["2"], "c": ["3"]}  # one key, one partition, in order
    values = run(
        "consume",
        "orders",
        "--max-messages",
        "2",
        "--partition",
        "1",
        "--idle-timeout",
        "3",
        "--bootstrap",
        server.address,
    )
    assert values.returncode == 0
    described = run("topics", "describe", "orders", "--json", env=env)
    description = json.loads(described.stdout)
    assert description["partitions"] == 3 and description["config"]["retention.ms"] == "3600000"
    assert sum(p["log_end_offset"] for p in description["partition_details"]) == 4
    assert run("topics", "delete", "orders", env=env).returncode == 0
    assert json.loads(run("topics", "list", "--json", env=env).stdout) == []
    assert not (server.data_dir / "orders-0").exists()


def test_consume_from_positions(run: Run, serve_process: Serve) -> None:
    server = serve_process()
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", env=env)
    run("produce", "t", input="".join(f"{i}\n" for i in range(10)), env=env)
    assert run("consume", "t", "--from", "7", "--idle-timeout", "0.5", env=env).stdout.split() == [
        "7",
        "8",
        "9",
    ]
    assert run("consume", "t", "--from", "latest", "--idle-timeout", "0.5", env=env).stdout == ""
    assert run("consume", "t", "--from", "@0", "--max-messages", "2", env=env).stdout.split() == ["0", "1"]
    assert run(
        "consume", "t", "--from", "2020-01-01T00:00:00Z", "--max-messages", "1", env=env
    ).stdout.split() == ["0"]
    assert run("consume", "t", "--from", "2999-01-01", "--idle-timeout", "0.5", env=env).stdout == ""
    bad = run("consume", "t", "--from", "yesterday", env=env)
    assert bad.returncode == 2 and "--from" in bad.stderr


def test_errors_are_one_line_and_exit_1(run: Run, serve_process: Serve) -> None:
    server = serve_process("--no-auto-create-topics")  # so that a produce of a missing topic fails
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    for args, message in [
        (("topics", "create", "bad name"), "invalid topic name"),
        (("topics", "describe", "nope"), "unknown topic"),
        (("consume", "nope", "--idle-timeout", "1"), "unknown topic"),
        (("topics", "create", "t", "--config", "retention.mss=1"), "unknown topic setting"),
    ]:
        result = run(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    produced = run("produce", "nope", input="x\n", env=env)
    assert produced.returncode == 1 and "unknown topic" in produced.stderr and "0 of 1" in produced.stderr
    run("topics", "create", "small", "--config", "max.message.bytes=100", env=env)
    too_big = run("produce", "small", input="x" * 500 + "\n", env=env)
    assert too_big.returncode == 1 and "max.message.bytes" in too_big.stderr and "0 of 1" in too_big.stderr
    usage = run("produce", "t", "--key", "k", "--key-separator", ":", env=env)
    assert usage.returncode == 2


def test_cannot_connect(run: Run) -> None:
    result = run("topics", "list", "--bootstrap", "127.0.0.1:1")
    assert result.returncode == 1 and "cannot connect to 127.0.0.1:1" in result.stderr


def test_a_malformed_bootstrap_is_a_usage_error(run: Run) -> None:
    result = run("topics", "list", "--bootstrap", "nonsense")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "HOST:PORT" in result.stderr


def test_produce_gives_up_within_its_timeout_and_says_how_many_were_acked(run: Run) -> None:
    started = time.monotonic()
    result = run("produce", "t", "--bootstrap", "127.0.0.1:1", "--timeout", "1.5", input="a\nb\n")
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("; no message was read yet, none was sent")
    assert time.monotonic() - started < 15


def test_produce_gives_up_within_its_timeout_while_stdin_stays_open(serve_process: Serve, run: Run) -> None:
    server = serve_process("--memory")
    assert run("topics", "create", "t", "--bootstrap", server.address).returncode == 0
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logbroker.cli",
            "produce",
            "t",
            "--bootstrap",
            server.address,
            "--timeout",
            "2",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as producer:
        assert producer.stdin is not None
        producer.stdin.write(b"one\n")
        producer.stdin.flush()
        # The broker dies only once the producer is connected and streaming: its first line has
        # reached the broker (a consumer waits for it, with a deadline).
        got = run(
            "consume", "t", "--max-messages", "1", "--idle-timeout", "20", "--bootstrap", server.address
        )
        assert got.stdout == "one\n"
        server.kill()
        killed = time.monotonic()
        for _ in range(40):  # keep stdin open and busy, a line every 0.2 s, until the producer exits
            try:
                producer.stdin.write(b"more\n")
                producer.stdin.flush()
            except BrokenPipeError:
                break
            try:
                producer.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
        code = producer.wait(timeout=30)
        elapsed = time.monotonic() - killed
        assert producer.stderr is not None
        errors = producer.stderr.read().decode()
        try:
            producer.stdin.close()
        except BrokenPipeError:
            pass
    assert code == 1 and "were acked" in errors
    assert elapsed < 2 + 5, f"gave up after {elapsed:.1f} s"


def test_produce_streams_lines_as_they_come(serve_process: Serve, run: Run) -> None:
    server = serve_process()
    env = {**os.environ, "LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "live", env={"LOGBROKER_BOOTSTRAP": server.address})
    with subprocess.Popen(
        [sys.executable, "-m", "logbroker.cli", "produce", "live"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as producer:
        assert producer.stdin is not None
        try:
            producer.stdin.write(b"first line\n")
            producer.stdin.flush()
            got = run(
                "consume",
                "live",
                "--max-messages",
                "1",
                "--idle-timeout",
                "20",
                env={"LOGBROKER_BOOTSTRAP": server.address},
            )
            assert got.stdout == "first line\n"  # arrived while the producer's stdin is still open
            producer.stdin.write(b"second\n")
            producer.stdin.close()
            assert producer.wait(timeout=30) == 0
        finally:
            if producer.poll() is None:
                producer.kill()


def test_sigterm_shuts_down_cleanly(serve_process: Serve, run: Run) -> None:
    server = serve_process()
    run("topics", "create", "t", env={"LOGBROKER_BOOTSTRAP": server.address})
    run("produce", "t", input="a\nb\n", env={"LOGBROKER_BOOTSTRAP": server.address})
    code, log = server.stop(signal.SIGTERM)
    assert code == 0, log
    assert "shutting down" in log and "closed the data directory cleanly" in log
    assert (server.data_dir / "t-0" / "clean-shutdown").exists()


def test_sigint_shuts_down_cleanly(serve_process: Serve) -> None:
    server = serve_process()
    code, _ = server.stop(signal.SIGINT)
    assert code == 0


def test_the_startup_log_names_the_settings_and_warns_of_weak_modes(serve_process: Serve) -> None:
    server = serve_process("--fsync", "interval:200", "--log-level", "info")
    code, log = server.stop()
    assert code == 0
    assert "fsync=interval:200" in log and "may be lost in a power failure" in log
    memory = serve_process("--memory")
    _, log = memory.stop()
    assert "nothing survives a restart" in log


def test_one_broker_per_data_directory(serve_process: Serve, run: Run, tmp_path: Path) -> None:
    serve_process()
    second = subprocess.run(
        [sys.executable, "-m", "logbroker.cli", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert f"{tmp_path / 'data'} is locked by another process" in second.stderr


def test_config_file_and_bad_settings(serve_process: Serve, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text('fsync = "never"\nauto-create-topics = true\ndefault_partitions = 2\n')
    server = serve_process("--config", str(config))
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    assert run("produce", "fresh", input="x\n", env=env).returncode == 0
    assert json.loads(run("topics", "list", "--json", env=env).stdout)[0]["partitions"] == 2
    _, log = server.stop()
    assert "fsync=never" in log
    config.write_text("no-such-setting = 1\n")
    bad = run("serve", "--config", str(config), "--port", "0")
    assert bad.returncode == 2 and f"{config}: unknown setting 'no-such-setting'" in bad.stderr
    assert run("serve", "--fsync", "sometimes", "--port", "0").returncode == 2


def test_restart_and_kill_9_keep_every_acked_record(serve_process: Serve, run: Run, tmp_path: Path) -> None:
    import trio

    import logbroker

    data = tmp_path / "data"
    acked: list[tuple[int, int, bytes]] = []

    async def produce_until_killed(address: str, kill_after: int, server: ServeProcess) -> None:
        async with await logbroker.connect(address) as client:
            if not any(t.name == "t" for t in await client.list_topics()):
                await client.create_topic("t", partitions=2)
            try:
                async with client.producer(linger_ms=2, delivery_timeout=2) as producer:
                    n = 0
                    while True:
                        value = b"%d-%d" % (len(acked), n)
                        delivery = await producer.send("t", value)
                        n += 1
                        if n % 50 == 0:
                            meta = await delivery
                            acked.append((meta.partition, meta.offset, value))
                        if n == kill_after:
                            server.kill()
            except logbroker.errors.LogbrokerError:
                pass

    for round_ in range(3):
        server = serve_process(data_dir=data)
        trio.run(produce_until_killed, server.address, 400 + 100 * round_, server)
    server = serve_process(data_dir=data)
    stored: dict[int, list[tuple[int, bytes]]] = {}
    for partition in (0, 1):
        log = data / f"t-{partition}"
        records = []
        for segment in sorted(log.glob("*.log")):
            batches = MemoryRecords(segment.read_bytes())  # kafka-python reads our segments
            while batches.has_next():
                records.extend((r.offset, r.value) for r in batches.next_batch())
        stored[partition] = records
        assert [o for o, _ in records] == list(range(len(records))), "offsets are gap-free"
    for partition, offset, value in acked:
        assert (offset, value) in stored[partition], f"acked record {partition}/{offset} lost"
    assert len(acked) >= 6
    code, _ = server.stop()
    assert code == 0


def test_serve_prints_its_address_at_once() -> None:
    # start() waits (30 s at most) for the first line on stdout to be the announcement.
    with ServeProcess(ready_timeout=30) as broker:
        assert broker.address.startswith("127.0.0.1:")  # the default host
