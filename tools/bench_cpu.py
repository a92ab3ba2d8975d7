"""The broker's CPU time per million records, for produce and consume over both protocols.

    python tools/bench_cpu.py [--records 1000000] [--runs 3] [--broker-path DIR]

Throughput on this 2-core VM moves by tens of percent from run to run (the clients and the
broker share the cores); the CPU time the broker process itself spends on the same work moves
much less, so this is the figure to compare two versions of the broker by. A `logbroker serve
--memory` process (`logbroker.testing.ServeProcess`) with a Kafka listener; one topic of one
partition; 100-byte records. Four measures, each the broker's user+system CPU seconds (from
/proc) while a client does the work, the median of `--runs` fresh brokers:

- kcat produce: `kcat -P` of the records as lines (librdkafka's batching);
- kcat consume: `kcat -C -e` of them all;
- native produce: the client library's producer (`await producer.send` per record);
- native consume: `async for message in client.consumer(...)`.

`--broker-path DIR` runs the broker of another checkout (its `logbroker/` package goes first on
the broker's PYTHONPATH) with this checkout's clients: the way to compare before and after a
change on the same machine in the same hour.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import trio

import logbroker
from logbroker.testing import ServeProcess

MEASURES = ["kcat produce", "kcat consume", "native produce", "native consume"]
_TICKS = os.sysconf("SC_CLK_TCK")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def charged(broker: ServeProcess, work: Callable[[], object]) -> float:
    before = cpu_seconds(broker.pid)
    work()
    return cpu_seconds(broker.pid) - before


def one_run(records: int, lines: Path, env: dict[str, str]) -> dict[str, float]:
    result: dict[str, float] = {}
    with ServeProcess("--log-level", "warning", kafka=True, env=env) as broker:

        async def create() -> None:
            async with await logbroker.connect(broker.address) as client:
                await client.create_topic("t")

        trio.run(create)
        kcat = ["kcat", "-b", broker.kafka_address, "-t", "t", "-p", "0"]

        def kcat_produce() -> None:
            with lines.open("rb") as stdin:
                subprocess.run([*kcat, "-P"], stdin=stdin, check=True, capture_output=True, timeout=600)

        def kcat_consume() -> None:
            command = [*kcat, "-C", "-e", "-q", "-o", "beginning", "-X", "fetch.wait.max.ms=10"]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=600)

        result["kcat produce"] = charged(broker, kcat_produce)
        result["kcat consume"] = charged(broker, kcat_consume)

    with ServeProcess("--log-level", "warning", env=env) as broker:

        async def produce() -> None:
            async with await logbroker.connect(broker.address) as client:
                await client.create_topic("t")
                async with client.producer() as producer:
                    value = b"x" * 100
                    for _ in range(records):
                        await producer.send("t", value)

        async def consume() -> None:
            async with await logbroker.connect(broker.address) as client:
                seen = 0
                async for _ in client.consumer("t"):
                    seen += 1
                    if seen == records:
                        break

        result["native produce"] = charged(broker, lambda: trio.run(produce))
        result["native consume"] = charged(broker, lambda: trio.run(consume))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=positive, default=1_000_000)
    parser.add_argument(
        "--runs", type=positive, default=3, help="fresh brokers per measure; the median is shown"
    )
    parser.add_argument("--broker-path", help="run the broker of this checkout (its PYTHONPATH)")
    args = parser.parse_args()
    env = {}
    if args.broker_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.broker_path, os.environ.get("PYTHONPATH")]))
    print(
        f"broker: {args.broker_path or 'this checkout'}; {args.records:,} records of 100 B, {args.runs} run(s)"
    )
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        lines = Path(scratch) / "records"
        lines.write_bytes((b"x" * 99 + b"\n") * args.records)
        for _ in range(args.runs):
            runs.append(one_run(args.records, lines, env))
    per_million = 1_000_000 / args.records
    print()
    print(f"{'measure':<18}{'broker CPU s / 1M records':>28}   runs")
    for measure in MEASURES:
        seconds = [run[measure] * per_million for run in runs]
        shown = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"{measure:<18}{statistics.median(seconds):>28.2f}   {shown}")


if __name__ == "__main__":
    main()
