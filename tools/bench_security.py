"""What logins and ACLs cost: a `logbroker serve` subprocess with and without them, over loopback.

    python tools/bench_security.py [--records 300000] [--runs 3] [--logins 200]

Each figure is the median of `--runs` runs, each against a fresh broker on `--memory` storage (so
the disk does not hide the checks), with 100-byte records:

- native produce throughput through the client's batching producer: a plain broker, then one
  with `--authenticate --authorize` where the producing user holds an `all` rule on every topic
  (every produce request passes a login-bound principal through the ACL check);
- confluent-kafka produce (acks=all, linger.ms 5) the same two ways (SASL_PLAINTEXT with
  SCRAM-SHA-256 for the secured one);
- logins per second: `--logins` connections opened one after another, each doing Hello and a
  SCRAM-SHA-256 (or -512) login, then closing; the client's PBKDF2 (8192 iterations) is part of
  each login, as it is for any real client.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logbroker
from logbroker.security.acls import AclRule, AclStore
from logbroker.security.users import UserStore
from logbroker.testing import ServeProcess
from tools.bench import HAVE_CONFLUENT, at_least, columns, confluent_produce, produce, rate_row
from tools.bench import bench_broker as plain_broker

USER, PASSWORD = "bench", "bench-password"


@contextmanager
def secured_broker(kafka: bool) -> Iterator[ServeProcess]:
    """A memory broker that requires logins and checks ACLs; USER may do anything to topics."""
    directory = tempfile.mkdtemp(prefix="logbroker-bench-security-")
    try:
        UserStore(directory).add(USER, PASSWORD)
        AclStore(directory).add(AclRule(f"User:{USER}", "all", "topic", "*"))
        extra = ["--authenticate", "--authorize", "--super-users", "User:admin", "--security-dir", directory]
        with plain_broker(memory=True, kafka=kafka, extra=extra) as broker:
            yield broker
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def native_rate(records: int, secure: bool) -> float:
    login: dict[str, Any] = {"username": USER, "password": PASSWORD} if secure else {}
    with secured_broker(False) if secure else plain_broker(memory=True) as broker:
        return records / trio.run(lambda: produce(broker.address, records, **login))


def confluent_rate(records: int, secure: bool) -> float:
    settings = (
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": USER,
            "sasl.password": PASSWORD,
        }
        if secure
        else {}
    )
    with secured_broker(True) if secure else plain_broker(memory=True, kafka=True) as broker:
        login: dict[str, Any] = {"username": USER, "password": PASSWORD} if secure else {}
        trio.run(lambda: _create(broker.address, login))
        return records / confluent_produce(broker.kafka_address, "bench", records, **settings)


async def _create(address: str, login: dict[str, Any]) -> None:
    async with await logbroker.connect(address, **login) as client:
        await client.create_topic("bench")


def login_rate(logins: int, mechanism: str) -> float:
    async def run(address: str) -> float:
        started = time.perf_counter()
        for _ in range(logins):
            client = await logbroker.connect(address, username=USER, password=PASSWORD, mechanism=mechanism)
            await client.aclose()
        return logins / (time.perf_counter() - started)

    with secured_broker(False) as broker:
        return trio.run(run, broker.address)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=at_least(1, int), default=300_000)
    parser.add_argument("--runs", type=at_least(1, int), default=3)
    parser.add_argument("--logins", type=at_least(1, int), default=200)
    args = parser.parse_args()
    rows = []
    cases = [("native produce", native_rate)]
    if HAVE_CONFLUENT:
        cases.append(("confluent-kafka produce", confluent_rate))
    else:
        print("confluent_kafka is not installed: skipping its figures")
    for name, measure in cases:
        for secure in (False, True):
            rate = statistics.median(measure(args.records, secure) for _ in range(args.runs))
            label = f"{name}, {'logins + ACLs' if secure else 'plain'}"
            rows.append(rate_row(label, rate))
    columns(rows, ("measure", "records/s", "MB/s"), ">")
    print()
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        print(f"{mechanism} logins, one after another: {login_rate(args.logins, mechanism):,.0f}/s")


if __name__ == "__main__":
    main()
