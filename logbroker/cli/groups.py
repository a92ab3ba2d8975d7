"""`logbroker groups list|describe|reset-offsets` and `logbroker offsets`."""

from __future__ import annotations

import json

import click

from logbroker.client.session import OffsetMove
from logbroker.protocol.messages import DescribeGroupResponse, GroupOffsetInfo, GroupSummary

from .common import bootstrap_option, connect, parse_start, run_async
from .output import json_line

__all__ = ["groups", "offsets"]


@click.group()
def groups() -> None:
    """List, describe and reset consumer groups."""


@groups.command("list")
@click.option(
    "--json", "as_json", is_flag=True, help="A JSON array of {name, members, generation, topics, protocol}."
)
@bootstrap_option
def list_(as_json: bool, bootstrap: str) -> None:
    """List consumer groups (also those with no members but committed offsets)."""

    async def run() -> list[GroupSummary]:
        async with await connect(bootstrap) as client:
            return await client.list_groups()

    found = run_async(run)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": g.name,
                        "members": g.members,
                        "generation": g.generation,
                        "topics": g.topics,
                        "protocol": g.protocol,
                    }
                    for g in found
                ]
            )
        )
        return
    width = max([len("GROUP"), *(len(g.name) for g in found)])
    click.echo(f"{'GROUP':<{width}} {'PROTOCOL':<8} {'MEMBERS':>7} {'GENERATION':>10}  TOPICS")
    for g in found:
        click.echo(
            f"{g.name:<{width}} {g.protocol:<8} {g.members:>7} {g.generation:>10}  {','.join(g.topics)}"
        )


@groups.command("describe")
@click.argument("group")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@bootstrap_option
def describe(group: str, as_json: bool, bootstrap: str) -> None:
    """Show GROUP: settings, members and their partitions, and per partition the committed
    offset, the delivery cursor, what is in flight and the lag."""

    async def run() -> DescribeGroupResponse:
        async with await connect(bootstrap) as client:
            return await client.describe_group(group)

    info = run_async(run)
    partitions = [_row(p) for p in info.partitions]
    if as_json:
        click.echo(
            json_line(
                {
                    "name": info.name,
                    "protocol": info.protocol,
                    "state": info.state,
                    "generation": info.generation,
                    "ack_timeout_ms": info.ack_timeout_ms,
                    "max_deliveries": info.max_deliveries,
                    "session_timeout_ms": info.session_timeout_ms,
                    "members": [
                        {
                            "member_id": m.member_id,
                            "client_id": m.client_id,
                            "topics": m.topics,
                            "assignment": [
                                {"topic": a.topic, "partition": a.partition} for a in m.assignment
                            ],
                        }
                        for m in info.members
                    ],
                    "partitions": partitions,
                }
            )
        )
        return
    if info.protocol == "kafka":
        click.echo(
            f"group {info.name} (Kafka consumers): {info.state}, generation {info.generation}, "
            f"{len(info.members)} member(s)"
        )
    else:
        click.echo(
            f"group {info.name}: {info.state}, generation {info.generation}, {len(info.members)} member(s), "
            f"ack timeout {info.ack_timeout_ms / 1000:g} s, max deliveries {info.max_deliveries}, "
            f"session timeout {info.session_timeout_ms / 1000:g} s"
        )
    for m in info.members:
        owned = ", ".join(f"{a.topic}-{a.partition}" for a in m.assignment) or "(nothing yet)"
        click.echo(f"  member {m.member_id} ({m.client_id}): {owned}")
    _table(partitions)


@groups.command("reset-offsets")
@click.argument("group")
@click.option("--topic", required=True, help="The topic whose offsets to move.")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="earliest|latest|OFFSET|@EPOCH_MS|ISO-8601-TIME",
    help="Where to: the log start, the end, an offset (every partition), or a time.",
)
@click.option("--dry-run", is_flag=True, help="Show the moves without making them.")
@click.option(
    "--create",
    is_flag=True,
    help="Start GROUP at these offsets if it does not exist yet (otherwise an unknown group is an error).",
)
@bootstrap_option
def reset_offsets(group: str, topic: str, to: str, dry_run: bool, create: bool, bootstrap: str) -> None:
    """Move GROUP's committed offsets of a topic (only while the group has no members).

    Prints one line per partition: the committed offset before (none) and after.
    """
    target, timestamp = parse_start(to)

    async def run() -> list[OffsetMove]:
        async with await connect(bootstrap) as client:
            return await client.plan_offsets(
                group,
                topic,
                target,  # type: ignore[arg-type]
                timestamp=timestamp,
                create=create,
                dry_run=dry_run,
            )

    moves = run_async(run)
    for move in sorted(moves, key=lambda m: m.partition):
        before = "none" if move.previous < 0 else str(move.previous)
        verb = "would move" if dry_run else "moved"
        click.echo(f"{topic}-{move.partition}: committed offset {before} -> {move.offset} ({verb})")
    if dry_run:
        click.echo("dry run: nothing changed", err=True)


@click.command()
@click.option("-g", "--group", default=None, help="Only this group.")
@click.option("--topic", default=None, help="Only this topic.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of rows.")
@bootstrap_option
def offsets(group: str | None, topic: str | None, as_json: bool, bootstrap: str) -> None:
    """Committed offsets: one row per (group, topic, partition) with committed, log start, log
    end, lag (log end - committed) and in flight (delivered, not committed). An unknown --group
    is an error."""

    async def run() -> list[GroupOffsetInfo]:
        async with await connect(bootstrap) as client:
            return await client.group_offsets(group, topic)

    rows = [_row(r) for r in run_async(run)]
    if as_json:
        click.echo(json_line(rows))
        return
    _table(rows)


def _row(info: GroupOffsetInfo) -> dict[str, object]:
    return {
        "group": info.group,
        "topic": info.topic,
        "partition": info.partition,
        "committed": info.committed,
        "cursor": info.cursor,
        "log_start": info.log_start,
        "log_end": info.log_end,
        "lag": info.lag,
        "in_flight": info.in_flight,
        "owner": info.owner,
    }


def _table(rows: list[dict[str, object]]) -> None:
    click.echo(
        f"{'GROUP':<20} {'TOPIC':<20} {'PART':>4} {'COMMITTED':>10} {'LOG START':>10} {'LOG END':>10} "
        f"{'LAG':>8} {'IN FLIGHT':>9}"
    )
    for r in rows:
        click.echo(
            f"{r['group']!s:<20} {r['topic']!s:<20} {r['partition']!s:>4} {r['committed']!s:>10} "
            f"{r['log_start']!s:>10} {r['log_end']!s:>10} {r['lag']!s:>8} {r['in_flight']!s:>9}"
        )
