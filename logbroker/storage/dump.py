"""`logbroker dump`: what a segment file holds, batch by batch and record by record, read-only.

Any Kafka-format `.log` file will do, not only logbroker's: batches whose CRC fails are shown with
`crc_ok` false and the dump goes on; legacy (magic 0/1) messages are shown as such, undecoded; a
torn tail or an unreadable header ends the dump with a problem entry saying where.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
from crc32c import crc32c

from logbroker.errors import CorruptRecordError
from logbroker.records.batch import CRC_START, MAGIC, BatchHeader
from logbroker.records.codec import Record, decode_batch
from logbroker.records.compression import DEFAULT_MAX_DECOMPRESSED
from logbroker.storage.fs import FileSystem, OsFileSystem
from logbroker.storage.scan import BatchScanner, ScanProblem

__all__ = ["BatchEntry", "RecordEntry", "RecordsUnavailable", "dump_segment"]

# A batch bigger than this is not read whole to check its CRC or show its records.
_MAX_BATCH_READ = 256 * 1024 * 1024


@attrs.frozen
class BatchEntry:
    position: int
    header: BatchHeader
    crc_ok: bool | None  # None for legacy messages, which carry a different checksum

    @property
    def legacy(self) -> bool:
        return self.header.magic != MAGIC


@attrs.frozen
class RecordEntry:
    record: Record


@attrs.frozen
class RecordsUnavailable:
    """The records of a batch could not be shown."""

    position: int
    reason: str


DumpEntry = BatchEntry | RecordEntry | RecordsUnavailable | ScanProblem


def dump_segment(
    path: str,
    *,
    records: bool = False,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    fs: FileSystem | None = None,
) -> Iterator[DumpEntry]:
    """Entries describing the segment file at `path`, in file order."""
    fs = fs or OsFileSystem()
    handle = fs.open(path, "r")
    try:
        size = handle.size()
        scanner = BatchScanner(lambda at, n: handle.pread(n, at), size, check_crc=False, allow_legacy=True)
        for position, header in scanner:
            if header.magic != MAGIC:
                yield BatchEntry(position, header, None)
                continue
            data = handle.pread(header.size, position) if header.size <= _MAX_BATCH_READ else None
            crc_ok = None if data is None else crc32c(memoryview(data)[CRC_START:]) == header.crc
            yield BatchEntry(position, header, crc_ok)
            if not records or header.is_control:
                continue
            if data is None:
                yield RecordsUnavailable(position, f"batch of {header.size} bytes is too large to show")
                continue
            try:
                _, decoded = decode_batch(data, check_crc=False, max_decompressed=max_decompressed)
            except CorruptRecordError as exc:
                yield RecordsUnavailable(position, exc.message)
                continue
            for record in decoded:
                yield RecordEntry(record)
        if scanner.problem is not None:
            yield scanner.problem
    finally:
        handle.close()
