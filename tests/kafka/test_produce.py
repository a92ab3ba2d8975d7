"""Produce at the Kafka listener: batches Kafka would refuse (a record count that lies, an old
message format, a transactional batch) are refused whole with INVALID_RECORD, and nothing of them
is stored."""

from __future__ import annotations

import struct

import pytest
from crc32c import crc32c

from logbroker.kafka.apis import LIST_OFFSETS
from logbroker.records.batch import ATTR_TRANSACTIONAL
from logbroker.records.codec import encode_batch
from tests.kafka.wire import Wire, list_offsets_body, produced

INVALID_RECORD = 87


def latest(wire: Wire, topic: str = "t") -> int:
    answer = wire.call(LIST_OFFSETS, 2, list_offsets_body(topic, 0))
    return answer["topics"][0]["partitions"][0]["offset"]  # type: ignore[no-any-return]


def with_crc(batch: bytearray) -> bytes:
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    return bytes(batch)


@pytest.mark.parametrize(("records", "claimed"), [(3, 5), (3, 1)])
def test_a_batch_whose_record_count_lies_is_refused(wire: Wire, records: int, claimed: int) -> None:
    # Stored, it gave its records offsets overlapping the next batch's: confluent-kafka delivered
    # offsets 0,1,2,5,6,7,6,7 and kafka-python raised on every poll.
    batch = bytearray(encode_batch([b"r%d" % i for i in range(records)]))
    struct.pack_into(">i", batch, 57, claimed)  # recordsCount
    struct.pack_into(">i", batch, 23, claimed - 1)  # lastOffsetDelta, to match it
    assert produced(wire, with_crc(batch))["error_code"] == INVALID_RECORD
    assert latest(wire) == 0


def test_old_message_formats_and_transactional_batches_are_invalid_records(wire: Wire) -> None:
    old = bytearray(encode_batch([b"x"]))
    old[16] = 1  # magic 1
    assert produced(wire, bytes(old))["error_code"] == INVALID_RECORD
    transactional = bytearray(encode_batch([b"x"], producer_id=7, producer_epoch=0, base_sequence=0))
    struct.pack_into(">h", transactional, 21, ATTR_TRANSACTIONAL)
    assert produced(wire, with_crc(transactional))["error_code"] == INVALID_RECORD
    assert latest(wire) == 0
