"""Disk full and I/O errors.

`run_disk_full`: a `logbroker serve` subprocess whose data directory is a small tmpfs (mounting
one needs root) is filled by a producer until the disk refuses. Then: more produces get a clear
error and no ack; reads go on; a group commit goes on; deleting the filling topic frees its space
at once; production resumes; the broker holds no more descriptors than before; and after a
kill -9 and a restart every acked record is there, at its offset, with nothing unacked.

`run_io_errors`: the server in-process on the fault-injecting file system, with the N-th write
(ENOSPC), fsync (EIO) or rename (EIO) failing, for every N the workload reaches: no produce is acked whose bytes were not
stored and fsynced; after an fsync failure the partition takes no more writes (no retry that
then acks); the other partitions go on; after a restart the log holds every acked record.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

import logbroker
from logbroker.broker.broker import Broker
from logbroker.errors import LogbrokerError, StorageError
from logbroker.records.codec import iter_records
from logbroker.server.config import Settings
from logbroker.server.server import Server
from logbroker.storage.fault_fs import FaultFileSystem
from logbroker.testing import ServeProcess
from tools.campaigns.history import OK, History, Outcome, check, produce, read_back

__all__ = ["DiskFullResult", "IoErrorsResult", "run_disk_full", "run_io_errors"]

FILL, KEEP = "fill", "keep"


@attrs.define
class DiskFullResult(Outcome):
    acked: int = 0
    refused: int = 0
    freed_bytes: int = 0
    resumed: int = 0
    descriptors: tuple[int, int] = (0, 0)

    def summary(self) -> str:
        verdict = self.verdict()
        return (
            f"filled the disk with {self.acked} acked batches, then {self.refused} refused; deleting the "
            f"topic freed {self.freed_bytes:,} bytes; {self.resumed} batches acked after; descriptors "
            f"{self.descriptors[0]} before, {self.descriptors[1]} after; {verdict}"
        )


async def run_disk_full(
    work: Path,
    *,
    size: str = "4m",
    min_free_bytes: int = 256 << 10,
    log: Callable[[str], None] = lambda _: None,
) -> DiskFullResult:
    """Needs root (it mounts a tmpfs under `work`). The broker keeps `min_free_bytes` free for
    commits and metadata (`serve --min-free-bytes`)."""
    mount = work / "tmpfs"
    mount.mkdir()
    await trio.run_process(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)])
    result = DiskFullResult()
    broker = ServeProcess(
        "--log-level",
        "error",
        "--group-initial-delay",
        "0",
        "--min-free-bytes",
        str(min_free_bytes),
        data_dir=mount / "data",
    )
    try:
        await trio.to_thread.run_sync(broker.start)
        async with await logbroker.connect(broker.address) as client:
            await client.create_topic(FILL, config={"segment.bytes": 256 << 10})
            await client.create_topic(KEEP)
            for n in range(10):
                await client.produce(KEEP, [b"keep-%d" % n])
            baseline = broker.descriptors()
            history = History()
            value = os.urandom(8 << 10)
            refusals: list[str] = []
            n = 0
            while len(refusals) < 20 and n < 10_000:  # until the disk refuses, and 19 more times
                n += 1
                attempt = history.attempt("filler", 0, [b"%d:" % n + value])
                try:
                    attempt.offset = await client.produce(FILL, attempt.payloads)
                    attempt.outcome = OK
                except StorageError as exc:  # the outcome stays unknown: the checks allow either
                    refusals.append(exc.message)
                except LogbrokerError as exc:
                    result.violations.append(f"batch {n}: {exc!r} instead of a storage error")
                    break
            result.acked = sum(1 for a in history.attempts if a.outcome == OK)
            result.refused = len(refusals)
            if not refusals:
                result.violations.append("the disk never filled")
            elif not all("no space" in r.lower() for r in refusals):
                result.violations.append(f"unclear refusals: {sorted(set(refusals))[:3]}")
            log(f"disk full after {result.acked} batches")
            # Reads and commits go on.
            consumer = client.consumer(KEEP)
            read = [await consumer.__anext__() for _ in range(10)]
            if [m.value for m in read] != [b"keep-%d" % n for n in range(10)]:
                result.violations.append("the records of another topic could not be read back")
            try:
                async with client.group_consumer("reader", KEEP, start="earliest") as group:
                    messages = await group.poll()
                    await messages[-1].ack()
            except LogbrokerError as exc:
                result.violations.append(f"a group commit failed on the full disk: {exc}")
            # The acked records are all there before the topic goes.
            fetched, _ = await read_back(client, FILL, 1)
            report = check(history, fetched, expect_consumed=False)
            if not report.ok:
                result.violations.append(f"before the delete: {report.summary()}")
            free_before = shutil.disk_usage(mount).free
            await client.delete_topic(FILL)
            result.freed_bytes = shutil.disk_usage(mount).free - free_before
            if result.freed_bytes < result.acked * len(value) // 2:
                result.violations.append(f"deleting the topic freed only {result.freed_bytes} bytes")
            for _ in range(50):
                await client.produce(KEEP, [value])
                result.resumed += 1
            result.descriptors = (baseline, broker.descriptors())
            if result.descriptors[1] > baseline + 4:
                result.violations.append(f"descriptors grew from {baseline} to {result.descriptors[1]}")
            end = await client.list_offset(KEEP, 0, "latest")
        broker.kill()
        await trio.to_thread.run_sync(broker.start)  # on the same port
        async with await logbroker.connect(broker.address) as client:
            if await client.list_offset(KEEP, 0, "latest") != end:
                result.violations.append("after a kill -9 and a restart the log of the kept topic differs")
            if FILL in {t.name for t in await client.list_topics()}:
                result.violations.append("the deleted topic came back after a restart")
    finally:
        broker.kill()
        broker.close()
        with trio.CancelScope(shield=True):
            await trio.run_process(["umount", "-l", str(mount)], check=False)
    return result


# -- I/O errors at every step ------------------------------------------------------------------

DATA_DIR = "/data"


@attrs.define
class IoErrorsResult(Outcome):
    cases: int = 0
    faults_hit: int = 0
    read_only: int = 0
    acked: int = 0

    def summary(self) -> str:
        verdict = self.verdict()
        return (
            f"{self.cases} cases, {self.faults_hit} faults hit, {self.read_only} partitions made read-only, "
            f"{self.acked} batches acked; {verdict}"
        )


async def run_io_errors(
    *, ops: tuple[str, ...] = ("write", "fsync", "rename"), rounds: int = 1, seed: int = 0
) -> IoErrorsResult:
    """For each op, fail its N-th call for every N the workload makes (counted by a run without
    faults); `rounds` repeats that with other random workloads."""
    result = IoErrorsResult()
    for r in range(rounds):
        counts = await _io_error_case(None, 0, random.Random(seed * 1000 + r), result)
        for op in ops:
            for n in range(counts[op]):
                await _io_error_case(op, n, random.Random(seed * 1000 + r), result)
    return result


async def _io_error_case(op: str | None, n: int, rng: random.Random, result: IoErrorsResult) -> Counter[str]:
    fs = FaultFileSystem(seed=rng.randrange(1 << 30))
    settings = Settings.from_mapping(
        {"host": "127.0.0.1", "port": 0, "data_dir": DATA_DIR, "fsync": "always"}
    )
    broker = Broker.open(DATA_DIR, settings.broker, fs=fs, now_ms=int(time.time() * 1000))
    broker.create_topic("t", 2, {"segment.bytes": "4096"}, now_ms=int(time.time() * 1000))
    broker_server = Server(broker, settings.server_config())  # its groups' __offsets log exists now
    if op is not None:
        fs.fail(op, after=n, error=errno.ENOSPC if op == "write" else errno.EIO)
        result.cases += 1
    history = History()
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(broker_server.run)
        async with logbroker.Client(server.address) as client:
            for _ in range(30):
                attempt = history.next_attempt("p", rng.randrange(2), rng.randint(1, 3))
                await produce(client, "t", attempt)
        failed_fsync = [
            p for p in range(2) if (broker.log("t", p).read_only_reason or "").startswith("fsync")
        ]
        result.read_only += len(failed_fsync)
        for p in failed_fsync:  # no retry-then-ack: the partition refuses from now on
            attempt = history.next_attempt("p", p, 1)
            async with logbroker.Client(server.address) as client:
                await produce(client, "t", attempt)
            if attempt.outcome == OK:
                result.violations.append(f"{op} #{n}: partition {p} acked a write after its fsync failed")
        server.request_shutdown()
    counts = Counter(fs.counts)
    result.faults_hit += sum(1 for a in history.attempts if a.outcome != OK) > 0
    result.acked += sum(1 for a in history.attempts if a.outcome == OK)
    fs.power_loss()  # and a restart: what was acked must have been made durable
    reopened = Broker.open(DATA_DIR, settings.broker, fs=fs, now_ms=int(time.time() * 1000))
    try:
        logs = {}
        for p in range(2):
            partition_log = reopened.log("t", p)
            data = partition_log.read(partition_log.log_start_offset, 1 << 30)
            logs[p] = [(r.offset, r.value or b"") for r in iter_records(data)]
    finally:
        reopened.close()
    split = History(reads=[])
    for p in range(2):
        split.attempts = [a for a in history.attempts if a.partition == p]
        report = check(split, {p: logs[p]}, expect_consumed=False)
        if not report.ok:
            result.violations.append(f"{op} #{n}, partition {p}: {report.summary()}")
    return counts
