"""kcat (librdkafka's command-line client): -L, -P, -C and -G against the Kafka listener, and
the README's kcat lines against `logbroker serve` started as the README starts it.

CI installs kcat from Debian (`.ci/run`); elsewhere these tests are skipped without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

import logbroker
from logbroker.testing import RunningBroker, ServeProcess

pytestmark = pytest.mark.skipif(
    shutil.which("kcat") is None and not os.environ.get("CI"), reason="kcat is not installed (CI installs it)"
)


def kcat(
    broker: RunningBroker | ServeProcess, *args: str, input: str | None = None, timeout: float = 30
) -> str:
    done = subprocess.run(
        ["kcat", "-b", broker.kafka_address, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def native(broker: RunningBroker, work):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with await logbroker.connect(broker.address) as client:
            return await work(client)

    return trio.run(main)


def test_list_produce_and_consume(kafka_broker: RunningBroker) -> None:
    native(kafka_broker, lambda client: client.create_topic("lines", partitions=2))
    listing = kcat(kafka_broker, "-L")
    assert 'topic "lines" with 2 partitions' in listing and "broker 0 at" in listing

    kcat(kafka_broker, "-P", "-t", "lines", "-K", ":", input="".join(f"k{i}:v{i}\n" for i in range(20)))

    async def read(client: logbroker.Client) -> list[tuple[bytes | None, bytes | None]]:
        got = []
        async for m in client.consumer("lines", start="earliest"):
            got.append((m.key, m.value))
            if len(got) == 20:
                return got
        return got

    assert sorted(native(kafka_broker, read)) == sorted((b"k%d" % i, b"v%d" % i) for i in range(20))

    out = kcat(kafka_broker, "-C", "-t", "lines", "-e", "-f", "%k=%s\\n")
    assert sorted(out.split()) == sorted(f"k{i}=v{i}" for i in range(20))


def test_balanced_consumer_commits(kafka_broker: RunningBroker) -> None:
    native(kafka_broker, lambda client: client.create_topic("grouped", partitions=3))
    native(kafka_broker, lambda client: client.produce("grouped", [b"r%d" % i for i in range(30)]))
    out = kcat(
        kafka_broker,
        "-G",
        "kcat-group",
        "grouped",
        "-e",
        "-f",
        "%s\\n",
        "-X",
        "auto.offset.reset=earliest",
        "-X",
        "enable.auto.commit=true",
        "-X",
        "auto.commit.interval.ms=100",
    )
    assert sorted(out.split()) == sorted(f"r{i}" for i in range(30))

    rows = native(kafka_broker, lambda client: client.group_offsets("kcat-group"))
    assert sum(r.committed for r in rows) == 30  # committed as it left


def test_serve_with_no_flag_lets_kcat_produce_to_a_missing_topic_and_logs_its_creation_once() -> None:
    with ServeProcess(kafka=True) as server:
        kcat(server, "-P", "-t", "greetings", "-K", ":", input="k1:hello\nk2:world\n")
        kcat(server, "-P", "-t", "greetings", input="again\n")  # a second producer: it exists now
        consumed = kcat(server, "-C", "-t", "greetings", "-e", "-f", "%s\\n")
        assert consumed.split() == ["hello", "world", "again"]
        code, log = server.stop()
    assert code == 0
    created = [line for line in log.splitlines() if "created topic" in line]
    assert len(created) == 1, log
    assert " INFO " in created[0]
    expected = "created topic 'greetings' (1 partition) on first produce by Kafka client 'rdkafka' at "
    assert expected in created[0]


def test_the_readmes_kcat_lines_print_the_records_they_produced() -> None:
    """The README's broker (`serve` with no flag but the Kafka port) and its kcat lines as
    written (tests/test_docs_examples.py runs them too; this checks what they print)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Kafka clients", 1)[1]
    lines = re.findall(r"```sh\n(.*?)```", section, re.S)[0].strip().splitlines()
    outputs = []
    with ServeProcess(kafka=True) as server:
        for line in lines:
            command = line.split("  #")[0].strip().replace("127.0.0.1:9092", server.kafka_address)
            done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (command, done.stderr)
            outputs.append(done.stdout)
    listing, produced, consumed, grouped = outputs
    assert "broker 0 at" in listing and produced == ""
    assert consumed.split() == grouped.split() == ["hello", "world"]
