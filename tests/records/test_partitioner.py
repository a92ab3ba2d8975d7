import os

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from logbroker.records.partitioner import murmur2, partition_for_key

# Vectors of Kafka's own UtilsTest.testMurmur2 (Java's signed int results).
KAFKA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS.items())
def test_kafka_vectors(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_agrees_with_kafka_python() -> None:
    for length in range(64):
        for _ in range(20):
            key = os.urandom(length)
            assert murmur2(key) & 0xFFFFFFFF == kafka_python_murmur2(key)
            for partitions in (1, 3, 7, 100):
                assert (
                    partition_for_key(key, partitions)
                    == (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions
                )
