"""Kafka RecordBatch v2: pure functions over bytes, no I/O.

`batch` owns the 61-byte header (validation, offset stamping), `codec` the records inside a batch,
`varint` the zigzag varints records use, `compression` the codecs, `partitioner` the partition
Kafka's clients pick for a key (shared by the client's producer and the broker's dead letters).
"""

from logbroker.records.batch import (
    BATCH_OVERHEAD,
    LOG_OVERHEAD,
    BatchHeader,
    parse_header,
    stamp_base_offset,
    validate_batch,
    validate_batches,
)
from logbroker.records.codec import Header, Record, decode_batch, encode_batch, iter_batches, iter_records
from logbroker.records.compression import Compression

__all__ = [
    "BATCH_OVERHEAD",
    "LOG_OVERHEAD",
    "BatchHeader",
    "Compression",
    "Header",
    "Record",
    "decode_batch",
    "encode_batch",
    "iter_batches",
    "iter_records",
    "parse_header",
    "stamp_base_offset",
    "validate_batch",
    "validate_batches",
]
