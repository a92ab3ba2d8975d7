"""Our batches against kafka-python's independent implementation, in both directions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from logbroker.records import Compression, decode_batch, encode_batch, validate_batch

maybe_bytes = st.none() | st.binary(max_size=100)


@st.composite
def record_lists(draw: st.DrawFn) -> list[tuple]:  # type: ignore[type-arg]
    n = draw(st.integers(1, 20))
    base = draw(st.integers(0, 2**41))
    return [
        (
            draw(maybe_bytes),
            draw(maybe_bytes),
            draw(st.lists(st.tuples(st.text(max_size=8), maybe_bytes), max_size=3)),
            base + draw(st.integers(-1000, 1000)),
        )
        for _ in range(n)
    ]


# kafka-python compresses with python-snappy (xerial framing), python-lz4 and zstandard.
codecs = st.sampled_from(
    [
        (Compression.NONE, 0),
        (Compression.GZIP, DefaultRecordBatch.CODEC_GZIP),
        (Compression.SNAPPY, DefaultRecordBatch.CODEC_SNAPPY),
        (Compression.LZ4, DefaultRecordBatch.CODEC_LZ4),
        (Compression.ZSTD, DefaultRecordBatch.CODEC_ZSTD),
    ]
)


@given(record_lists(), codecs, st.integers(0, 2**40))
def test_kafka_python_reads_our_batches(recs: list[tuple], codec, base_offset: int) -> None:  # type: ignore[no-untyped-def, type-arg]
    ours = encode_batch(
        [r[1] for r in recs],
        keys=[r[0] for r in recs],
        headers=[r[2] for r in recs],
        timestamps=[r[3] for r in recs],
        compression=codec[0],
        base_offset=base_offset,
    )
    theirs = DefaultRecordBatch(ours)
    assert theirs.compression_type == codec[1]
    assert theirs.validate_crc()
    assert theirs.crc == validate_batch(ours).crc
    got = [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in theirs]
    assert got == [
        (base_offset + i, k, v, [(hk, hv) for hk, hv in h], ts) for i, (k, v, h, ts) in enumerate(recs)
    ]


@given(record_lists(), codecs)
def test_we_read_kafka_python_batches(recs: list[tuple], codec) -> None:  # type: ignore[no-untyped-def, type-arg]
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec[1],
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    for i, (key, value, headers, ts) in enumerate(recs):
        builder.append(i, timestamp=ts, key=key, value=value, headers=headers)
    theirs = bytes(builder.build())
    header = validate_batch(theirs)
    # kafka-python sends a batch uncompressed when compressing would not make it smaller.
    assert header.compression in (Compression.NONE, codec[0])
    assert header.crc == DefaultRecordBatch(theirs).crc
    _, got = decode_batch(theirs)
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in got] == [
        (i, k, v, list(h), ts) for i, (k, v, h, ts) in enumerate(recs)
    ]
    if codec[0] == Compression.NONE:
        # Uncompressed, the two encoders agree byte for byte (kafka-python writes epoch 0).
        ours = encode_batch(
            [r[1] for r in recs],
            keys=[r[0] for r in recs],
            headers=[r[2] for r in recs],
            timestamps=[r[3] for r in recs],
            partition_leader_epoch=0,
        )
        assert ours == theirs


def test_kafka_python_walks_a_log_of_our_batches() -> None:
    data = b"".join(encode_batch([b"a", b"b"], base_offset=o) for o in (0, 2, 4))
    records = MemoryRecords(data)
    offsets = []
    while records.has_next():
        offsets.extend(r.offset for r in records.next_batch())
    assert offsets == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("codec", "theirs"),
    [
        (Compression.GZIP, DefaultRecordBatch.CODEC_GZIP),
        (Compression.SNAPPY, DefaultRecordBatch.CODEC_SNAPPY),
        (Compression.LZ4, DefaultRecordBatch.CODEC_LZ4),
        (Compression.ZSTD, DefaultRecordBatch.CODEC_ZSTD),
    ],
)
def test_we_read_kafka_python_compressed_batches(codec: Compression, theirs: int) -> None:
    # Records that compress well, so kafka-python keeps the codec; more than one snappy block.
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=theirs,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    expected = []
    for i in range(500):
        key, value = b"customer-%d" % (i % 7), b"order %d created at the eu-west store" % i * 3
        headers = [("trace", b"%08d" % i)] if i % 3 else []
        builder.append(i, timestamp=1_700_000_000_000 + i, key=key, value=value, headers=headers)
        expected.append((i, 1_700_000_000_000 + i, key, value, tuple(headers)))
    data = bytes(builder.build())
    header = validate_batch(data)
    assert header.compression == codec
    assert len(data) < 30_000 < header.records_count * 100
    _, got = decode_batch(data)
    assert [tuple(r) for r in got] == expected
