"""`logbroker serve` creates a missing topic on first produce by default, as Kafka does
(`--no-auto-create-topics`, or `auto-create-topics = false` in the config file, turns it off);
`logbroker consume` of a missing topic never creates it, with or without a group."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import Run, ServeProcess

Serve = Callable[..., ServeProcess]


def topic_names(run: Run, env: dict[str, str]) -> list[str]:
    listed = run("topics", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    return [t["name"] for t in json.loads(listed.stdout)]


@pytest.mark.parametrize("flags", [(), ("--auto-create-topics",)])
def test_produce_creates_a_missing_topic_on_a_broker_started_without_flags(
    flags: tuple[str, ...], serve_process: Serve, run: Run
) -> None:
    server = serve_process(*flags)
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    produced = run("produce", "fresh", input="one\ntwo\n", env=env)
    assert produced.returncode == 0, produced.stderr
    assert produced.stderr.splitlines() == [  # a typo in a topic name is not silent
        "created topic 'fresh': it did not exist (serve --no-auto-create-topics refuses)",
        "produced 2 message(s) to fresh",
    ]
    again = run("produce", "fresh", input="three\n", env=env)
    assert again.stderr.splitlines() == ["produced 1 message(s) to fresh"]
    consumed = run("consume", "fresh", "--max-messages", "2", "--idle-timeout", "5", env=env)
    assert consumed.stdout.split() == ["one", "two"]
    _, log = server.stop()
    assert log.count("created topic 'fresh' (1 partition) on first produce by native client") == 1


def test_no_auto_create_topics_keeps_produce_failing_with_the_unknown_topic_error(
    serve_process: Serve, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text("auto-create-topics = false\n")
    for flags in (("--no-auto-create-topics",), ("--config", str(config))):
        server = serve_process(*flags)
        env = {"LOGBROKER_BOOTSTRAP": server.address}
        produced = run("produce", "fresh", input="x\n", env=env)
        assert produced.returncode == 1, flags
        assert "unknown topic 'fresh'" in produced.stderr and "Traceback" not in produced.stderr
        assert len(produced.stderr.strip().splitlines()) == 1
        assert topic_names(run, env) == []
        server.stop()


def test_consume_of_a_missing_topic_fails_naming_it_and_creates_nothing(
    serve_process: Serve, run: Run
) -> None:
    server = serve_process("--group-initial-delay", "0")
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    for group in ((), ("--group", "g")):
        consumed = run("consume", "missing", *group, "--idle-timeout", "1", env=env)
        assert consumed.returncode == 1, group
        assert "unknown topic 'missing'" in consumed.stderr and "Traceback" not in consumed.stderr
        assert len(consumed.stderr.strip().splitlines()) == 1
    assert topic_names(run, env) == []
