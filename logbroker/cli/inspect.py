"""`logbroker dump` and `logbroker verify`: offline, read-only tools over segment files."""

from __future__ import annotations

import os

import click

from logbroker.records.compression import Compression
from logbroker.storage.dump import BatchEntry, RecordEntry, RecordsUnavailable, dump_segment
from logbroker.storage.partition_dir import PRODUCER_STATE_FILE
from logbroker.storage.scan import ScanProblem
from logbroker.storage.verify import verify_paths

from .output import bytes_json, bytes_text, headers_json, json_line, timestamp_text

__all__ = ["dump", "verify"]


def _codec_name(codec: int) -> str:
    try:
        return Compression(codec).label
    except ValueError:
        return f"unknown({codec})"


@click.command()
@click.argument("segment", type=click.Path(exists=True, dir_okay=False))
@click.option("--records", is_flag=True, help="Also show every record.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object: path, entries (batches, records, notes, problems, in file order), "
    "batches, records, damaged.",
)
@click.option(
    "--max-decompressed",
    type=click.IntRange(min=1),
    default=64 * 1024 * 1024,
    show_default=True,
    help="Refuse to show a compressed batch that inflates past this many bytes.",
)
def dump(segment: str, records: bool, as_json: bool, max_decompressed: int) -> None:
    """Show the batches (and with --records the records) of a segment .log file.

    Any Kafka-format segment works. Nothing is modified. Exits 1 when the file is damaged or is
    not a segment (after showing what it could read), as `logbroker verify` does.
    """
    if os.path.basename(segment) == PRODUCER_STATE_FILE:
        raise click.BadParameter(
            f"{segment} is a partition's producer-state snapshot (JSON text), not a segment file",
            param_hint="'SEGMENT'",
        )
    with open(segment, "rb"):
        pass  # an unreadable file is an error before anything is printed (not half a document)
    batches = record_count = 0
    problems: list[str] = []
    if as_json:
        # One document, written as it is read: a segment may hold millions of records.
        click.echo(f'{{"path":{json_line(segment)},"entries":[', nl=False)
    else:
        click.echo(
            f"{'POSITION':>10} {'SIZE':>8} {'BASE OFFSET':>12} {'LAST OFFSET':>12} {'RECORDS':>7} "
            f"{'CRC':>4}  {'CODEC':<6} MAX TIMESTAMP"
        )
    separator = ""
    for entry in dump_segment(segment, records=records, max_decompressed=max_decompressed):
        shown: dict[str, object] | None = None
        if isinstance(entry, BatchEntry):
            batches += 1
            header = entry.header
            record_count += header.records_count
            if entry.crc_ok is False:
                problems.append(f"batch at byte {entry.position} fails its CRC-32C check")
            crc = "n/a" if entry.crc_ok is None else ("ok" if entry.crc_ok else "BAD")
            if as_json:
                shown = _batch_json(entry)
            else:
                codec = f"magic{header.magic}" if entry.legacy else _codec_name(header.compression)
                flags = "".join(
                    f" [{name}]"
                    for name, on in (
                        ("control", header.is_control),
                        ("transactional", header.is_transactional),
                    )
                    if on and not entry.legacy
                )
                count = "-" if entry.legacy else header.records_count
                click.echo(
                    f"{entry.position:>10} {header.size:>8} {header.base_offset:>12} {header.last_offset:>12} "
                    f"{count:>7} {crc:>4}  {codec:<6} {timestamp_text(header.max_timestamp)}{flags}"
                )
        elif isinstance(entry, RecordEntry):
            r = entry.record
            if as_json:
                shown = {
                    "type": "record",
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "key": bytes_json(r.key),
                    "value": bytes_json(r.value),
                    "headers": headers_json(r.headers),
                }
            else:
                headers = " ".join(f"{k}={bytes_text(v)}" for k, v in r.headers)
                click.echo(
                    f"{'':>10} offset {r.offset} at {timestamp_text(r.timestamp)}: key={bytes_text(r.key)} "
                    f"value={bytes_text(r.value)}" + (f" headers: {headers}" if headers else "")
                )
        elif isinstance(entry, RecordsUnavailable):
            if as_json:
                shown = {"type": "note", "position": entry.position, "message": entry.reason}
            else:
                click.echo(f"{'':>10} records not shown: {entry.reason}")
        elif isinstance(entry, ScanProblem):
            problems.append(f"{entry.kind} at byte {entry.position}: {entry.reason}")
            if as_json:
                shown = {
                    "type": "problem",
                    "kind": entry.kind,
                    "position": entry.position,
                    "reason": entry.reason,
                }
            else:
                click.echo(f"{entry.kind} at byte {entry.position}: {entry.reason}")
        if shown is not None:
            click.echo(separator + json_line(shown), nl=False)
            separator = ","
    if as_json:
        click.echo(f'],"batches":{batches},"records":{record_count},"damaged":{json_line(bool(problems))}}}')
    else:
        click.echo(f"{batches} batches, {record_count} records")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise click.ClickException(f"{segment} is damaged: {problems[0]}{more}")


def _batch_json(entry: BatchEntry) -> dict[str, object]:
    h = entry.header
    line: dict[str, object] = {
        "type": "batch",
        "magic": h.magic,
        "position": entry.position,
        "size": h.size,
        "base_offset": h.base_offset,
    }
    if entry.legacy:
        line["legacy"] = True
        return line
    line.update(
        last_offset=h.last_offset,
        record_count=h.records_count,
        crc=h.crc,
        crc_ok=entry.crc_ok,
        compression=_codec_name(h.compression),
        timestamp_type="log_append_time" if h.log_append_time else "create_time",
        base_timestamp=h.base_timestamp,
        max_timestamp=h.max_timestamp,
        producer_id=h.producer_id,
        producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence,
        partition_leader_epoch=h.partition_leader_epoch,
        transactional=h.is_transactional,
        control=h.is_control,
    )
    return line


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def verify(ctx: click.Context, paths: tuple[str, ...], as_json: bool) -> None:
    """Check data dirs, partition dirs or segment files; exit 1 if data is damaged.

    Every batch's length, CRC and offsets are checked; findings name the file, the byte position
    and the offset where valid data ends. Index and metadata trouble is a note, not damage: the
    broker rebuilds those. Nothing is modified.
    """
    report = verify_paths(list(paths))
    if as_json:
        click.echo(
            json_line(
                {
                    "ok": report.ok,
                    "segments": report.segments,
                    "batches": report.batches,
                    "bytes": report.bytes,
                    "findings": [
                        {
                            "path": f.path,
                            "position": f.position,
                            "offset": f.offset,
                            "kind": f.kind,
                            "reason": f.reason,
                        }
                        for f in report.findings
                    ],
                    "notes": report.notes,
                }
            )
        )
    else:
        for f in report.findings:
            ends = f"valid data ends at offset {f.offset}" if f.offset is not None else "valid data ends here"
            click.echo(f"DAMAGE {f.path}: byte {f.position}: {f.reason}; {ends}")
        for note in report.notes:
            click.echo(f"note: {note}")
        verdict = "OK" if report.ok else f"{len(report.findings)} problem(s) found"
        click.echo(
            f"verified {report.segments} segment file(s), {report.batches} batches, {report.bytes} bytes: {verdict}"
        )
    if not report.ok:
        ctx.exit(1)
