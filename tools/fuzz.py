"""Byte-level fuzzing of the decoders untrusted bytes reach, with atheris (libFuzzer).

    python tools/fuzz.py TARGET [libFuzzer flags, e.g. -runs=100000 or -max_total_time=600]
    python tools/fuzz.py --list

Targets:
- native: the native protocol's frames and message headers, as the server reads them;
- kafka: the Kafka protocol's frames, headers and request bodies of every API and version served,
  as the Kafka listener reads them;
- batches: record batches as a produce brings them: header validation, the record walk of
  uncompressed batches, and decoding every record (with every compression codec, capped).

Only the protocols' own errors may come out (`LogbrokerError` and its kinds, `KafkaDecodeError`);
anything else is a crash: libFuzzer stops, prints the input and writes it to `crash-<sha1>`.
The seed corpus (`tests/fixtures/fuzz/<target>/`) holds requests recorded from real clients
(`tools/record_corpus.py`) and from our own encoders. A crash found becomes a regression test in
`tests/reliability/test_fuzz.py`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["logbroker"]):  # only ours: faster, and focused
    from logbroker.errors import LogbrokerError
    from logbroker.kafka.protocol import NEED_DATA as KAFKA_NEED_DATA
    from logbroker.kafka.protocol import KafkaProtocol
    from logbroker.kafka.types import KafkaDecodeError
    from logbroker.protocol.connection import NEED_DATA, Connection, Role
    from logbroker.records.batch import check_records, validate_batches
    from logbroker.records.codec import iter_records

MAX_FRAME = 1 << 20
CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "fuzz"


def native(data: bytes) -> None:
    connection = Connection(Role.SERVER, MAX_FRAME)
    _feed(connection, data)


def kafka(data: bytes) -> None:
    _feed(KafkaProtocol(MAX_FRAME), data)


def _feed(protocol: Connection | KafkaProtocol, data: bytes) -> None:
    """All of `data`, in two pieces (so split frames are decoded too), then the end of stream
    (`b""`; so no piece before it may be empty). The last byte says where to cut."""
    try:
        cut = data[-1] % (len(data) + 1) if data else 0
        for piece in [p for p in (data[:cut], data[cut:]) if p] + [b""]:
            protocol.receive_data(piece)
            for _ in range(1000):  # every event the bytes hold
                if protocol.next_event() in (NEED_DATA, KAFKA_NEED_DATA):
                    break
    except (LogbrokerError, KafkaDecodeError):
        pass


def batches(data: bytes) -> None:
    try:
        pos = 0
        for header in validate_batches(data):
            if header.compression == 0:
                check_records(data, pos, header)
            pos += header.size
        for _ in iter_records(data, max_decompressed=1 << 20):
            pass
    except LogbrokerError:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {"native": native, "kafka": kafka, "batches": batches}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(__doc__ if len(sys.argv) < 2 or sys.argv[1] != "--list" else "\n".join(TARGETS))
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] == "--list" else 2)
    target = sys.argv[1]
    flags = [a for a in sys.argv[2:] if a.startswith("-")]
    dirs = [a for a in sys.argv[2:] if not a.startswith("-")]
    if not dirs:  # new finds go to a scratch directory; the seeds in the repository are only read
        dirs = [tempfile.mkdtemp(prefix=f"logbroker-fuzz-{target}-"), str(CORPUS / target)]
    atheris.Setup([sys.argv[0], *flags, *dirs], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
