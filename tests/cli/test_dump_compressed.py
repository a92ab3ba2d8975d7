"""`logbroker dump --records` on segments of snappy, lz4 and zstd batches, as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import cramjam
from crc32c import crc32c
from kafka.record.default_records import DefaultRecordBatchBuilder

from logbroker.records import Compression, encode_batch, stamp_base_offset
from logbroker.records.batch import CRC_START, HEADER
from tests.cli.conftest import Run

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def values(codec: str, who: str, n: int) -> list[bytes]:
    return [f"{who} {codec} {i} ".encode() * 8 for i in range(n)]


def kafka_python_batch(codec: Compression, base_offset: int) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, value in enumerate(values(codec.label, "kafka-python", 3)):
        builder.append(i, timestamp=T0 + i, key=b"k", value=value, headers=[("h", b"v")])
    data = bytearray(builder.build())
    stamp_base_offset(data, base_offset)
    return bytes(data)


def raw_snappy_batch(base_offset: int) -> bytes:
    """A batch the way librdkafka writes snappy: one raw block, no xerial framing."""
    plain = encode_batch(values("snappy", "librdkafka", 3), timestamp=T0, base_offset=base_offset)
    body = bytes(cramjam.snappy.compress_raw(plain[61:]))
    fields = list(HEADER.unpack_from(plain))
    fields[1] = 49 + len(body)  # batchLength
    fields[5] = int(Compression.SNAPPY)  # attributes
    head = bytearray(HEADER.pack(*fields))
    head[17:21] = crc32c(body, crc32c(head[CRC_START:])).to_bytes(4, "big")
    return bytes(head) + body


def test_dump_shows_the_records_of_every_codec(run: Run, tmp_path: Path) -> None:
    batches, expected, offset = [], [], 0
    for codec in (Compression.SNAPPY, Compression.LZ4, Compression.ZSTD):
        ours = values(codec.label, "logbroker", 4)
        batches.append(encode_batch(ours, timestamp=T0, base_offset=offset, compression=codec))
        expected += [(codec.label, v) for v in ours]
        offset += 4
        batches.append(kafka_python_batch(codec, offset))
        expected += [(codec.label, v) for v in values(codec.label, "kafka-python", 3)]
        offset += 3
    batches.append(raw_snappy_batch(offset))
    expected += [("snappy", v) for v in values("snappy", "librdkafka", 3)]
    segment = tmp_path / "00000000000000000000.log"
    segment.write_bytes(b"".join(batches))

    result = run("dump", str(segment), "--records", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)["entries"]
    assert [e["type"] for e in entries if e["type"] not in ("batch", "record")] == []
    codec_at: dict[int, str] = {}
    for entry in entries:
        if entry["type"] == "batch":
            assert entry["crc_ok"] is True
            codec_at.update(
                dict.fromkeys(range(entry["base_offset"], entry["last_offset"] + 1), entry["compression"])
            )
    records = [e for e in entries if e["type"] == "record"]
    assert [(codec_at[r["offset"]], r["value"].encode()) for r in records] == expected
    assert [r["offset"] for r in records] == list(range(len(expected)))

    table = run("dump", str(segment), "--records")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1] == f"7 batches, {len(expected)} records"
    assert "records not shown" not in table.stdout
    assert 'value="librdkafka snappy 2 ' in table.stdout


def test_dump_refuses_a_bomb_at_its_cap(run: Run, tmp_path: Path) -> None:
    segment = tmp_path / "00000000000000000000.log"
    bombs = [
        encode_batch([b"\x00" * 200_000], timestamp=T0, base_offset=i, compression=codec)
        for i, codec in enumerate((Compression.SNAPPY, Compression.LZ4, Compression.ZSTD))
    ]
    segment.write_bytes(b"".join(bombs))
    result = run("dump", str(segment), "--records", "--json", "--max-decompressed", "100000")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)["entries"]
    notes = [e["message"] for e in entries if e["type"] == "note"]
    assert notes == [
        f"{codec} data inflates past the cap of 100000 bytes" for codec in ("snappy", "lz4", "zstd")
    ]
    assert [e for e in entries if e["type"] == "record"] == []
    # With room enough, the same segment shows its records.
    result = run("dump", str(segment), "--records", "--json")
    assert len([e for e in json.loads(result.stdout)["entries"] if e["type"] == "record"]) == 3
