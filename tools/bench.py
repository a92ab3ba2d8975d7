"""End-to-end benchmark: a `logbroker serve` subprocess and the client library, over loopback.

    python tools/bench.py [--records 1000000] [--latency-seconds 10] [--plot bench-latency.png]

Measures, in one run, with 100-byte records (throughput figures are the median of `--runs` runs,
each against a fresh broker: single runs on a small VM vary a lot):

- produce throughput (records/s, MB/s) through the client's batching producer, with the broker
  under `fsync=always` and under `fsync=never` (one topic, one partition);
- consume throughput from the start of the topic: records decoded and handed to the application
  by `async for message in consumer`;
- end-to-end latency (produce call to consumer receipt) at a fixed 2,000 records/s under
  `fsync=always`: p50, p99, max;
- consume-and-commit throughput through a consumer group (a commit after every poll), and how late
  an unacked record is delivered again after its ack timeout;
- the ceiling: loopback TCP throughput of a plain trio echo of the same frame size.

It writes a PNG of the latency percentiles when matplotlib is installed (`pip install -e '.[bench]'`).
Targets (issue 3): produce >= 500,000 records/s with fsync=always; consume >= 500,000 records/s;
p99 end-to-end latency <= 5 ms at 2,000 records/s with fsync=always; group consumption with a
commit per poll >= 70% of plain consumption (issue 4).
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio

import logbroker

VALUE = b"v" * 100
MB = 1_000_000


@contextmanager
def broker_process(fsync: str) -> Iterator[str]:
    data = tempfile.mkdtemp(prefix="logbroker-bench-")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logbroker.cli",
            "serve",
            "--port",
            "0",
            "--data-dir",
            data,
            "--fsync",
            fsync,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("logbroker listening on "):
            raise SystemExit(f"the broker did not start: {line!r}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(data, ignore_errors=True)


async def produce(address: str, records: int) -> float:
    async with await logbroker.connect(address) as client:
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


async def latency(address: str, rate: int, seconds: float) -> list[float]:
    """Send `rate` records a second for `seconds`; each value carries its send time."""
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
            async with client.producer(
                linger_ms=0, max_in_flight=int(os.environ.get("INFLIGHT", "1"))
            ) as producer:
                start = trio.current_time()
                for i in range(total):
                    await trio.sleep_until(start + i / rate)
                    await producer.send("latency", struct.pack(">d", time.perf_counter()) + VALUE[8:])
    return samples


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


def plot(samples: list[float], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    points = [50, 75, 90, 95, 99, 99.9, 100]
    values = [percentile(samples, p) * 1000 for p in points]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(range(len(points)), values, marker="o")
    axis.set_xticks(range(len(points)), [f"p{p:g}" if p < 100 else "max" for p in points])
    axis.set_ylabel("end-to-end latency (ms)")
    axis.set_title("logbroker, 2,000 records/s, fsync=always, 100-byte records")
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3, help="throughput runs per figure; the median is shown")
    parser.add_argument(
        "--plot", default="bench-latency.png", help="PNG of latency percentiles ('' for none)"
    )
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    results: dict[str, float] = {}
    grouped: list[float] = []
    for fsync in ("always", "never"):
        produced: list[float] = []
        consumed: list[float] = []
        for run in range(args.runs):
            with broker_process(fsync) as address:
                produced.append(args.records / trio.run(produce, address, args.records))
                if fsync == "always":
                    consumed.append(args.records / trio.run(consume, address, args.records))
                    grouped.append(args.records / trio.run(group_consume, address, args.records))
                    if run == 0:
                        samples = trio.run(latency, address, args.rate, args.latency_seconds)
                        overshoot = trio.run(redelivery, address, 1.0, 5)
        rate = statistics.median(produced)
        results[f"produce-{fsync}"] = rate
        rows.append((f"produce, fsync={fsync}", f"{rate:,.0f}", f"{rate * len(VALUE) / MB:,.1f}"))
        if consumed:
            rate = statistics.median(consumed)
            results["consume"] = rate
            rows.append(
                ("consume from the start (decoded)", f"{rate:,.0f}", f"{rate * len(VALUE) / MB:,.1f}")
            )
            rate = statistics.median(grouped)
            results["group"] = rate
            rows.append(
                ("consume in a group, commit per poll", f"{rate:,.0f}", f"{rate * len(VALUE) / MB:,.1f}")
            )
    ceiling = trio.run(echo_ceiling, 1 << 20, 400)
    rows.append(("trio echo ceiling, 1 MiB frames", "-", f"{ceiling:,.0f}"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'records/s':>12}  {'MB/s':>8}")
    for name, rps, mbs in rows:
        print(f"{name:<{width}}  {rps:>12}  {mbs:>8}")
    p50, p99 = percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
    print()
    print(
        f"end-to-end latency at {args.rate:,} records/s, fsync=always, {len(samples):,} records: "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(samples) * 1000:.2f} ms, mean {statistics.mean(samples) * 1000:.2f} ms"
    )
    print(
        f"redelivery after an ack timeout of 1 s: {statistics.mean(overshoot) * 1000:.1f} ms late on average, "
        f"{max(overshoot) * 1000:.1f} ms at most ({len(overshoot)} rounds)"
    )
    print()
    print("targets:")
    print(f"  produce with fsync=always: {results['produce-always']:,.0f} records/s (target >= 500,000)")
    print(f"  consume: {results['consume']:,.0f} records/s (target >= 500,000)")
    print(f"  p99 end-to-end latency at {args.rate:,}/s: {p99:.2f} ms (target <= 5 ms)")
    print(
        f"  group consumption with a commit per poll: {results['group'] / results['consume']:.0%} of plain "
        "consumption (target >= 70%)"
    )
    if args.plot:
        if plot(samples, args.plot):
            print(f"wrote {os.path.abspath(args.plot)}")
        else:
            print("matplotlib is not installed: no plot (pip install matplotlib)")


if __name__ == "__main__":
    main()
