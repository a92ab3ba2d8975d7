"""Write the sample segment files under tests/fixtures/ (deterministic; run from the repo root).

    python tools/make_fixtures.py

- `tests/fixtures/sample-0/`: a partition directory written by logbroker itself: three segments
  with keys, headers, a null value, binary bytes and a gzip batch; closed cleanly.
- `tests/fixtures/kafka-python.log`: a segment written with kafka-python's own batch builders,
  an independent implementation: legacy magic 0 and 1 messages, then v2 batches (plain, gzip,
  with headers).
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from logbroker.records import Compression, encode_batch
from logbroker.storage.config import LogConfig
from logbroker.storage.fs import OsFileSystem
from logbroker.storage.log import PartitionLog

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def sample_partition(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    log = PartitionLog.open(
        OsFileSystem(), str(directory), LogConfig(segment_bytes=400, index_interval_bytes=100), now_ms=T0
    )
    log.append(encode_batch([b"hello", b"world"], timestamp=T0), now_ms=T0)
    log.append(
        encode_batch(
            [b"order 1 created", b"order 1 paid"],
            keys=[b"order-1", b"order-1"],
            headers=[[("source", b"web")], [("source", b"web"), ("trace", None)]],
            timestamps=[T0 + 1000, T0 + 2000],
        ),
        now_ms=T0,
    )
    log.append(encode_batch([None], keys=[b"order-1"], timestamp=T0 + 3000), now_ms=T0)  # a tombstone
    log.append(encode_batch([b"\x00\xff\xfe binary"], timestamp=T0 + 4000), now_ms=T0)
    log.append(
        encode_batch(
            [b"compressed %d" % i for i in range(5)], timestamp=T0 + 5000, compression=Compression.GZIP
        ),
        now_ms=T0,
    )
    for i in range(6):
        log.append(encode_batch([b"tail %d" % i], timestamp=T0 + 6000 + i), now_ms=T0)
    log.close()


def kafka_python_segment(path: Path) -> None:
    out = bytearray()
    offset = 0
    for magic in (0, 1):
        legacy = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 20)
        legacy.append(0, timestamp=T0 if magic else None, key=b"k", value=b"legacy v%d" % magic)
        data = bytearray(legacy.build())
        struct.pack_into(">q", data, 0, offset)
        out += data
        offset += 1
    for codec, headers in ((0, []), (DefaultRecordBatchBuilder.CODEC_GZIP, []), (0, [("h", b"v")])):
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=codec,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        for i in range(3):
            builder.append(
                i,
                timestamp=T0 + offset + i,
                key=None,
                value=b"kafka-python %d" % (offset + i),
                headers=headers,
            )
        data = bytearray(builder.build())
        struct.pack_into(">q", data, 0, offset)
        out += data
        offset += 3
    path.write_bytes(bytes(out))


if __name__ == "__main__":
    FIXTURES.mkdir(parents=True, exist_ok=True)
    sample_partition(FIXTURES / "sample-0")
    kafka_python_segment(FIXTURES / "kafka-python.log")
    print(f"wrote fixtures under {FIXTURES}")
