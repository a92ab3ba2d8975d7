"""How the command line shows bytes, timestamps and JSON.

Keys, values and header values that are valid UTF-8 appear as strings; any other bytes as an
object `{"base64": "..."}`; null as null. Headers are a list of `[key, value]` pairs (a key may
repeat).
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["bytes_json", "bytes_text", "headers_json", "json_line", "timestamp_text"]


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
