"""`produce` and `consume` as subprocesses against a `logbroker serve` subprocess: where --from
starts, signals, what --no-ack and the group settings do, produce's errors and counts, kcat's
flags and -f format strings."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logbroker.testing import ServeProcess
from tests.cli.conftest import Run, Spawn

Serve = Callable[..., ServeProcess]

SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def lines(*values: object) -> str:
    return "".join(f"{v}\n" for v in values)


def log_end(run: Run, address: str, topic: str) -> int:
    described = json.loads(run("topics", "describe", topic, "--json", "--bootstrap", address).stdout)
    return sum(p["log_end_offset"] for p in described["partition_details"])


# -- where --from starts ----------------------------------------------------------------------


def test_consume_from_past_the_end_starts_at_the_end(run: Run, spawn: Spawn, serve_process: Serve) -> None:
    server = serve_process("--memory")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", env=env)
    run("produce", "t", input=lines(*range(10)), env=env)
    consumer = spawn("consume", "t", "--from", "999999", "-n", "1", "--bootstrap", server.address)
    assert consumer.stderr is not None
    # It says where it moved; only then does the next record come.
    assert (
        consumer.stderr.readline().decode().strip()
        == "t-0: offset 999999 is out of range (0..10); moving to 10"
    )
    run("produce", "t", input="new\n", env=env)
    out, err = consumer.communicate(timeout=30)
    assert consumer.returncode == 0 and out == b"new\n"
    assert err.decode().strip() == "consumed 1 message(s) from t"


def test_consume_from_minus_n_prints_the_last_n_of_each_partition(run: Run, serve_process: Serve) -> None:
    server = serve_process("--memory")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", "--partitions", "2", env=env)
    run("produce", "t", "-p", "0", input=lines(*(f"a{i}" for i in range(5))), env=env)
    run("produce", "t", "-p", "1", input=lines("b0", "b1"), env=env)

    def consumed(*args: str) -> list[str]:
        result = run("consume", "t", "--idle-timeout", "0.5", "-f", "%p:%s\\n", *args, env=env)
        assert result.returncode == 0, result.stderr
        return sorted(result.stdout.split())

    assert consumed("-o", "-3") == ["0:a2", "0:a3", "0:a4", "1:b0", "1:b1"]  # b has only two
    assert consumed("--from=-1", "-p", "0") == ["0:a4"]
    assert consumed("--from", "-0") == []
    assert consumed("--offset", "4") == ["0:a4"]  # past partition 1's end: it starts at its end
    assert consumed("-o", "beginning", "-p", "1") == ["1:b0", "1:b1"]
    assert consumed("-o", "end") == []


def test_with_a_group_from_takes_no_offset_and_reset_offsets_takes_no_minus_n(
    run: Run, serve_process: Serve
) -> None:
    server = serve_process("--memory")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    for start in ("5", "-5"):
        refused = run("consume", "t", "-g", "g", "--from", start, env=env)
        assert refused.returncode == 2 and "groups reset-offsets" in refused.stderr
    unchanged = run("groups", "reset-offsets", "g", "--topic", "t", "--to", "-5", env=env)
    assert unchanged.returncode == 2 and "-N" not in unchanged.stderr


# -- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS)
def test_an_interrupted_produce_says_how_many_were_acked_and_keeps_them(
    sig: int, run: Run, spawn: Spawn, serve_process: Serve
) -> None:
    server = serve_process("--memory")
    run("topics", "create", "t", "--bootstrap", server.address)
    producer = spawn("produce", "t", "--bootstrap", server.address)
    assert producer.stdin is not None and producer.stderr is not None
    producer.stdin.write(lines(*range(1000)).encode())
    producer.stdin.flush()
    stored = run("consume", "t", "-n", "1000", "--idle-timeout", "30", "--bootstrap", server.address)
    assert len(stored.stdout.split()) == 1000  # the broker has the first thousand
    producer.stdin.write(lines(*range(1000, 1500)).encode())  # more on their way: stdin stays open
    producer.stdin.flush()
    producer.send_signal(sig)
    assert producer.wait(timeout=30) == 128 + sig
    said = producer.stderr.read().decode()
    match = re.search(r"\ninterrupted: (\d+) of (\d+) message\(s\) were acked\n$", "\n" + said)
    assert match, said
    acked, read = int(match[1]), int(match[2])
    assert 1000 <= acked == read <= 1500  # what it read had its chance to be acked
    assert log_end(run, server.address, "t") == acked  # and the broker holds exactly that


def unacked_producer(run: Run, spawn: Spawn, serve_process: Serve) -> subprocess.Popen[bytes]:
    """A `produce` whose first message was acked and whose second never will be: the broker
    died (a failpoint) as it stored it, and --timeout is two minutes."""
    server = serve_process("--memory", env={"LOGBROKER_FAILPOINTS": "append.after_write@2:exit"})
    run("topics", "create", "t", "--bootstrap", server.address)
    producer = spawn("produce", "t", "--bootstrap", server.address, "--timeout", "120")
    assert producer.stdin is not None
    producer.stdin.write(b"first\n")
    producer.stdin.flush()
    run("consume", "t", "-n", "1", "--idle-timeout", "30", "--bootstrap", server.address)
    producer.stdin.write(b"second\n")
    producer.stdin.flush()
    assert server.wait(timeout=30) == 137  # it received the second message, and died
    return producer


WAITING = "interrupted: waiting up to 5 s for 1 message(s) to be acked (interrupt again to stop now)\n"


def test_an_interrupted_produce_waits_only_briefly_for_its_acks(
    run: Run, spawn: Spawn, serve_process: Serve
) -> None:
    producer = unacked_producer(run, spawn, serve_process)
    assert producer.stderr is not None
    interrupted = time.monotonic()
    producer.send_signal(signal.SIGINT)
    assert producer.stderr.readline().decode() == WAITING
    assert producer.wait(timeout=60) == 130
    waited = time.monotonic() - interrupted
    assert producer.stderr.read().decode() == "interrupted: 1 of 2 message(s) were acked\n"
    assert 5 <= waited < 5 + 10, f"waited {waited:.1f} s, not 5 (nor --timeout's 120)"


def test_a_second_signal_ends_the_wait_for_acks_at_once(run: Run, spawn: Spawn, serve_process: Serve) -> None:
    producer = unacked_producer(run, spawn, serve_process)
    assert producer.stderr is not None
    producer.send_signal(signal.SIGINT)
    assert producer.stderr.readline().decode() == WAITING
    interrupted = time.monotonic()
    producer.send_signal(signal.SIGTERM)
    assert producer.wait(timeout=60) == 130  # the first signal names the exit
    waited = time.monotonic() - interrupted
    assert producer.stderr.read().decode() == "interrupted: 1 of 2 message(s) were acked\n"
    assert waited < 4, f"waited {waited:.1f} s"


@pytest.mark.parametrize("sig", SIGNALS)
def test_an_interrupted_consume_says_how_many_it_consumed(
    sig: int, run: Run, spawn: Spawn, serve_process: Serve
) -> None:
    server = serve_process("--memory")
    run("topics", "create", "t", "--bootstrap", server.address)
    run("produce", "t", "--bootstrap", server.address, input=lines(*range(20)))
    consumer = spawn("consume", "t", "--bootstrap", server.address)
    assert consumer.stdout is not None
    printed = [consumer.stdout.readline() for _ in range(20)]
    assert printed[-1] == b"19\n"
    consumer.send_signal(sig)
    out, err = consumer.communicate(timeout=30)
    assert consumer.returncode == 128 + sig and out == b""
    assert err.decode() == "interrupted: consumed 20 message(s) from t\n"


def test_an_interrupted_group_member_commits_what_it_printed_and_leaves(
    run: Run, spawn: Spawn, serve_process: Serve
) -> None:
    server = serve_process("--memory", "--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", env=env)
    run("produce", "t", input=lines(*range(20)), env=env)
    member = spawn("consume", "t", "-g", "g", "--bootstrap", server.address)
    assert member.stdout is not None
    printed = [member.stdout.readline() for _ in range(20)]
    assert printed[-1] == b"19\n"
    member.send_signal(signal.SIGTERM)
    out, err = member.communicate(timeout=30)
    assert member.returncode == 143 and out == b""
    assert err.decode() == "interrupted: consumed 20 message(s) from t\n"
    described = json.loads(run("groups", "describe", "g", "--json", env=env).stdout)
    assert described["members"] == [] and [p["committed"] for p in described["partitions"]] == [20]


# -- --no-ack and the group's settings --------------------------------------------------------


def test_no_ack_says_when_records_it_received_go_to_the_dead_letter_topic(
    run: Run, serve_process: Serve
) -> None:
    server = serve_process("--memory", "--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "jobs", env=env)
    run("produce", "jobs", input=lines("a", "b", "c"), env=env)
    peek = run(
        "consume",
        "jobs",
        "-g",
        "rd",
        "--no-ack",
        "--ack-timeout",
        "0.2",
        "--max-deliveries",
        "2",
        "--idle-timeout",
        "2",
        env=env,
    )
    assert peek.returncode == 0 and sorted(peek.stdout.split()) == ["a", "a", "b", "b", "c", "c"]
    said = peek.stderr.splitlines()
    assert said[0] == "group rd: created with ack timeout 0.2 s, max deliveries 2 (kept for the group)"
    notices = [
        re.fullmatch(
            r"group rd: (\d) record\(s\) of jobs were delivered 2 times \(the group's max deliveries\) "
            r"without an ack: the broker moves them to dlq\.rd\.jobs",
            line,
        )
        for line in said[1:-1]
    ]
    assert all(notices) and sum(int(m[1]) for m in notices if m) == 3, said
    assert said[-1] == "consumed 6 message(s) from jobs"
    moved = run("consume", "dlq.rd.jobs", "-n", "3", "--idle-timeout", "20", env=env)
    assert moved.stdout.split() == ["a", "b", "c"]


def test_changing_a_groups_settings_says_what_they_were(run: Run, serve_process: Serve) -> None:
    server = serve_process("--memory", "--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", env=env)

    def said(*args: str) -> list[str]:
        result = run("consume", "t", "-g", "s", "--idle-timeout", "0.2", *args, env=env)
        assert result.returncode == 0, result.stderr
        return [line for line in result.stderr.splitlines() if line.startswith("group s:")]

    assert said("--ack-timeout", "1") == [
        "group s: created with ack timeout 1 s, max deliveries 10 (kept for the group)"
    ]
    assert said("--ack-timeout", "0.5", "--max-deliveries", "4") == [
        "group s: ack timeout 1 s -> 0.5 s, max deliveries 10 -> 4 (kept for the group)"
    ]
    assert said("--max-deliveries", "4") == []  # nothing changed
    assert said() == []
    described = json.loads(run("groups", "describe", "s", "--json", env=env).stdout)
    assert (described["ack_timeout_ms"], described["max_deliveries"]) == (500, 4)


# -- produce's errors and counts --------------------------------------------------------------


def test_produce_to_a_missing_topic_names_it_and_counts_what_it_read(
    run: Run, serve_process: Serve, tmp_path: Path
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text("auto-create-topics = false\n")
    server = serve_process("--memory", "--config", str(config))
    result = run("produce", "nosuchtopic", "--bootstrap", server.address, input="x\n")
    assert result.returncode == 1
    assert result.stderr == "Error: unknown topic 'nosuchtopic'; 0 of 1 message(s) were acked\n"


def test_a_line_without_the_key_separator_stops_the_input_there(run: Run, serve_process: Serve) -> None:
    server = serve_process("--memory")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", env=env)
    result = run("produce", "t", "-K", ":", input="a:1\nb:2\nc\nd:4\n", env=env)
    assert result.returncode == 1
    assert result.stderr == (
        "Error: line 3 has no key separator ':', so the input stops there; 2 of 2 message(s) were acked\n"
    )
    stored = run("consume", "t", "--idle-timeout", "0.5", "-f", "%k=%s\\n", env=env)
    assert stored.stdout == "a=1\nb=2\n"


# -- kcat's habits ----------------------------------------------------------------------------


def test_kcat_flags_and_a_format_string_show_key_partition_offset_and_headers(
    run: Run, serve_process: Serve
) -> None:
    server = serve_process("--memory", "--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", "--partitions", "2", env=env)
    keyed = run(
        "produce", "t", "-k", "user-1", "-p", "1", "-H", "source=cli", "-H", "n=1", input="hello\n", env=env
    )
    assert keyed.returncode == 0 and keyed.stderr == "produced 1 message(s) to t\n"
    run("produce", "t", "-p", "1", input="\n", env=env)  # no key, an empty value
    shown = run(
        "consume",
        "t",
        "-p",
        "1",
        "-o",
        "0",
        "-n",
        "2",
        "-f",
        r"%t|%p|%o|%k|%s|%K|%S|%h|%%|\x41\t%T\n",
        env=env,
    )
    assert shown.returncode == 0 and shown.stderr == "consumed 2 message(s) from t\n"
    first, second = shown.stdout.splitlines()
    assert re.fullmatch(r"t\|1\|0\|user-1\|hello\|6\|5\|source=cli,n=1\|%\|A\t\d{13}", first), first
    assert re.fullmatch(r"t\|1\|1\|\|\|-1\|0\|\|%\|A\t\d{13}", second), second
    as_json = run("consume", "t", "-f", "json", "-n", "1", "-p", "1", env=env)
    assert json.loads(as_json.stdout)["headers"] == [["source", "cli"], ["n", "1"]]
    assert run("consume", "t", "-n", "1", env=env).stdout == "hello\n"  # value is the default
    grouped = run("consume", "t", "-g", "readers", "-n", "2", env=env)
    assert grouped.returncode == 0 and grouped.stdout == "hello\n\n"
    idle = run("consume", "t", "-o", "end", "--idle-timeout", "0.2", env=env)
    assert idle.returncode == 0 and idle.stderr == "consumed 0 message(s) from t\n"
    for bad in ("%q", "no fields", "%"):
        refused = run("consume", "t", "-f", bad, env=env)
        assert refused.returncode == 2 and "--format" in refused.stderr


def test_a_consume_that_fails_after_printing_says_how_many_it_consumed(
    run: Run, serve_process: Serve, spawn: Spawn
) -> None:
    """Regression (review of issue 14): an error after records were printed lost the count."""
    server = serve_process()
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("produce", "t", input="a\nb\nc\n", env=env)
    consumer = spawn("consume", "t", "-b", server.address, "--timeout", "2")
    assert consumer.stdout is not None and consumer.stderr is not None
    assert [consumer.stdout.readline() for _ in range(3)] == [b"a\n", b"b\n", b"c\n"]
    server.kill()  # the broker goes away for good
    assert consumer.wait(timeout=60) == 1
    [line] = consumer.stderr.read().decode().strip().splitlines()
    assert line.startswith("Error: ") and line.endswith("; consumed 3 message(s) from t before that")
