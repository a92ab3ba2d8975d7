"""Compressed batches against aiokafka's record code (cramjam for snappy, lz4 and zstd), both ways."""

from __future__ import annotations

import random

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from logbroker.records import Compression, decode_batch, encode_batch, validate_batch

CODECS = [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]

Row = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]


def compressible_rows(n: int, seed: int) -> list[Row]:
    """Records whose values repeat a phrase, so every codec gains and aiokafka keeps it."""
    rng = random.Random(seed)
    base = rng.randrange(2**41)
    rows: list[Row] = []
    for i in range(n):
        key = rng.choice([None, b"a", b"customer-7", b""])
        value = b"order %d placed; " % i * rng.randrange(4, 40)
        headers = [("trace", rng.randbytes(rng.randrange(9))), ("src", rng.choice([None, b"web"]))]
        rows.append((key, value, headers[: rng.randrange(3)], base + rng.randrange(-1000, 1000)))
    return rows


row_lists = st.builds(compressible_rows, st.integers(1, 300), st.integers(0, 2**32))


@pytest.mark.parametrize("codec", CODECS)
@given(rows=row_lists)
def test_we_read_aiokafka_batches(codec: Compression, rows: list[Row]) -> None:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    for i, (key, value, headers, ts) in enumerate(rows):
        builder.append(i, timestamp=ts, key=key, value=value, headers=headers)
    theirs = bytes(builder.build())
    assert validate_batch(theirs).compression == codec
    _, got = decode_batch(theirs)
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in got] == [
        (i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(rows)
    ]


@pytest.mark.parametrize("codec", CODECS)
@given(rows=row_lists, base_offset=st.integers(0, 2**40))
def test_aiokafka_reads_our_batches(codec: Compression, rows: list[Row], base_offset: int) -> None:
    ours = encode_batch(
        [r[1] for r in rows],
        keys=[r[0] for r in rows],
        headers=[r[2] for r in rows],
        timestamps=[r[3] for r in rows],
        compression=codec,
        base_offset=base_offset,
    )
    theirs = DefaultRecordBatch(ours)
    assert theirs.compression_type == codec
    assert theirs.validate_crc()
    got = [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in theirs]
    assert got == [(base_offset + i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(rows)]
