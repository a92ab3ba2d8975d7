"""End-to-end benchmark: a `logbroker serve` subprocess and its clients, over loopback.

    python tools/bench.py [--records 1000000] [--runs 3] [--latency-seconds 10] [--rate 2000]
                          [--max-in-flight 1] [--kafka-linger-ms 5] [--plot bench-latency.png]

A quick run: `python tools/bench.py --records 100000 --runs 1 --latency-seconds 3` (at that size
the figures that time from a first delivery, the group consumptions, mostly time what was already
fetched: use them from full runs only).

Measures, in one run, with 100-byte records (throughput figures are the median of `--runs` runs,
each against a fresh broker: single runs on a small VM vary a lot; one topic of one partition):

- the native client (issue 3):
  - produce throughput (records/s, MB/s) through the client's batching producer, with the broker
    under `fsync=always` and under `fsync=never`;
  - consume throughput from the start of the topic: records decoded and handed to the application
    by `async for message in consumer`;
  - end-to-end latency (produce call to consumer receipt) at a fixed 2,000 records/s under
    `fsync=always`: p50, p99, max; the producer keeps `--max-in-flight` produce requests in
    flight per partition (the client's `max_in_flight`; 1, its default, keeps send order);
  - consume-and-commit throughput through a consumer group (a commit after every poll), and how
    late an unacked record is delivered again after its ack timeout;
- the Kafka listener (issue 5; `serve --kafka-port 0 --kafka-group-initial-delay 0`), with the
  broker on `--memory` storage and on file storage with `fsync=always`:
  - confluent-kafka produce: acks=all (the default), linger.ms 5, time from the first `produce`
    to `flush()` returning 0;
  - confluent-kafka consume with commits: a group `Consumer` (auto.offset.reset=earliest,
    auto-commit on, the default) calling `consume(num_messages=10000, timeout=1.0)` (at most the
    records still expected), time from the first delivery to the last (librdkafka fetches ahead
    in the background, from the join on);
  - kcat: `kcat -P` fed the records as lines on stdin, and `kcat -C -e -q -o beginning` to the end
    of the topic, each timed as a whole process (the end is seen after a last fetch that waits
    out librdkafka's fetch.wait.max.ms, 500 ms);
  - end-to-end latency at 2,000 records/s under `fsync=always`: a confluent-kafka Producer with
    linger.ms 5 (librdkafka's default; `--kafka-linger-ms`) and a default group Consumer in a
    thread, after a warm-up (the consumer has received records for a second before the measured
    ones are sent);
- the ceiling: loopback TCP throughput of a plain trio echo of the same frame size.

The Kafka figures are skipped, with a message, when confluent_kafka or kcat is missing. It writes a
PNG of the latency percentiles when matplotlib is installed (`pip install -e '.[bench]'`).

Targets, printed with a verdict: native (issue 3) produce >= 500,000 records/s with fsync=always;
consume >= 500,000 records/s; p99 end-to-end latency <= 5 ms at 2,000 records/s with fsync=always;
group consumption with a commit per poll >= 70% of plain consumption (issue 4). Kafka listener
(issue 5), confluent-kafka on memory storage: produce >= 327,000 records/s, consume with commits
>= 118,000 records/s; with fsync=always at least half of those (163,500 and 59,000); kcat produce
>= 954,000 records/s on memory storage (a stretch target); p99 end-to-end <= 10 ms at 2,000
records/s with fsync=always and a default consumer.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import trio

import logbroker
from logbroker.testing import ServeProcess

try:
    from confluent_kafka import Consumer, Producer
except ImportError:  # the confluent-kafka figures are skipped
    HAVE_CONFLUENT = False
else:
    HAVE_CONFLUENT = True

Number = TypeVar("Number", int, float)

VALUE = b"v" * 100
MB = 1_000_000
STALL_SECONDS = 60  # a consumer that receives nothing for this long has lost records
WARM_UP, MEASURED = b"w", b"m"  # the byte after the send time in a latency record's value
KAFKA_STORAGES = {"memory": True, "fsync=always": False}  # label: memory storage?
KAFKA_TARGETS = {  # row: (records/s, a stretch target?)
    "confluent-kafka produce, memory": (327_000, False),
    "confluent-kafka consume with commits, memory": (118_000, False),
    "confluent-kafka produce, fsync=always": (163_500, False),
    "confluent-kafka consume with commits, fsync=always": (59_000, False),
    "kcat produce, memory": (954_000, True),
}


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # measure, records/s, MB/s
    lines: list[str] = field(default_factory=list)  # latency and other one-line figures
    targets: list[tuple[str, str, str]] = field(default_factory=list)  # target, measured, verdict
    latency: dict[str, list[float]] = field(default_factory=dict)  # plotted series, seconds


@contextmanager
def bench_broker(
    fsync: str = "always", *, memory: bool = False, kafka: bool = False, extra: Sequence[str] = ()
) -> Iterator[ServeProcess]:
    """A broker process on free ports with file storage in a temp directory (or in memory), and
    with `kafka` a Kafka listener whose groups assign as soon as the first member joins; `extra`:
    more flags. Stopped with SIGTERM at the end."""
    storage = [] if memory else ["--fsync", fsync]
    listener = ["--kafka-group-initial-delay", "0"] if kafka else []
    with tempfile.TemporaryDirectory(prefix="logbroker-bench-") as scratch:
        broker = ServeProcess(
            "--log-level",
            "warning",
            *storage,
            *listener,
            *extra,
            data_dir=None if memory else scratch,
            kafka=kafka,
        )
        try:
            yield broker.start()
        finally:
            broker.close(timeout=60)


async def produce(address: str, records: int, **login: Any) -> float:
    async with await logbroker.connect(address, **login) as client:
        await client.create_topic("bench")
        started = time.perf_counter()
        async with client.producer(linger_ms=5, batch_bytes=1 << 20) as producer:
            send, send_nowait = producer.send, producer.send_nowait
            for _ in range(records):
                try:
                    send_nowait("bench", VALUE)
                except trio.WouldBlock:
                    await send("bench", VALUE)
        elapsed = time.perf_counter() - started
        if producer.failed:
            raise SystemExit(f"{producer.failed} records failed: {producer.first_error}")
        return elapsed


async def consume(address: str, records: int) -> float:
    async with await logbroker.connect(address) as client:
        started = time.perf_counter()
        count = 0
        async for _message in client.consumer("bench"):
            count += 1
            if count == records:
                break
        return time.perf_counter() - started


async def group_consume(address: str, records: int) -> float:
    """Consume through a consumer group, committing after every poll (the clock starts at the
    first delivery, after the group's initial assignment delay)."""
    async with (
        await logbroker.connect(address) as client,
        client.group_consumer("bench-group", "bench") as consumer,
    ):
        messages = await consumer.poll()
        while not messages:
            messages = await consumer.poll()
        started = time.perf_counter()
        count = len(messages)
        await consumer.commit()
        while count < records:
            messages = await consumer.poll()
            count += len(messages)
            if messages:
                await consumer.commit()
        return time.perf_counter() - started


async def redelivery(address: str, ack_timeout: float, rounds: int) -> list[float]:
    """How long after its ack timeout an unacked record is delivered again (seconds, each round)."""
    overshoot: list[float] = []
    async with await logbroker.connect(address) as client:
        await client.create_topic("redeliver")
        await client.produce("redeliver", [b"again"])
        async with client.group_consumer("bench-redeliver", "redeliver", ack_timeout=ack_timeout) as consumer:
            for _ in range(rounds):
                messages = await consumer.poll()
                while not messages:
                    messages = await consumer.poll()
                delivered = time.perf_counter()
                again = await consumer.poll()
                while not again:
                    again = await consumer.poll()
                overshoot.append(time.perf_counter() - delivered - ack_timeout)
    return overshoot


async def latency(address: str, rate: int, seconds: float, max_in_flight: int = 1) -> list[float]:
    """Send `rate` records a second for `seconds`, with up to `max_in_flight` produce requests in
    flight; each value carries its send time."""
    samples: list[float] = []
    total = int(rate * seconds)
    async with await logbroker.connect(address) as client, await logbroker.connect(address) as reader:
        await client.create_topic("latency")

        async def receive() -> None:
            async for message in reader.consumer("latency", start="latest", max_wait_ms=1000):
                (sent,) = struct.unpack_from(">d", message.value or b"")
                samples.append(time.perf_counter() - sent)
                if len(samples) == total:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.sleep(0.5)  # the consumer is positioned at the end
            async with client.producer(linger_ms=0, max_in_flight=max_in_flight) as producer:
                start = trio.current_time()
                for i in range(total):
                    await trio.sleep_until(start + i / rate)
                    await producer.send("latency", struct.pack(">d", time.perf_counter()) + VALUE[8:])
    return samples


def create_topic(address: str, topic: str) -> None:
    """Create a topic of one partition through the native protocol."""

    async def create() -> None:
        async with await logbroker.connect(address) as client:
            await client.create_topic(topic, partitions=1)

    trio.run(create)


def confluent_produce(bootstrap: str, topic: str, records: int, **settings: str) -> float:
    """Seconds from the first `produce` to `flush()` returning 0 (acks=all, the default)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "queue.buffering.max.messages": 10_000_000,
            **settings,
        }
    )
    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                produce(topic, VALUE)
                break
            except BufferError:  # the local queue is full
                poll(0.01)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    if left:
        raise SystemExit(f"confluent-kafka: {left} records still undelivered after 120 s")
    return elapsed


def confluent_consume(bootstrap: str, topic: str, records: int) -> float:
    """Seconds from the first delivery to the last through a group consumer that commits (the
    default auto-commit), reading with `consume(num_messages=10000, timeout=1.0)`."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        count, started, last = 0, 0.0, time.monotonic()
        while count < records:
            # Never ask for more than is left: consume() would wait out its timeout for them.
            messages = consumer.consume(num_messages=min(10_000, records - count), timeout=1.0)
            if not messages:
                if time.monotonic() - last > STALL_SECONDS:
                    raise SystemExit(f"confluent-kafka consumed {count:,} of {records:,} records")
                continue
            if not count:
                started = time.perf_counter()
            failed = next((m.error() for m in messages if m.error()), None)
            if failed:
                raise SystemExit(f"confluent-kafka consume failed: {failed}")
            count += len(messages)
            last = time.monotonic()
        return time.perf_counter() - started
    finally:
        consumer.close()


def write_lines(path: str, records: int) -> None:
    """`records` lines of 100 bytes each (plus the newline), kcat's input."""
    with open(path, "wb") as out:
        for done in range(0, records, 10_000):
            out.write((VALUE + b"\n") * min(10_000, records - done))


def run_kcat(arguments: list[str], stdin: IO[bytes] | None = None) -> tuple[float, bytes]:
    """Seconds the kcat process took, and its stdout; exits if kcat failed or complained."""
    started = time.perf_counter()
    done = subprocess.run(["kcat", *arguments], stdin=stdin, capture_output=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode or done.stderr:
        raise SystemExit(f"kcat {' '.join(arguments)}: exit {done.returncode}: {done.stderr.decode()!r}")
    return elapsed, done.stdout


def kcat_produce(bootstrap: str, topic: str, lines: str) -> float:
    """Seconds `kcat -P` takes to send the file `lines`, one record a line."""
    with open(lines, "rb") as stdin:
        elapsed, _ = run_kcat(["-b", bootstrap, "-P", "-t", topic], stdin)
    return elapsed


def kcat_consume(bootstrap: str, topic: str, records: int) -> float:
    """Seconds `kcat -C` takes to read the topic from the beginning to its end."""
    elapsed, out = run_kcat(["-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-o", "beginning"])
    count = out.count(b"\n")
    if count != records:
        raise SystemExit(f"kcat consumed {count:,} of {records:,} records")
    return elapsed


class LatencyReceiver(threading.Thread):
    """A default confluent-kafka group consumer noting, for each measured record, the time from
    its send (stamped in the value) to its receipt; warm-up records only set `warm`."""

    def __init__(self, bootstrap: str, topic: str, total: int) -> None:
        super().__init__(daemon=True)
        self.config = {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-latency",
            "auto.offset.reset": "earliest",
        }
        self.topic, self.total = topic, total
        self.samples: list[float] = []
        self.warm = threading.Event()
        self.stop = threading.Event()
        self.error = ""

    def run(self) -> None:
        consumer = Consumer(self.config)
        try:
            consumer.subscribe([self.topic])
            while len(self.samples) < self.total and not self.stop.is_set():
                message = consumer.poll(0.1)
                received = time.perf_counter_ns()
                if message is None:
                    continue
                if message.error():
                    self.error = str(message.error())
                    return
                value = message.value() or b""
                if value[8:9] == WARM_UP:
                    self.warm.set()
                else:
                    self.samples.append((received - struct.unpack_from(">q", value)[0]) / 1e9)
        finally:
            consumer.close()


def paced(rate: int) -> Iterator[None]:
    """Yields `rate` times a second, on a fixed schedule."""
    start = time.perf_counter()
    for i in itertools.count():
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield


def confluent_latency(bootstrap: str, rate: int, seconds: float, linger_ms: int) -> list[float]:
    """End-to-end seconds of `rate * seconds` records sent at `rate` a second by a Producer,
    measured once the consumer has received warm-up records for a second."""
    topic, total = "latency", int(rate * seconds)
    receiver = LatencyReceiver(bootstrap, topic, total)
    receiver.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
    ticks = paced(rate)

    def send(kind: bytes) -> None:
        producer.produce(topic, struct.pack(">q", time.perf_counter_ns()) + kind + VALUE[9:])
        producer.poll(0)

    try:
        deadline = time.monotonic() + STALL_SECONDS
        for _ in ticks:
            send(WARM_UP)
            if receiver.warm.is_set() or time.monotonic() > deadline:
                break
        if not receiver.warm.is_set():
            raise SystemExit(f"the latency consumer received nothing in {STALL_SECONDS} s: {receiver.error}")
        for _, _ in zip(range(rate), ticks, strict=False):  # a second more of warm-up
            send(WARM_UP)
        for _, _ in zip(range(total), ticks, strict=False):
            send(MEASURED)
        producer.flush(30)
        receiver.join(timeout=30)
    finally:
        receiver.stop.set()
        receiver.join()
    if len(receiver.samples) < total:
        print(
            f"warning: the latency consumer received {len(receiver.samples):,} of {total:,} records {receiver.error}"
        )
    return receiver.samples


async def echo_ceiling(frame_size: int, frames: int) -> float:
    """MB/s of one trio connection sending frames to an echo server and reading them back."""

    async def echo(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, echo, 0)
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        payload = b"x" * frame_size
        started = time.perf_counter()

        async def reader() -> None:
            got = 0
            while got < frame_size * frames:
                got += len(await stream.receive_some(1 << 20))

        async with trio.open_nursery() as inner:
            inner.start_soon(reader)
            for _ in range(frames):
                await stream.send_all(payload)
        elapsed = time.perf_counter() - started
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return frame_size * frames / elapsed / MB


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]


def plot(series: dict[str, list[float]], rate: int, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    points = [50, 75, 90, 95, 99, 99.9, 100]
    figure, axis = plt.subplots(figsize=(7, 4))
    for label, samples in series.items():
        axis.plot(
            range(len(points)), [percentile(samples, p) * 1000 for p in points], marker="o", label=label
        )
    axis.set_xticks(range(len(points)), [f"p{p:g}" if p < 100 else "max" for p in points])
    axis.set_ylabel("end-to-end latency (ms)")
    axis.set_title(f"logbroker, {rate:,} records/s, fsync=always, 100-byte records")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def progress(name: str, rate: float) -> float:
    """Show one run's figure on stderr (a full run takes minutes) and return it."""
    print(f"  {name}: {rate:,.0f} records/s", file=sys.stderr, flush=True)
    return rate


def rate_row(name: str, rate: float) -> tuple[str, str, str]:
    return (name, f"{rate:,.0f}", f"{rate * len(VALUE) / MB:,.1f}")


def rate_target(name: str, goal: int, rate: float | None, stretch: bool = False) -> tuple[str, str, str]:
    target = f"{name} >= {goal:,} records/s" + (" (stretch)" if stretch else "")
    if rate is None:
        return (target, "-", "skipped")
    return (target, f"{rate:,.0f} records/s", "met" if rate >= goal else "MISSED")


def latency_target(name: str, rate: int, goal_ms: float, p99: float | None) -> tuple[str, str, str]:
    target = f"p99 end-to-end at {rate:,}/s, {name} <= {goal_ms:g} ms"
    if p99 is None:
        return (target, "-", "skipped")
    return (target, f"{p99:.2f} ms", "met" if p99 <= goal_ms else "MISSED")


def latency_figures(report: Report, name: str, samples: list[float], rate: int, goal_ms: float) -> None:
    p99 = percentile(samples, 99) * 1000
    report.lines.append(
        f"end-to-end latency, {name}, at {rate:,} records/s, fsync=always, {len(samples):,} records: "
        f"p50 {percentile(samples, 50) * 1000:.2f} ms, p99 {p99:.2f} ms, max {max(samples) * 1000:.2f} ms, "
        f"mean {statistics.mean(samples) * 1000:.2f} ms"
    )
    report.targets.append(latency_target(name, rate, goal_ms, p99))
    report.latency[name] = samples


def native(args: argparse.Namespace, report: Report) -> None:
    """The native client's figures (issues 3 and 4)."""
    produced: defaultdict[str, list[float]] = defaultdict(list)
    consumed: list[float] = []
    grouped: list[float] = []
    for fsync in ("always", "never"):
        for run in range(args.runs):
            with bench_broker(fsync) as broker:
                seconds = trio.run(produce, broker.address, args.records)
                produced[fsync].append(progress(f"produce, fsync={fsync}", args.records / seconds))
                if fsync == "always":
                    seconds = trio.run(consume, broker.address, args.records)
                    consumed.append(progress("consume", args.records / seconds))
                    seconds = trio.run(group_consume, broker.address, args.records)
                    grouped.append(progress("consume in a group", args.records / seconds))
                    if run == 0:
                        samples = trio.run(
                            latency, broker.address, args.rate, args.latency_seconds, args.max_in_flight
                        )
                        overshoot = trio.run(redelivery, broker.address, 1.0, 5)
    rates = {fsync: statistics.median(values) for fsync, values in produced.items()}
    consume_rate, group_rate = statistics.median(consumed), statistics.median(grouped)
    report.rows += [
        rate_row("produce, fsync=always", rates["always"]),
        rate_row("consume from the start (decoded)", consume_rate),
        rate_row("consume in a group, commit per poll", group_rate),
        rate_row("produce, fsync=never", rates["never"]),
    ]
    report.targets += [
        rate_target("produce, fsync=always", 500_000, rates["always"]),
        rate_target("consume from the start (decoded)", 500_000, consume_rate),
    ]
    latency_figures(report, "native client", samples, args.rate, 5)
    report.lines.append(
        f"redelivery after an ack timeout of 1 s: {statistics.mean(overshoot) * 1000:.1f} ms late on average, "
        f"{max(overshoot) * 1000:.1f} ms at most ({len(overshoot)} rounds)"
    )
    share = group_rate / consume_rate
    report.targets.append(
        (
            "group consumption, commit per poll >= 70% of plain",
            f"{share:.0%}",
            "met" if share >= 0.7 else "MISSED",
        )
    )


def confluent_run(broker: ServeProcess, records: int, lines: str) -> dict[str, float]:
    create_topic(broker.address, "bench")
    return {
        "confluent-kafka produce": records / confluent_produce(broker.kafka_address, "bench", records),
        "confluent-kafka consume with commits": records
        / confluent_consume(broker.kafka_address, "bench", records),
    }


def kcat_run(broker: ServeProcess, records: int, lines: str) -> dict[str, float]:
    create_topic(broker.address, "bench")
    return {
        "kcat produce": records / kcat_produce(broker.kafka_address, "bench", lines),
        "kcat consume": records / kcat_consume(broker.kafka_address, "bench", records),
    }


def kafka_throughput(records: int, runs: int, confluent: bool, kcat: bool) -> dict[str, float]:
    """Median records/s of each client's figures on each storage, each run on a fresh broker."""
    suites = [suite for suite, present in ((confluent_run, confluent), (kcat_run, kcat)) if present]
    rates: defaultdict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="logbroker-bench-") as scratch:
        lines = os.path.join(scratch, "lines")
        if kcat:
            write_lines(lines, records)
        for storage, memory in KAFKA_STORAGES.items():
            for _ in range(runs):
                for suite in suites:
                    with bench_broker(memory=memory, kafka=True) as broker:
                        for name, rate in suite(broker, records, lines).items():
                            rates[f"{name}, {storage}"].append(progress(f"{name}, {storage}", rate))
    return {name: statistics.median(values) for name, values in rates.items()}


def kafka(args: argparse.Namespace, report: Report) -> None:
    """The Kafka listener's figures (issue 5), through confluent-kafka and kcat."""
    kcat = shutil.which("kcat") is not None
    if not HAVE_CONFLUENT:
        print("confluent_kafka is not installed (pip install confluent-kafka): skipping its figures")
    if not kcat:
        print("kcat is not on PATH (apt-get install kcat): skipping its figures")
    rates = kafka_throughput(args.records, args.runs, HAVE_CONFLUENT, kcat)
    report.rows += [rate_row(name, rate) for name, rate in rates.items()]
    report.targets += [
        rate_target(name, goal, rates.get(name), stretch) for name, (goal, stretch) in KAFKA_TARGETS.items()
    ]
    name = f"confluent-kafka (linger.ms {args.kafka_linger_ms}, default consumer)"
    if not HAVE_CONFLUENT:
        report.targets.append(latency_target(name, args.rate, 10, None))
        return
    with bench_broker("always", kafka=True) as broker:
        create_topic(broker.address, "latency")
        samples = confluent_latency(
            broker.kafka_address, args.rate, args.latency_seconds, args.kafka_linger_ms
        )
    latency_figures(report, name, samples, args.rate, 10)


def columns(rows: list[tuple[str, str, str]], header: tuple[str, str, str], align: str) -> None:
    """Print rows in columns; `align` is the format alignment of the last two ('>' or '<')."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:{align}{widths[1]}}  {row[2]:{align}{widths[2]}}".rstrip())


def at_least(low: Number, kind: Callable[[str], Number]) -> Callable[[str], Number]:
    """An argparse type: a number no smaller than `low` (a usage error, exit 2, otherwise)."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, not {text}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=at_least(1, int), default=1_000_000, help="records per throughput run"
    )
    parser.add_argument(
        "--latency-seconds", type=at_least(0.001, float), default=10.0, help="how long each latency run sends"
    )
    parser.add_argument("--rate", type=at_least(1, int), default=2000, help="records/s of the latency runs")
    parser.add_argument(
        "--max-in-flight",
        type=at_least(1, int),
        default=1,
        help="produce requests in flight per partition of the native latency producer (1 keeps send order)",
    )
    parser.add_argument(
        "--kafka-linger-ms",
        type=at_least(0, int),
        default=5,
        help="linger.ms of the Kafka latency producer (librdkafka's default)",
    )
    parser.add_argument(
        "--runs", type=at_least(1, int), default=3, help="throughput runs per figure; the median is shown"
    )
    parser.add_argument(
        "--plot", default="bench-latency.png", help="PNG of latency percentiles ('' for none)"
    )
    args = parser.parse_args()
    if args.rate * args.latency_seconds < 1:
        parser.error("--rate times --latency-seconds must be at least one record")
    report = Report()
    native(args, report)
    kafka(args, report)
    ceiling = trio.run(echo_ceiling, 1 << 20, 400)
    report.rows.append(("trio echo ceiling, 1 MiB frames", "-", f"{ceiling:,.0f}"))
    columns(report.rows, ("measure", "records/s", "MB/s"), ">")
    print()
    for line in report.lines:
        print(line)
    print()
    print("targets:")
    columns(report.targets, ("target", "measured", "verdict"), "<")
    if args.plot:
        if plot(report.latency, args.rate, args.plot):
            print(f"wrote {os.path.abspath(args.plot)}")
        else:
            print("matplotlib is not installed: no plot (pip install matplotlib)")


if __name__ == "__main__":
    main()
