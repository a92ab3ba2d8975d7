"""kcat (librdkafka's command-line client): -L, -P, -C and -G against the Kafka listener.

CI installs kcat from Debian (`.ci/run`); elsewhere these tests are skipped without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import trio

import logbroker
from logbroker.testing import RunningBroker

pytestmark = pytest.mark.skipif(
    shutil.which("kcat") is None and not os.environ.get("CI"), reason="kcat is not installed (CI installs it)"
)


def kcat(broker: RunningBroker, *args: str, input: str | None = None, timeout: float = 30) -> str:
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
