"""How much memory a Kafka fetch takes in the broker beyond the records themselves.

    python tools/bench_fetch_memory.py [--partitions 4] [--mib 1] [--requests 20]

A broker runs in this process (`logbroker.testing.BrokerThread`, memory storage, a Kafka
listener); a topic gets `--mib` MiB of 1 KiB records in each of its partitions; then one raw Kafka
Fetch (the newest version served) asks for all of them, `--requests` times, over a plain socket
that reads each answer into one buffer allocated beforehand. For each request, `tracemalloc`'s
peak above what was allocated before it is the most memory the request held at once: the
records read from the log, and every copy of them made on the way to the socket. The table shows
the median and the most over the requests, and that peak per byte of the answer (1.0 would be
the records read once and nothing more).

Only public surfaces are used (the testing module, the client, the Kafka codec), so the same
script measures an older checkout too: `PYTHONPATH=/path/to/old/checkout python
tools/bench_fetch_memory.py` (it prints which `logbroker` it imported).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import tracemalloc
from typing import Any

import trio

import logbroker
from logbroker.kafka.apis import FETCH
from logbroker.kafka.types import Writer
from logbroker.testing import BrokerThread

_SIZE = struct.Struct(">i")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def fetch_request(partitions: int, correlation_id: int) -> bytes:
    version = FETCH.max_version
    body: dict[str, Any] = {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 1,
        "max_bytes": 256 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": "t",
                "partitions": [
                    {
                        "partition": p,
                        "current_leader_epoch": -1,
                        "fetch_offset": 0,
                        "log_start_offset": -1,
                        "partition_max_bytes": 64 << 20,
                    }
                    for p in range(partitions)
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }
    writer = Writer()
    writer.int16(FETCH.key)
    writer.int16(version)
    writer.int32(correlation_id)
    writer.string("bench", compact=False)
    FETCH.request.encode(writer, body, version, FETCH.flexible(version))
    frame = writer.getvalue()
    return _SIZE.pack(len(frame)) + frame


def receive_into(sock: socket.socket, buffer: bytearray) -> int:
    """One whole answer into `buffer` (allocated once); its size."""
    view = memoryview(buffer)
    got = 0
    while got < 4:
        got += sock.recv_into(view[got:], 4 - got)
    size: int = _SIZE.unpack_from(buffer)[0]
    end = 4 + size
    if end > len(buffer):
        raise SystemExit(f"an answer of {size} bytes does not fit the {len(buffer)}-byte buffer")
    while got < end:
        got += sock.recv_into(view[got:], end - got)
    return end


async def fill(address: str, partitions: int, mib: int) -> None:
    async with await logbroker.connect(address) as client:
        await client.create_topic("t", partitions=partitions)
        value = b"x" * 1000
        for p in range(partitions):
            for _ in range(mib):
                await client.produce("t", [value] * 1000, partition=p)


def measure(partitions: int, mib: int, requests: int) -> tuple[int, list[int]]:
    with BrokerThread(kafka_port=0) as broker:
        trio.run(fill, broker.address, partitions, mib)
        host, port = broker.kafka_address.rsplit(":", 1)
        buffer = bytearray((partitions * mib + 1) * (1 << 20) + (1 << 20))
        peaks = []
        size = 0
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(fetch_request(partitions, 0))  # warm up: the first read checks nothing
            receive_into(sock, buffer)
            tracemalloc.start()
            for n in range(1, requests + 1):
                request = fetch_request(partitions, n)
                before, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                sock.sendall(request)
                size = receive_into(sock, buffer)
                _, peak = tracemalloc.get_traced_memory()
                peaks.append(peak - before)
            tracemalloc.stop()
        return size, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=positive, default=4)
    parser.add_argument("--mib", type=positive, default=1, help="MiB of records in each partition")
    parser.add_argument("--requests", type=positive, default=20)
    args = parser.parse_args()
    print(f"logbroker from {logbroker.__file__} (Python {sys.version.split()[0]})")
    size, peaks = measure(args.partitions, args.mib, args.requests)
    median = statistics.median(peaks)
    print()
    print(f"{'measure':<40}{'bytes':>14}")
    print(f"{'answer (one Fetch, ' + str(args.partitions) + ' partitions)':<40}{size:>14,}")
    print(f"{'peak memory per request, median':<40}{round(median):>14,}")
    print(f"{'peak memory per request, most':<40}{max(peaks):>14,}")
    print(f"{'peak per byte of the answer':<40}{median / size:>14.2f}")


if __name__ == "__main__":
    main()
