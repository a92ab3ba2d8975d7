"""Compression codecs of record batches.

The broker stores and serves compressed batches exactly as produced and never decompresses them on
the produce or fetch path (record count and CRC are in the uncompressed header). Decompression is
for tools and clients that show records, and it is always capped: a batch that would inflate past
`max_size` is refused, not inflated (a compression bomb costs nothing).

gzip comes from the standard library. snappy, lz4 and zstd need libraries this build does not
carry; batches using them are stored and served like any other, and decoding their records raises
`UnsupportedCompressionError`.
"""

from __future__ import annotations

import enum
import zlib

from logbroker.errors import CorruptRecordError, UnsupportedCompressionError

__all__ = ["DEFAULT_MAX_DECOMPRESSED", "Compression", "compress", "decompress"]

#: Cap on the decompressed size of one batch when a caller does not name one.
DEFAULT_MAX_DECOMPRESSED = 64 * 1024 * 1024


class Compression(enum.IntEnum):
    """Codec ids of the batch attributes (bits 0-2)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @property
    def label(self) -> str:
        return self.name.lower()


def compress(codec: Compression, data: bytes) -> bytes:
    """Compress the records region of a batch."""
    if codec == Compression.NONE:
        return data
    if codec == Compression.GZIP:
        packer = zlib.compressobj(wbits=31)  # 16 + 15: a gzip stream, as Kafka's clients write
        return packer.compress(data) + packer.flush()
    raise UnsupportedCompressionError(f"{Compression(codec).label} compression is not available")


def decompress(codec: int, data: bytes, max_size: int = DEFAULT_MAX_DECOMPRESSED) -> bytes:
    """Decompress a records region, refusing to produce more than `max_size` bytes."""
    if codec == Compression.NONE:
        return data
    if codec == Compression.GZIP:
        return _gunzip(data, max_size)
    if codec in (Compression.SNAPPY, Compression.LZ4, Compression.ZSTD):
        raise UnsupportedCompressionError(
            f"{Compression(codec).label} compression is not available to decode records"
        )
    raise CorruptRecordError(f"unknown compression codec {codec}")


def _gunzip(data: bytes, max_size: int) -> bytes:
    unpacker = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
    try:
        out = unpacker.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise CorruptRecordError(f"gzip data is damaged: {exc}") from None
    if len(out) > max_size:
        raise CorruptRecordError(f"gzip data inflates past the cap of {max_size} bytes")
    if not unpacker.eof:
        raise CorruptRecordError("gzip data ends before its stream does")
    return out
