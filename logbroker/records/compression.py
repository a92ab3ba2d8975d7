"""Compression codecs of record batches: gzip, snappy, lz4 and zstd, as Kafka's clients write them.

The broker stores and serves compressed batches exactly as produced and never decompresses them on
the produce or fetch path (record count and CRC are in the uncompressed header). Decompression is
for tools and clients that show records, and it is always capped: a batch that would inflate past
`max_size` is refused with `CorruptRecordError` before more than `max_size` bytes are produced (a
compression bomb costs nothing), and damaged input raises `CorruptRecordError`, never a library's
own exception.

The records region of a batch (everything after its 61-byte header) is one compressed stream:

gzip (codec 1): a gzip stream (RFC 1952); a zlib stream is read too. Written at zlib's default
level, as Java's `GZIPOutputStream` does.

snappy (codec 2): what Java's client and kafka-python write is xerial snappy-java's block framing,
all integers big-endian:

    offset  width  field
         0      8  magic           82 53 4e 41 50 50 59 00 ("\\x82SNAPPY\\0")
         8      4  version         int32, 1 (not checked: some writers put it little-endian)
        12      4  compatible      int32, 1 (not checked either)
        16      4  block length    int32, bytes of the raw snappy block that follows
        20      n  block           raw snappy of at most 32 KiB of input
       ...         more (length, block) pairs; a second 16-byte header between blocks starts a
                   concatenated stream and is skipped, as snappy-java does

librdkafka writes one raw snappy block without framing; a stream that does not start with the
magic is read as that. A raw block starts with its uncompressed length as an unsigned varint
(at most 5 bytes), which is checked against the cap before the block is decoded, so nothing is
allocated from an unchecked length.

lz4 (codec 3): one LZ4 frame (magic 04 22 4d 18, the format Kafka uses since 0.10 for magic 1
and 2 batches), blocks independent (Java's reader refuses linked blocks); written with 64 KiB
blocks and the content size in the frame header, as kafka-python does. Read with any frame
options (content size or not, checksums, linked blocks).

zstd (codec 4): one zstd frame (magic 28 b5 2f fd) at level 3, Kafka's default. librdkafka and
Java's zstd-jni write frames without the content size, so the cap cannot rely on it. Read across
concatenated frames, as zstd's own tools do (the lz4 reader does the same).

Libraries: cramjam (Rust, the library aiokafka and python-snappy use) for raw snappy blocks; the
xerial framing is done here, so the cap holds block by block. cramjam's lz4 and zstd decoders
cannot stop at a cap without a caller-allocated output buffer of the cap's size (64 MiB by
default, for every batch), so lz4 comes from `lz4` (python-lz4, the binding of the reference C
library; its frame decompressor takes `max_length`), and zstd from the standard library's
`compression.zstd` (Python 3.14), with its backport `backports.zstd` before that: also a
decompressor with `max_length`, and a dependency that goes away with newer Pythons.
"""

from __future__ import annotations

import enum
import struct
import sys
import zlib
from collections.abc import Callable
from typing import Protocol

import cramjam
import lz4.frame

from logbroker.errors import CorruptRecordError

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = ["DEFAULT_MAX_DECOMPRESSED", "Compression", "compress", "decompress"]

#: Cap on the decompressed size of one batch when a caller does not name one.
DEFAULT_MAX_DECOMPRESSED = 64 * 1024 * 1024

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)  # version 1, compatible with 1
_XERIAL_BLOCK = 32 * 1024  # input bytes per block: snappy-java's default, and kafka-python's
_INT32 = struct.Struct(">i")

#: Kafka's default zstd level (KIP-390).
_ZSTD_LEVEL = 3

#: Most output asked of a streaming decompressor in one call (python-lz4 allocates what is asked).
_STEP = 1 << 20


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
    if codec == Compression.SNAPPY:
        return _snappy_xerial(data)
    if codec == Compression.LZ4:
        result: bytes = lz4.frame.compress(data, block_linked=False)
        return result
    if codec == Compression.ZSTD:
        return zstd.compress(data, level=_ZSTD_LEVEL)
    raise ValueError(f"unknown compression codec {codec}")


