"""Storage-engine benchmark: append, read and recovery throughput, beside the disk's raw speed.

    python tools/bench_storage.py [--size-mb 256] [--recovery-mb 1024] [--dir DIR]

Every figure is the median of `--trials` runs (3), each started with no dirty pages pending: the
page cache of this kind of VM makes single runs vary by a factor of several.

Records carry 100-byte values, in batches of 1, 100 and 1000 records. It measures, in one run:

- append throughput (records/s, MB/s) for memory segments, file segments without fsync, and file
  segments with an fsync after every append;
- read throughput of whole batches (1 MiB reads) from memory and from file segments;
- the raw sequential write speed of the same disk (1 MiB writes of the same total size, with and
  without a final fsync), as the ceiling for file appends; each file-append trial is paired with
  a raw write just before it and the target compares the pairs;
- recovery time of a log of `--recovery-mb` (one 1 GiB segment by default, the worst case): with
  the clean-shutdown marker, and without it (a full scan with CRC checks). The files are in the
  page cache, as after a process crash; `--drop-caches` (root) measures a cold start too.

Targets (issue 2): file append of 1000-record batches without fsync >= 50% of the raw write speed;
memory reads >= 1 GB/s; recovery of 1 GiB under 1 s with the marker, under 10 s without.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

from logbroker.records import encode_batch
from logbroker.storage.config import LogConfig
from logbroker.storage.fs import OsFileSystem
from logbroker.storage.log import PartitionLog

MB = 1_000_000
VALUE = b"v" * 100
FS = OsFileSystem()


def make_batch(records: int) -> bytes:
    return encode_batch([VALUE] * records, timestamp=1_767_225_600_000)


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    # Start every measurement with no dirty pages pending, so one run's write-back does not
    # slow the next one down.
    os.sync()
    start = time.perf_counter()
    done = fn()
    return time.perf_counter() - start, done


def append_run(log: PartitionLog, batch: bytes, appends: int, fsync_each: bool) -> Callable[[], int]:
    def run() -> int:
        append, flush = log.append, log.flush
        for _ in range(appends):
            append(batch, 0)
            if fsync_each:
                flush()
        return appends

    return run


def read_run(log: PartitionLog, batch_size: int, records: int) -> Callable[[], int]:
    """Read the whole log in 1 MiB reads; every batch is alike, so offsets advance by count."""

    def run() -> int:
        offset, total, end = log.log_start_offset, 0, log.next_offset
        read = log.read
        while offset < end:
            data = read(offset, 1 << 20)
            total += len(data)
            offset += len(data) // batch_size * records
        return total

    return run


def raw_write(directory: str, total_bytes: int, fsync: bool) -> float:
    chunk = os.urandom(1 << 20)
    path = os.path.join(directory, "raw.bin")
    os.sync()
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = 0
        while written < total_bytes:
            written += os.write(fd, chunk)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    os.unlink(path)
    return total_bytes / elapsed


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=256, help="bytes appended per no-fsync run")
    parser.add_argument("--fsync-seconds", type=float, default=2.0, help="time per fsync-each-append run")
    parser.add_argument("--recovery-mb", type=int, default=1024, help="size of the log recovered")
    parser.add_argument("--trials", type=int, default=3, help="runs per figure; the median is shown")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--drop-caches", action="store_true", help="also time a cold-cache recovery (root)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="logbroker-bench-", dir=args.dir)
    rows: list[tuple[str, str, str, str]] = []
    try:
        total = args.size_mb * MB
        trials = args.trials
        raw_rates: list[float] = []
        raw_synced = statistics.median(raw_write(root, total, fsync=True) for _ in range(trials))
        ratios_1000: list[float] = []
        memory_read_1000 = 0.0
        for records in (1, 100, 1000):
            batch = make_batch(records)
            appends = max(total // len(batch), 1)
            for kind in ("memory", "file", "file+fsync"):
                n = appends
                if kind == "file+fsync":
                    # Calibrate to about --fsync-seconds a trial.
                    probe_dir = os.path.join(root, "probe")
                    log = PartitionLog.open(FS, probe_dir, LogConfig(), now_ms=0)
                    probe, _ = timed(append_run(log, batch, 20, True))
                    log.close()
                    shutil.rmtree(probe_dir)
                    n = max(int(args.fsync_seconds / (probe / 20)), 20)
                append_rates, read_rates, reopened_rates = [], [], []
                for trial in range(trials):
                    if kind == "file":
                        # Paired with a raw write of the same size just before it: the pair sees
                        # the same state of the page cache.
                        raw_rates.append(raw_write(root, n * len(batch), fsync=False))
                    directory = os.path.join(root, f"{kind}-{records}-{trial}")
                    log = (
                        PartitionLog.in_memory(LogConfig())
                        if kind == "memory"
                        else PartitionLog.open(FS, directory, LogConfig(), now_ms=0)
                    )
                    seconds, _ = timed(append_run(log, batch, n, kind == "file+fsync"))
                    append_rates.append(n * len(batch) / seconds)
                    if kind == "file" and records == 1000:
                        ratios_1000.append(append_rates[-1] / raw_rates[-1])
                    if kind != "file+fsync":
                        read_seconds, read_bytes = timed(read_run(log, len(batch), records))
                        read_rates.append(read_bytes / read_seconds)
                    if kind == "file":
                        # After a restart every batch is CRC-checked the first time it is served.
                        log.close()
                        log = PartitionLog.open(FS, directory, LogConfig(), now_ms=0)
                        read_seconds, read_bytes = timed(read_run(log, len(batch), records))
                        reopened_rates.append(read_bytes / read_seconds)
                    log.close()
                    shutil.rmtree(directory, ignore_errors=True)
                per_record = len(batch) / records
                rate = statistics.median(append_rates)
                rows.append(
                    (f"append {kind}", str(records), f"{rate / per_record:,.0f}", f"{rate / MB:,.0f}")
                )
                for label, rates in (
                    (f"read {kind} (1 MiB reads)", read_rates),
                    ("read file after reopen (CRC-checked)", reopened_rates),
                ):
                    if rates:
                        median = statistics.median(rates)
                        rows.append(
                            (label, str(records), f"{median / per_record:,.0f}", f"{median / MB:,.0f}")
                        )
                if kind == "memory" and records == 1000:
                    memory_read_1000 = statistics.median(read_rates)

        rows.insert(
            0, ("raw sequential write, no fsync", "-", "-", f"{statistics.median(raw_rates) / MB:,.0f}")
        )
        rows.insert(1, ("raw sequential write + final fsync", "-", "-", f"{raw_synced / MB:,.0f}"))

        # Recovery of a large log: one segment of --recovery-mb, 1000-record batches.
        directory = os.path.join(root, "recovery")
        batch = make_batch(1000)
        log = PartitionLog.open(FS, directory, LogConfig(), now_ms=0)
        for _ in range(args.recovery_mb * MB // len(batch)):
            log.append(batch, 0)
        size = log.size_bytes
        log.close()
        clean, reopened = timed_open(directory)
        reopened.flush()
        for segment in reopened.segments:
            segment.close()  # "crash": no clean-shutdown marker
        unclean, recovered = timed_open(directory)
        if recovered.recovery is None or recovered.recovery.clean_shutdown:
            raise SystemExit("the crash left a clean-shutdown marker: the full-scan figure would be wrong")
        recovered.close()
        rows.append(
            (f"recovery of {size / MB:,.0f} MB, clean marker", "1000", "-", f"{clean * 1000:,.1f} ms")
        )
        rows.append((f"recovery of {size / MB:,.0f} MB, full scan", "1000", "-", f"{unclean * 1000:,.1f} ms"))
        cold = None
        if args.drop_caches and drop_caches():
            # The clean marker was written again by the close above: remove it for a cold scan.
            os.unlink(os.path.join(directory, "clean-shutdown"))
            cold, log = timed_open(directory)
            log.close()
            rows.append(
                (
                    f"recovery of {size / MB:,.0f} MB, full scan, cold cache",
                    "1000",
                    "-",
                    f"{cold * 1000:,.1f} ms",
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'batch':>5}  {'records/s':>12}  {'MB/s (or time)':>14}")
    for name, per_batch, rps, mbs in rows:
        print(f"{name:<{width}}  {per_batch:>5}  {rps:>12}  {mbs:>14}")
    print()
    print("targets:")
    print(
        "  file append, 1000-record batches, no fsync: "
        f"{statistics.median(ratios_1000):.0%} of the raw write speed measured just before it "
        f"(median of {len(ratios_1000)} pairs; target >= 50%)"
    )
    print(f"  memory reads of whole batches: {memory_read_1000 / 1e9:.2f} GB/s (target >= 1 GB/s)")
    print(
        f"  recovery with clean marker: {clean:.3f} s (target < 1 s); full scan: {unclean:.3f} s (target < 10 s)"
    )


def timed_open(directory: str) -> tuple[float, PartitionLog]:
    start = time.perf_counter()
    log = PartitionLog.open(FS, directory, LogConfig(), now_ms=0)
    return time.perf_counter() - start, log


if __name__ == "__main__":
    main()
