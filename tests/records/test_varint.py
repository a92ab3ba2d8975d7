import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbroker.errors import CorruptRecordError
from logbroker.records.varint import decode_varint, encode_varint, size_of_varint

# The examples of the Kafka format reference (kafka-format.md, 1.4).
EXAMPLES = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (63, "7e"),
    (-64, "7f"),
    (64, "8001"),
    (300, "d804"),
    (-300, "d704"),
]


@pytest.mark.parametrize(("value", "hex_bytes"), EXAMPLES)
def test_known_encodings(value: int, hex_bytes: str) -> None:
    assert encode_varint(value).hex() == hex_bytes
    assert decode_varint(bytes.fromhex(hex_bytes), 0) == (value, len(hex_bytes) // 2)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) == size_of_varint(value) <= 10
    assert decode_varint(b"\xaa" + encoded + b"\xbb", 1) == (value, 1 + len(encoded))


def test_int32_range_fits_five_bytes() -> None:
    assert len(encode_varint(2**31 - 1)) == 5
    assert len(encode_varint(-(2**31))) == 5


def test_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="varlong"):
        encode_varint(2**63)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80", b"\xff\xff", bytes([0xFF] * 10) + b"\x01", bytes([0x80] * 11)],
)
def test_truncated_or_overlong_input_raises_typed_error(data: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        decode_varint(data, 0)


def test_int32_fields_refuse_six_byte_varints() -> None:
    six = bytes([0x80] * 5) + b"\x01"
    with pytest.raises(CorruptRecordError, match="longer than 5"):
        decode_varint(six, 0, 5)