def decompress(codec: int, data: bytes, max_size: int = DEFAULT_MAX_DECOMPRESSED) -> bytes:
    """Decompress a records region, refusing to produce more than `max_size` bytes."""
    if codec == Compression.NONE:
        return data
    if codec == Compression.GZIP:
        return _gunzip(data, max_size)
    if codec == Compression.SNAPPY:
        return _unsnappy(data, max_size)
    if codec == Compression.LZ4:
        return _inflate_frames("lz4", lz4.frame.LZ4FrameDecompressor, RuntimeError, data, max_size)
    if codec == Compression.ZSTD:
        return _inflate_frames("zstd", zstd.ZstdDecompressor, zstd.ZstdError, data, max_size)
    raise CorruptRecordError(f"unknown compression codec {codec}")


def _too_big(label: str, max_size: int) -> CorruptRecordError:
    return CorruptRecordError(f"{label} data inflates past the cap of {max_size} bytes")


def _gunzip(data: bytes, max_size: int) -> bytes:
    unpacker = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
    try:
        out = unpacker.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise CorruptRecordError(f"gzip data is damaged: {exc}") from None
    if len(out) > max_size:
        raise _too_big("gzip", max_size)
    if not unpacker.eof:
        raise CorruptRecordError("gzip data ends before its stream does")
    return out


# -- snappy --------------------------------------------------------------------------------------


def _snappy_xerial(data: bytes) -> bytes:
    parts: list[bytes | cramjam.Buffer] = [_XERIAL_HEADER]
    with memoryview(data) as view:
        for start in range(0, len(view), _XERIAL_BLOCK):
            block = cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK])
            parts.append(_INT32.pack(len(block)))
            parts.append(block)
    return b"".join(parts)


def _unsnappy(data: bytes, max_size: int) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return bytes(_snappy_block(data, max_size, max_size))
    parts: list[cramjam.Buffer] = []
    size = 0
    end = len(data)
    with memoryview(data) as view:
        pos = 0
        while pos < end:
            if data.startswith(_XERIAL_MAGIC, pos):
                if end - pos < len(_XERIAL_HEADER):
                    raise CorruptRecordError(f"snappy stream header at byte {pos} is cut short")
                pos += len(_XERIAL_HEADER)
                continue
            if end - pos < _INT32.size:
                raise CorruptRecordError(f"snappy block length at byte {pos} is cut short")
            (length,) = _INT32.unpack_from(data, pos)
            pos += _INT32.size
            if length < 0 or length > end - pos:
                raise CorruptRecordError(
                    f"snappy block of {length} bytes at byte {pos} does not fit its stream"
                )
            block = _snappy_block(view[pos : pos + length], max_size - size, max_size)
            size += len(block)
            parts.append(block)
            pos += length
    return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)


def _snappy_block(block: bytes | memoryview, room: int, max_size: int) -> cramjam.Buffer:
    """One raw snappy block, refused unless the length it declares fits in `room`."""
    declared = 0
    for i in range(min(5, len(block))):
        byte = block[i]
        declared |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            break
    else:
        raise CorruptRecordError("snappy block does not start with its length")
    if declared > room:
        raise _too_big("snappy", max_size)
    try:
        out = cramjam.snappy.decompress_raw(block)
    except cramjam.DecompressionError as exc:
        raise CorruptRecordError(f"snappy data is damaged: {exc}") from None
    if len(out) != declared:  # the library checks this; the cap must not depend on it
        raise CorruptRecordError(f"snappy block declares {declared} bytes but holds {len(out)}")
    return out


# -- lz4 and zstd --------------------------------------------------------------------------------


class _Unpacker(Protocol):
    """A frame decompressor with the standard library's streaming interface (bz2, lzma, zstd)."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes | None: ...

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes: ...


def _inflate_frames(
    label: str,
    new_unpacker: Callable[[], _Unpacker],
    errors: type[Exception],
    data: bytes,
    max_size: int,
) -> bytes:
    """Decompress one or more frames back to back, asking for no more than the cap allows."""
    parts: list[bytes] = []
    size = 0
    rest = data
    while True:
        unpacker = new_unpacker()
        pending = rest
        while not unpacker.eof:
            try:
                out = unpacker.decompress(pending, min(max_size - size + 1, _STEP))
            except errors as exc:
                raise CorruptRecordError(f"{label} data is damaged: {exc}") from None
            if not out and not pending and not unpacker.eof:
                # No input left and none of it buffered inside: the frame was cut short.
                raise CorruptRecordError(f"{label} data ends before its frame does")
            pending = b""
            size += len(out)
            if size > max_size:
                raise _too_big(label, max_size)
            parts.append(out)
        rest = unpacker.unused_data or b""
        if not rest:
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)
