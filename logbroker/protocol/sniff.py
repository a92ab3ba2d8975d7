"""Which protocol the first bytes of a connection speak: a client that reached the wrong listener
gets told so, instead of a riddle.

Both listeners look at the first bytes a client sends (`classify_request`); the native client
looks at the first bytes it gets back (`classify_answer`). The first bytes of a request:

    offset  native frame (`frames.py`)         Kafka request header
    ------  ---------------------------------  ----------------------------------------
       0    uint32 length                      int32 size
       4    uint8  kind: 1 (request)           int16 api key (0 to ~100: byte 4 is 0)
       5    uint32 correlation id              (byte 5: the api key's low byte)
       6                                       int16 api version
       8                                       int32 correlation id
       9    uint16 api key
      11    uint32 header length
      12                                       int16 client id length (-1: null), client id
      15    header (JSON)

So byte 4 tells the two apart. An HTTP request starts with a method (`GET `, `POST`, ...) and an
HTTP answer with `HTTP/`; a TLS record with its content type (22 handshake, 21 alert) and major
version 3. Those are checked first: a native or Kafka first frame would have to announce over
350 MB to begin like them.

An answer: a native response frame has kind 2 at byte 4; a Kafka broker answers with the size
and then the correlation id it read, which for a native request is bytes 8 to 12 of it.
"""

from __future__ import annotations

import enum
import struct

from logbroker.protocol.frames import PREFIX, REQUEST, RESPONSE

__all__ = ["Wire", "classify_answer", "classify_request"]

_KAFKA_HEADER = struct.Struct(">ihhih")  # size, api key, api version, correlation id, client id length
_HTTP_METHODS = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC", b"PRI ")
#: Kafka's api keys and versions are small numbers; a header past these is not Kafka's.
_MAX_KAFKA_API_KEY = 1000
_MAX_KAFKA_VERSION = 100


class Wire(enum.Enum):
    NATIVE = "logbroker's native protocol"
    KAFKA = "Kafka's protocol"
    HTTP = "HTTP"
    TLS = "TLS"
    UNKNOWN = "an unknown protocol"


def _tls(data: bytes) -> bool | None:
    """A TLS record header: content type handshake or alert, then version 3.0 to 3.4."""
    if len(data) < 3:
        return None
    return data[0] in (21, 22) and data[1] == 3 and data[2] <= 4


def classify_request(data: bytes) -> Wire | None:
    """What the first bytes a client sent speak; None while too few have come to tell (at most
    15 are needed)."""
    tls = _tls(data)
    if tls:
        return Wire.TLS
    if len(data) < 5:
        return None
    if data[:4] in _HTTP_METHODS:
        return Wire.HTTP
    if data[4] == REQUEST:
        if len(data) < PREFIX.size:
            return None
        length, _, _, _, header_length = PREFIX.unpack_from(data)
        return Wire.NATIVE if header_length <= length - (PREFIX.size - 4) else Wire.UNKNOWN
    if data[4] == 0:
        if len(data) < _KAFKA_HEADER.size:
            return None
        size, api_key, version, _, client_id_length = _KAFKA_HEADER.unpack_from(data)
        if (
            0 <= api_key <= _MAX_KAFKA_API_KEY
            and 0 <= version <= _MAX_KAFKA_VERSION
            and -1 <= client_id_length <= size - (_KAFKA_HEADER.size - 4)
        ):
            return Wire.KAFKA
    return Wire.UNKNOWN


def classify_answer(request: bytes, data: bytes) -> Wire | None:
    """What the first bytes a server answered to the native `request` (the first frame the
    client sent) speak; None while too few have come to tell (at most 8 are needed)."""
    tls = _tls(data)
    if tls:
        return Wire.TLS
    if len(data) < 5:
        return None
    if data.startswith(b"HTTP/"):
        return Wire.HTTP
    if data[4] == RESPONSE:
        return Wire.NATIVE
    if len(data) < 8:
        return None
    if len(request) >= 12 and data[4:8] == request[8:12]:
        return Wire.KAFKA
    return Wire.UNKNOWN
