"""`logbroker dump` and `logbroker verify` as subprocesses on real files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from logbroker.records import parse_header
from tests.cli.conftest import FIXTURES, Run
from tools.make_fixtures import kafka_python_segment, sample_partition

SEG0 = "00000000000000000000.log"


def batch_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += parse_header(data, pos).size
    return starts


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_the_fixtures_are_what_the_writer_writes(tmp_path: Path) -> None:
    """Golden segment files: a change to what logbroker writes on disk shows up here."""
    sample_partition(tmp_path / "sample-0")
    assert digest(tmp_path / "sample-0") == digest(FIXTURES / "sample-0")
    # kafka-python's gzip stamps the time into its stream, so only the sizes must agree.
    kafka_python_segment(tmp_path / "kafka-python.log")
    assert (tmp_path / "kafka-python.log").stat().st_size == (FIXTURES / "kafka-python.log").stat().st_size


def test_dump_table(run: Run) -> None:
    result = run("dump", str(FIXTURES / "sample-0" / SEG0), "--records")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "POSITION",
        "SIZE",
        "BASE",
        "OFFSET",
        "LAST",
        "OFFSET",
        "RECORDS",
        "CRC",
        "CODEC",
        "MAX",
        "TIMESTAMP",
    ]
    assert lines[1].split()[:6] == ["0", "85", "0", "1", "2", "ok"]
    assert (
        'offset 2 at 2026-01-01T00:00:01.000Z: key="order-1" value="order 1 created" headers: source="web"'
        in result.stdout
    )
    assert 'key="order-1" value=null' in result.stdout
    assert "value=base64:AP/+IGJpbmFyeQ==" in result.stdout
    assert lines[-1] == "4 batches, 6 records"


def test_dump_json(run: Run) -> None:
    result = run("dump", str(FIXTURES / "sample-0" / "00000000000000000006.log"), "--records", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)["entries"]
    batches = [e for e in entries if e["type"] == "batch"]
    recs = [e for e in entries if e["type"] == "record"]
    assert batches[0]["base_offset"] == 6
    assert batches[0]["compression"] == "gzip"
    assert batches[0]["crc_ok"] is True
    assert batches[0]["record_count"] == 5
    assert batches[0]["last_offset"] == 10
    assert set(batches[0]) >= {"position", "size", "crc", "base_timestamp", "max_timestamp", "producer_id"}
    assert [r["value"] for r in recs[:5]] == [f"compressed {i}" for i in range(5)]
    assert recs[0] == {
        "type": "record",
        "offset": 6,
        "timestamp": 1767225605000,
        "key": None,
        "value": "compressed 0",
        "headers": [],
    }


def test_dump_json_bytes_and_headers(run: Run) -> None:
    result = run("dump", str(FIXTURES / "sample-0" / SEG0), "--records", "--json")
    recs = [e for e in json.loads(result.stdout)["entries"] if e["type"] == "record"]
    assert recs[3]["headers"] == [["source", "web"], ["trace", None]]
    assert recs[5]["value"] == {"base64": "AP/+IGJpbmFyeQ=="}


def test_dump_any_kafka_segment(run: Run) -> None:
    result = run("dump", str(FIXTURES / "kafka-python.log"), "--records", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)["entries"]
    assert [e.get("magic") for e in entries if e["type"] == "batch"] == [0, 1, 2, 2, 2]
    assert [e["value"] for e in entries if e["type"] == "record"] == [
        f"kafka-python {i}" for i in range(2, 11)
    ]


def test_dump_shows_damage_goes_on_and_exits_1(run: Run, sample: Path) -> None:
    path = sample / SEG0
    data = bytearray(path.read_bytes())
    data[120] ^= 0x10  # inside the second batch (85..230), past its header
    path.write_bytes(bytes(data[:-20]))  # and a torn tail
    result = run("dump", str(path), "--json")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {path} is damaged: batch at byte 85 fails its CRC-32C check (and 1 more)"
    ]
    document = json.loads(result.stdout)
    entries = document["entries"]
    assert document["damaged"] is True and document["batches"] == 3
    assert [e["crc_ok"] for e in entries if e["type"] == "batch"] == [True, False, True]
    assert entries[-1]["type"] == "problem"
    assert entries[-1]["kind"] == "torn"
    assert entries[-1]["position"] == 306
    table = run("dump", str(path))
    assert table.returncode == 1 and "BAD" in table.stdout and "torn at byte 306" in table.stdout


def test_dump_of_a_file_that_is_not_a_segment_exits_1(run: Run, tmp_path: Path) -> None:
    text = tmp_path / "notes.log"
    text.write_text("this is a text file, not a segment of record batches\n" * 3)
    result = run("dump", str(text))
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {text} is damaged: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout.splitlines()[-1] == "0 batches, 0 records"


def test_dump_json_is_one_document_also_for_an_empty_segment(run: Run, tmp_path: Path) -> None:
    empty = tmp_path / "00000000000000000000.log"
    empty.write_bytes(b"")
    result = run("dump", str(empty), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "path": str(empty),
        "entries": [],
        "batches": 0,
        "records": 0,
        "damaged": False,
    }


def test_dump_errors(run: Run, tmp_path: Path) -> None:
    missing = run("dump", str(tmp_path / "nope.log"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    directory = run("dump", str(tmp_path))
    assert directory.returncode == 2
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert run("dump", str(empty)).stdout.splitlines()[-1] == "0 batches, 0 records"


def test_dump_into_a_closed_pipe_stops_quietly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "logbroker.cli", "dump", "--records", str(FIXTURES / "sample-0" / SEG0)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    with proc.stderr:
        errors = proc.stderr.read()
    proc.wait(timeout=30)
    assert b"Traceback" not in errors
    assert b"Error" not in errors


def test_verify_healthy(run: Run, sample: Path) -> None:
    before = digest(sample)
    for target in (sample, sample.parent, sample / SEG0):
        result = run("verify", str(target))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.rstrip().endswith(": OK")
    assert digest(sample) == before  # verify never modifies anything
    result = run("verify", str(sample), "--json")
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["segments"] == 3
    assert report["batches"] == 11
    assert report["findings"] == []


def test_verify_finds_a_flipped_bit(run: Run, sample: Path) -> None:
    path = sample / "00000000000000000006.log"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # in the last batch of the middle segment
    path.write_bytes(bytes(data))
    last_batch = batch_starts(bytes(data))[-1]
    before = digest(sample)
    result = run("verify", str(sample))
    assert result.returncode == 1
    assert f"DAMAGE {path}: byte {last_batch}: damaged batch: CRC mismatch" in result.stdout
    assert "valid data ends at offset 13" in result.stdout
    report = json.loads(run("verify", str(sample), "--json").stdout)
    assert report["findings"] == [
        {
            "path": str(path),
            "position": last_batch,
            "offset": 13,
            "kind": "corrupt",
            "reason": report["findings"][0]["reason"],
        }
    ]
    assert digest(sample) == before


def test_verify_finds_a_torn_tail_and_a_gap(run: Run, sample: Path) -> None:
    last = sample / "00000000000000000014.log"
    last.write_bytes(last.read_bytes()[:-5])
    (sample / "00000000000000000006.log").rename(sample / "00000000000000000007.log")
    result = run("verify", str(sample), "--json")
    assert result.returncode == 1
    kinds = sorted((f["kind"], f["offset"]) for f in json.loads(result.stdout)["findings"])
    assert kinds == [("gap", 6), ("gap", 7), ("torn", 16)]


def test_verify_notes_are_not_damage(run: Run, sample: Path) -> None:
    (sample / "00000000000000000000.index").unlink()
    (sample / "00000000000000000006.timeindex").write_bytes(b"garbage")
    (sample / "log-start-offset").unlink()
    (sample / "x.tmp").write_bytes(b"")
    result = run("verify", str(sample))
    assert result.returncode == 0, result.stdout
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 4
    assert any("00000000000000000000.index: missing" in n for n in notes)


def test_verify_errors(run: Run, tmp_path: Path) -> None:
    assert run("verify").returncode == 2
    assert run("verify", str(tmp_path / "missing")).returncode == 2
    result = run("verify", str(tmp_path))
    assert result.returncode == 0
    assert "no segment files found" in result.stdout


def test_logbroker_opens_what_verify_passes(sample: Path) -> None:
    from logbroker.storage.fs import OsFileSystem
    from logbroker.storage.log import PartitionLog

    log = PartitionLog.open(OsFileSystem(), str(sample), now_ms=0)
    assert log.recovery is not None
    assert log.recovery.clean_shutdown
    assert (log.log_start_offset, log.next_offset) == (0, 17)
    log.close()
    assert os.path.exists(sample / "clean-shutdown")


def test_verify_and_dump_know_the_producer_state_snapshot(run: Run, sample: Path) -> None:
    snapshot = sample / "producer-state.json"
    snapshot.write_text('{"version": 1, "offset": 17, "producers": []}')
    result = run("verify", str(sample))
    assert result.returncode == 0, result.stdout
    assert "note:" not in result.stdout  # a snapshot in step with the log is nothing to note
    assert run("verify", str(snapshot)).returncode == 0
    dumped = run("dump", str(snapshot))
    assert dumped.returncode == 2
    assert "producer-state snapshot (JSON text), not a segment file" in dumped.stderr

    for content, note in (
        ('{"version": 1, "offset": 99, "producers": []}', "past the end of the log (17)"),
        ("{torn", "unreadable producer-state snapshot"),
    ):
        snapshot.write_text(content)
        result = run("verify", str(sample))
        assert result.returncode == 0, result.stdout
        assert note in result.stdout
        assert "the broker rebuilds the producer state from the log" in result.stdout
