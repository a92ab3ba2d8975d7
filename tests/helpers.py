"""Small builders shared by the tests."""

from __future__ import annotations

from logbroker.records import Record, encode_batch, iter_records


def batch(
    count: int = 1,
    *,
    start: int = 0,
    timestamp: int = 1_700_000_000_000,
    value_size: int = 20,
    key: bytes | None = None,
) -> bytes:
    """A batch of `count` records whose values say which record they are."""
    values = [f"value-{start + i}".encode().ljust(value_size, b".") for i in range(count)]
    keys = [key] * count if key is not None else None
    return encode_batch(values, keys=keys, timestamp=timestamp)


def records(data: bytes) -> list[Record]:
    return list(iter_records(data))


def offsets(data: bytes) -> list[int]:
    return [r.offset for r in iter_records(data)]
