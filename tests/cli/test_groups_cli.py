"""Consumer groups from the command line, against a `logbroker serve` subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import trio

import logbroker
from logbroker.testing import ServeProcess
from tests.cli.conftest import Run

Serve = Callable[..., ServeProcess]


def test_consume_with_a_group_commits_what_it_printed(run: Run, serve_process: Serve) -> None:
    server = serve_process("--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "orders", env=env)
    run("produce", "orders", input="".join(f"{i}\n" for i in range(10)), env=env)
    first = run("consume", "orders", "--group", "billing", "--max-messages", "4", env=env)
    assert first.returncode == 0 and first.stdout.split() == ["0", "1", "2", "3"]
    rows = json.loads(run("offsets", "--json", env=env).stdout)
    assert rows == [
        {
            "group": "billing",
            "topic": "orders",
            "partition": 0,
            "committed": 4,
            "cursor": 4,
            "log_start": 0,
            "log_end": 10,
            "lag": 6,
            "in_flight": 0,
            "owner": None,
        }
    ]
    rest = run("consume", "orders", "--group", "billing", "--idle-timeout", "1", "--format", "json", env=env)
    messages = [json.loads(line) for line in rest.stdout.splitlines()]
    assert [m["value"] for m in messages] == [str(i) for i in range(4, 10)]
    assert all(m["delivery_count"] == 1 for m in messages)
    table = run("offsets", "--group", "billing", env=env).stdout
    assert "billing" in table and "LAG" in table
    # Another group sees everything: fan-out.
    audit = run("consume", "orders", "--group", "audit", "--idle-timeout", "1", env=env)
    assert audit.stdout.split() == [str(i) for i in range(10)]


def test_no_ack_brings_records_back_counted(run: Run, serve_process: Serve) -> None:
    server = serve_process("--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "jobs", env=env)
    run("produce", "jobs", input="a\nb\nc\n", env=env)
    peek = run(
        "consume",
        "jobs",
        "--group",
        "w",
        "--no-ack",
        "--ack-timeout",
        "0.5",
        "--max-deliveries",
        "5",
        "--max-messages",
        "3",
        env=env,
    )
    assert peek.returncode == 0 and peek.stdout.split() == ["a", "b", "c"]
    again = run("consume", "jobs", "--group", "w", "--max-messages", "3", "--format", "json", env=env)
    messages = [json.loads(line) for line in again.stdout.splitlines()]
    assert [(m["value"], m["delivery_count"]) for m in messages] == [("a", 2), ("b", 2), ("c", 2)]
    described = json.loads(run("groups", "describe", "w", "--json", env=env).stdout)
    assert described["members"] == [] and described["generation"] >= 1
    assert described["ack_timeout_ms"] == 500 and described["max_deliveries"] == 5
    assert [p["committed"] for p in described["partitions"]] == [3]
    listed = json.loads(run("groups", "list", "--json", env=env).stdout)
    assert [g["name"] for g in listed] == ["w"]


def test_group_errors(run: Run, serve_process: Serve) -> None:
    server = serve_process("--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    missing = run("consume", "nope", "--group", "g", "--idle-timeout", "1", env=env)
    assert missing.returncode == 1 and "unknown topic" in missing.stderr
    assert run("groups", "describe", "nobody", env=env).returncode == 1
    assert run("consume", "t", "--no-ack", env=env).returncode == 2  # --no-ack needs --group
    assert run("consume", "t", "--group", "g", "--partition", "0", env=env).returncode == 2
    run("topics", "create", "t", env=env)
    run("produce", "t", input="x\n", env=env)
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logbroker.cli",
            "consume",
            "t",
            "--group",
            "busy",
            "--bootstrap",
            server.address,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as member:
        try:
            assert member.stdout is not None
            assert member.stdout.readline() == b"x\n"  # it is in the group now
            busy = run("groups", "reset-offsets", "busy", "--topic", "t", "--to", "earliest", env=env)
            assert busy.returncode == 1 and "member" in busy.stderr and "Traceback" not in busy.stderr
        finally:
            member.terminate()
            member.wait(timeout=30)
    reset = run("groups", "reset-offsets", "busy", "--topic", "t", "--to", "earliest", env=env)
    assert (
        reset.returncode == 0
        and reset.stdout.startswith("t-0: committed offset ")
        and "-> 0 (moved)" in reset.stdout
    )


def test_a_commit_survives_kill_9_right_after_its_ack(serve_process: Serve, tmp_path: object) -> None:
    server = serve_process("--group-initial-delay", "0")

    async def commit_some(address: str) -> int:
        async with await logbroker.connect(address) as client:
            await client.create_topic("t")
            await client.produce("t", [b"%d" % i for i in range(20)])
            async with client.group_consumer("g", "t") as consumer:
                messages = []
                while len(messages) < 20:
                    messages += await consumer.poll()
                await messages[12].ack()  # acked: fsynced
                server.kill()  # at once
                return messages[12].offset + 1

    committed = trio.run(commit_some, server.address)
    restarted = serve_process(data_dir=server.data_dir)

    async def read_back(address: str) -> int:
        async with await logbroker.connect(address) as client:
            description = await client.describe_group("g")
            return description.partitions[0].committed

    assert trio.run(read_back, restarted.address) == committed == 13


def test_offsets_of_an_unknown_group_fails_as_describe_does(run: Run, serve_process: Serve) -> None:
    server = serve_process("--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    for command in (("offsets", "--group", "nobody"), ("groups", "describe", "nobody")):
        result = run(*command, env=env)
        assert (result.returncode, result.stdout) == (1, ""), command
        assert result.stderr.strip() == "Error: unknown group 'nobody'", command
    assert json.loads(run("offsets", "--json", env=env).stdout) == []  # no filter: an empty list
    typo = run("offsets", "--topic", "ordrs", env=env)
    assert (typo.returncode, typo.stderr.strip()) == (1, "Error: unknown topic 'ordrs'")


def test_a_native_group_shows_its_state(run: Run, serve_process: Serve) -> None:
    server = serve_process("--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", env=env)
    run("produce", "t", input="x\n", env=env)
    assert run("consume", "t", "--group", "g", "--max-messages", "1", env=env).returncode == 0
    described = json.loads(run("groups", "describe", "g", "--json", env=env).stdout)
    assert (described["protocol"], described["state"], described["members"]) == ("native", "Empty", [])
    assert run("groups", "describe", "g", env=env).stdout.startswith("group g: Empty, generation ")
    header, row = run("groups", "list", env=env).stdout.splitlines()
    assert header == "GROUP PROTOCOL MEMBERS GENERATION  TOPICS"
    assert row.split() == ["g", "native", "0", str(described["generation"]), "t"]


def test_reset_offsets_dry_run_changes_nothing_and_an_unknown_group_needs_create(
    run: Run, serve_process: Serve
) -> None:
    server = serve_process("--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    run("topics", "create", "t", "--partitions", "2", env=env)
    run("produce", "t", "--partition", "0", input="a\nb\nc\n", env=env)
    assert run("consume", "t", "--group", "g", "--idle-timeout", "1", env=env).stdout.split() == [
        "a",
        "b",
        "c",
    ]
    planned = run("groups", "reset-offsets", "g", "--topic", "t", "--to", "earliest", "--dry-run", env=env)
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines() == [
        "t-0: committed offset 3 -> 0 (would move)",
        "t-1: committed offset 0 -> 0 (would move)",
    ]
    assert "dry run: nothing changed" in planned.stderr
    assert [r["committed"] for r in json.loads(run("offsets", "--group", "g", "--json", env=env).stdout)] == [
        3,
        0,
    ]
    typo = run("groups", "reset-offsets", "gg", "--topic", "t", "--to", "earliest", env=env)
    assert typo.returncode == 1 and typo.stderr.strip() == "Error: unknown group 'gg'"
    assert [g["name"] for g in json.loads(run("groups", "list", "--json", env=env).stdout)] == ["g"]
    created = run("groups", "reset-offsets", "gg", "--topic", "t", "--to", "latest", "--create", env=env)
    assert created.stdout.splitlines() == [
        "t-0: committed offset none -> 3 (moved)",
        "t-1: committed offset none -> 0 (moved)",
    ]
    moved = run("groups", "reset-offsets", "g", "--topic", "t", "--to", "1", env=env)
    assert moved.stdout.splitlines()[0] == "t-0: committed offset 3 -> 1 (moved)"
