"""A compact way to write down Kafka message schemas, and the codecs compiled from them.

A message is a `Struct` of `Field`s in wire order. Each field says in which versions it exists,
in which it may be null, and whether it is a tagged field (flexible versions only):

    F("topics", Array(Struct(F("name", STRING))), nullable="1+")
    F("allow_auto_topic_creation", BOOL, "4+", default=True)

Decoding gives plain dicts keyed by the field names; a field absent from the version decoded gets
its default, so handlers read every field the same way whatever the version. Encoding takes such
a dict (missing keys take their default) and skips fields the version does not have.

`Struct.decoder(version, flexible)` and `Struct.encoder(version, flexible)` compile, once per
version, a list of small functions: the per-request cost is a loop over fields, never a parse of
the schema. The codecs do no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from logbroker.kafka.types import KafkaDecodeError, Reader, Writer

__all__ = [
    "BOOL",
    "BYTES",
    "FLOAT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "RECORDS",
    "STRING",
    "UINT16",
    "UUID",
    "Array",
    "F",
    "Field",
    "Struct",
    "read_tags",
]

INT8, INT16, UINT16, INT32, INT64 = "int8", "int16", "uint16", "int32", "int64"
FLOAT64, BOOL, UUID, STRING, BYTES, RECORDS = "float64", "bool", "uuid", "string", "bytes", "records"

_MAX_VERSION = 0x7FFF
_MISSING: Any = object()

Decode = Callable[[Reader], Any]
Encode = Callable[[Writer, Any], None]


def _range(spec: str | None) -> tuple[int, int] | None:
    """'3+' -> (3, max); '0-3' -> (0, 3); '4' -> (4, 4); None -> None."""
    if spec is None:
        return None
    if spec.endswith("+"):
        return int(spec[:-1]), _MAX_VERSION
    if "-" in spec:
        lo, hi = spec.split("-")
        return int(lo), int(hi)
    return int(spec), int(spec)


def _within(span: tuple[int, int] | None, version: int) -> bool:
    return span is not None and span[0] <= version <= span[1]


class Array:
    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item


class Field:
    __slots__ = ("default", "name", "nullable", "tag", "tagged", "type", "versions")

    def __init__(
        self,
        name: str,
        type_: Any,
        versions: str = "0+",
        *,
        nullable: str | None = None,
        tag: int | None = None,
        tagged: str | None = None,
        default: Any = _MISSING,
    ) -> None:
        self.name = name
        self.type = type_
        self.versions = _range(versions)
        self.nullable = _range(nullable)
        self.tag = tag
        self.tagged = _range(tagged) if tagged is not None else (self.versions if tag is not None else None)
        self.default = default

    def default_value(self, version: int) -> Any:
        if self.default is not _MISSING:
            return self.default
        if _within(self.nullable, version) and self.type in (STRING, BYTES, RECORDS):
            return None
        return _type_default(self.type)


F = Field


class Struct:
    """Fields in wire order; compiles to a decoder and an encoder per (version, flexible)."""

    def __init__(self, *fields: Field) -> None:
        self.fields = fields

    def decode(self, reader: Reader, version: int, flexible: bool) -> dict[str, Any]:
        return self.decoder(version, flexible)(reader)  # type: ignore[no-any-return]

    def encode(self, writer: Writer, value: dict[str, Any], version: int, flexible: bool) -> None:
        self.encoder(version, flexible)(writer, value)

    @cache  # noqa: B019 - structs live as long as the module; the cache is per version
    def decoder(self, version: int, flexible: bool) -> Decode:
        fixed: list[tuple[str, Decode]] = []
        tagged: dict[int, tuple[str, Decode]] = {}
        defaults: dict[str, Any] = {}
        for field in self.fields:
            if not _within(field.versions, version):
                defaults[field.name] = field.default_value(version)
                continue
            decode = _decoder(field.type, version, flexible, _within(field.nullable, version), field.name)
            if flexible and field.tag is not None and _within(field.tagged, version):
                tagged[field.tag] = (field.name, decode)
                defaults[field.name] = field.default_value(version)
            else:
                fixed.append((field.name, decode))

        def decode_struct(reader: Reader) -> dict[str, Any]:
            out = dict(defaults)
            for name, decode in fixed:
                out[name] = decode(reader)
            if flexible:
                read_tags(reader, tagged, out)
            return out

        return decode_struct

    @cache  # noqa: B019
    def encoder(self, version: int, flexible: bool) -> Encode:
        fixed: list[tuple[str, Any, Encode]] = []
        tagged: list[tuple[int, str, Any, Encode]] = []
        for field in self.fields:
            if not _within(field.versions, version):
                continue
            encode = _encoder(field.type, version, flexible, _within(field.nullable, version), field.name)
            default = field.default_value(version)
            if flexible and field.tag is not None and _within(field.tagged, version):
                tagged.append((field.tag, field.name, default, encode))
            else:
                fixed.append((field.name, default, encode))
        tagged.sort(key=lambda t: t[0])

        def encode_struct(writer: Writer, value: dict[str, Any]) -> None:
            get = value.get
            for name, default, encode in fixed:
                encode(writer, get(name, default))
            if flexible:
                present = [
                    (tag, encode, get(name))
                    for tag, name, default, encode in tagged
                    if get(name, default) != default
                ]
                writer.uvarint(len(present))
                for tag, encode, item in present:
                    inner = Writer()
                    encode(inner, item)
                    data = inner.getvalue()
                    writer.uvarint(tag)
                    writer.uvarint(len(data))
                    writer.raw(data)

        return encode_struct


def read_tags(reader: Reader, known: dict[int, tuple[str, Decode]], out: dict[str, Any]) -> None:
    count = reader.uvarint()
    if count > reader.remaining:
        raise KafkaDecodeError(f"{count} tagged fields in {reader.remaining} bytes")
    last = -1
    for _ in range(count):
        tag = reader.uvarint()
        if tag <= last:
            raise KafkaDecodeError("tagged fields out of order")
        last = tag
        size = reader.uvarint()
        data = reader.raw(size)
        entry = known.get(tag)
        if entry is not None:  # unknown tags are skipped, as the protocol requires
            name, decode = entry
            inner = Reader(data)
            out[name] = decode(inner)


def _type_default(type_: Any) -> Any:
    if type_ in (INT8, INT16, UINT16, INT32, INT64):
        return 0
    if type_ == FLOAT64:
        return 0.0
    if type_ == BOOL:
        return False
    if type_ == STRING:
        return ""
    if type_ in (BYTES, RECORDS):
        return b""
    if type_ == UUID:
        return bytes(16)
    if isinstance(type_, Array):
        return []
    return {}


_PRIMITIVE_READ: dict[str, Callable[[Reader], Any]] = {
    INT8: Reader.int8,
    INT16: Reader.int16,
    UINT16: Reader.uint16,
    INT32: Reader.int32,
    INT64: Reader.int64,
    FLOAT64: Reader.float64,
    BOOL: Reader.boolean,
    UUID: Reader.uuid,
}

_PRIMITIVE_WRITE: dict[str, Callable[[Writer, Any], None]] = {
    INT8: Writer.int8,
    INT16: Writer.int16,
    UINT16: Writer.uint16,
    INT32: Writer.int32,
    INT64: Writer.int64,
    FLOAT64: Writer.float64,
    BOOL: Writer.boolean,
    UUID: Writer.uuid,
}


def _not_null(name: str) -> KafkaDecodeError:
    return KafkaDecodeError(f"field {name!r} is null where this version does not allow it")


def _decoder(type_: Any, version: int, flexible: bool, nullable: bool, name: str) -> Decode:
    primitive = _PRIMITIVE_READ.get(type_) if isinstance(type_, str) else None
    if primitive is not None:
        return primitive
    if type_ == STRING:

        def read_string(reader: Reader) -> str | None:
            value = reader.string(flexible)
            if value is None and not nullable:
                raise _not_null(name)
            return value

        return read_string
    if type_ in (BYTES, RECORDS):
        keep_view = type_ == RECORDS  # record batches are not copied out of the request

        def read_bytes(reader: Reader) -> bytes | memoryview | None:
            value = reader.bytes_(flexible)
            if value is None:
                if not nullable:
                    raise _not_null(name)
                return None
            return value if keep_view else bytes(value)

        return read_bytes
    if isinstance(type_, Array):
        item = _decoder(type_.item, version, flexible, False, name)

        def read_array(reader: Reader) -> list[Any] | None:
            n = reader.count(flexible)
            if n < 0:
                if not nullable:
                    raise _not_null(name)
                return None
            return [item(reader) for _ in range(n)]

        return read_array
    if isinstance(type_, Struct):
        return type_.decoder(version, flexible)
    raise TypeError(f"unknown schema type {type_!r}")


def _encoder(type_: Any, version: int, flexible: bool, nullable: bool, name: str) -> Encode:
    primitive = _PRIMITIVE_WRITE.get(type_) if isinstance(type_, str) else None
    if primitive is not None:
        return primitive
    if type_ == STRING:

        def write_string(writer: Writer, value: str | None) -> None:
            if value is None and not nullable:
                raise ValueError(f"field {name!r} may not be null in this version")
            writer.string(value, flexible)

        return write_string
    if type_ in (BYTES, RECORDS):

        def write_bytes(writer: Writer, value: bytes | memoryview | None) -> None:
            if value is None and not nullable:
                raise ValueError(f"field {name!r} may not be null in this version")
            writer.bytes_(value, flexible)

        return write_bytes
    if isinstance(type_, Array):
        item = _encoder(type_.item, version, flexible, False, name)

        def write_array(writer: Writer, value: list[Any] | None) -> None:
            if value is None:
                if not nullable:
                    raise ValueError(f"field {name!r} may not be null in this version")
                writer.length(-1, flexible, 4)
                return
            writer.length(len(value), flexible, 4)
            for element in value:
                item(writer, element)

        return write_array
    if isinstance(type_, Struct):
        return type_.encoder(version, flexible)
    raise TypeError(f"unknown schema type {type_!r}")
