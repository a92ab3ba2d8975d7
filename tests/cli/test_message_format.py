"""`consume -f`: kcat-style format strings, compiled once, applied to each message."""

from __future__ import annotations

import pytest

from logbroker.cli.output import FormatError, message_format
from logbroker.client import Message

MESSAGE = Message("orders", 2, 41, 1_700_000_000_123, b"k\xff", b"v\x00al", (("a", b"1"), ("b", None)))
NULLS = Message("t", 0, 0, -1, None, None, ())


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("%s\\n", b"v\x00al\n"),  # bytes as they are
        ("%k:%s", b"k\xff:v\x00al"),
        ("%t-%p@%o", b"orders-2@41"),
        ("%K %S", b"2 4"),
        ("%T", b"1700000000123"),
        ("%h", b"a=1,b="),
        ("100%% %s", b"100% v\x00al"),
        ("\\t%p\\r\\n\\\\\\x41", b"\t2\r\n\\A"),
        ("\\q%p\\", b"\\q2\\"),  # not an escape: kept
    ],
)
def test_fields_and_escapes(spec: str, shown: bytes) -> None:
    assert message_format(spec)(MESSAGE) == shown


def test_null_keys_and_values_are_empty_with_length_minus_one() -> None:
    assert message_format("[%k][%s] %K %S [%h]")(NULLS) == b"[][] -1 -1 []"


@pytest.mark.parametrize(
    ("spec", "why"),
    [("%q", "unknown field %q"), ("%s%", "unknown field %"), ("plain text\\n", "shows no field")],
)
def test_bad_format_strings_say_why(spec: str, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        message_format(spec)
