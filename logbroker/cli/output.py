"""How the command line shows bytes, timestamps and JSON.

Keys, values and header values that are valid UTF-8 appear as strings; any other bytes as an
object `{"base64": "..."}`; null as null. Headers are a list of `[key, value]` pairs (a key may
repeat).

`message_format` compiles a kcat-style format string (`consume -f '%k:%s\\n'`) into a function
from a message to the bytes to write: keys and values come out as they are, bytes and all.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = [
    "FormatError",
    "bytes_json",
    "bytes_text",
    "headers_json",
    "json_line",
    "message_format",
    "timestamp_text",
]


def bytes_json(data: bytes | None) -> str | dict[str, str] | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def bytes_text(data: bytes | None) -> str:
    """A one-line rendering for tables: JSON-quoted text, or base64 for other bytes."""
    shown = bytes_json(data)
    if isinstance(shown, dict):
        return "base64:" + shown["base64"]
    return json.dumps(shown, ensure_ascii=False)


def headers_json(headers: Sequence[tuple[str, bytes | None]]) -> list[list[Any]]:
    return [[key, bytes_json(value)] for key, value in headers]


def timestamp_text(ms: int) -> str:
    if ms < 0:
        return "-"
    try:
        moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return str(ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def json_line(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class _Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


class FormatError(ValueError):
    """A format string that cannot be compiled (the message says why)."""


def _length(data: bytes | None) -> bytes:
    return b"-1" if data is None else str(len(data)).encode()


def _headers(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    return b",".join(key.encode() + b"=" + (value or b"") for key, value in headers)


#: kcat's -f fields: %s value, %S its length, %k key, %K its length (-1 for null), %t topic,
#: %p partition, %o offset, %T timestamp (ms since the epoch), %h headers as k=v,k=v.
_FIELDS: dict[str, Callable[[_Record], bytes]] = {
    "s": lambda m: m.value or b"",
    "S": lambda m: _length(m.value),
    "k": lambda m: m.key or b"",
    "K": lambda m: _length(m.key),
    "t": lambda m: m.topic.encode(),
    "p": lambda m: str(m.partition).encode(),
    "o": lambda m: str(m.offset).encode(),
    "T": lambda m: str(m.timestamp).encode(),
    "h": lambda m: _headers(m.headers),
}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}
_TOKEN = re.compile(r"%(.?)|\\x([0-9A-Fa-f]{2})|\\(.?)|[^%\\]+", re.S)


def message_format(spec: str) -> Callable[[_Record], bytes]:
    """Compile a kcat-style format string: the fields of `_FIELDS`, `%%` for a %, and the
    escapes \\n \\r \\t \\\\ \\xHH (a shell's single quotes leave them to us). Nothing is added:
    end the string with \\n for one message per line."""
    parts: list[bytes | Callable[[_Record], bytes]] = []
    for match in _TOKEN.finditer(spec):
        field, hexa, escape = match.groups()
        if field is not None:
            if field == "%":
                parts.append(b"%")
            elif field in _FIELDS:
                parts.append(_FIELDS[field])
            else:
                known = " ".join("%" + name for name in _FIELDS)
                raise FormatError(f"unknown field %{field} in {spec!r} (fields: {known} %%)")
        elif hexa is not None:
            parts.append(bytes([int(hexa, 16)]))
        elif escape is not None:
            parts.append(_ESCAPES.get(escape, "\\" + escape).encode())
        else:
            parts.append(match.group().encode())
    if not any(callable(part) for part in parts):
        raise FormatError(f"{spec!r} shows no field of the message (e.g. '%k:%s\\n')")
    pieces: list[bytes | Callable[[_Record], bytes]] = []
    for part in parts:  # merge neighbouring literals
        if isinstance(part, bytes) and pieces and isinstance(pieces[-1], bytes):
            pieces[-1] += part
        else:
            pieces.append(part)

    def render(message: _Record) -> bytes:
        return b"".join(p if isinstance(p, bytes) else p(message) for p in pieces)

    return render
