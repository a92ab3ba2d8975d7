"""`logbroker topics create|alter|list|describe|delete`."""

from __future__ import annotations

import json

import click

from logbroker.client.session import TopicDescription

from .common import bootstrap_option, connect, run_async
from .output import json_line

__all__ = ["topics"]


@click.group()
def topics() -> None:
    """Create, list, describe and delete topics."""


@topics.command("create")
@click.argument("name")
@click.option("--partitions", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--config",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A topic setting, under Kafka's name (retention.ms, retention.bytes, segment.bytes, "
    "segment.ms, max.message.bytes, ...). Repeat for several.",
)
@bootstrap_option
def create(name: str, partitions: int, settings: tuple[str, ...], bootstrap: str) -> None:
    """Create topic NAME."""
    config: dict[str, str] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{setting!r}: expected KEY=VALUE", param_hint="--config")
        config[key.strip()] = value.strip()

    async def run() -> TopicDescription:
        async with await connect(bootstrap) as client:
            return await client.create_topic(name, partitions, config)

    created = run_async(run)
    click.echo(f"created topic {created.name} with {len(created.partitions)} partition(s)")


@topics.command("alter")
@click.argument("name")
@click.option(
    "--config",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a topic setting, under Kafka's name (retention.ms, retention.bytes, ...). Repeat for several.",
)
@click.option(
    "--delete-config",
    "removed",
    multiple=True,
    metavar="KEY",
    help="Put a setting back to the broker's default. Repeat for several.",
)
@bootstrap_option
def alter(name: str, settings: tuple[str, ...], removed: tuple[str, ...], bootstrap: str) -> None:
    """Change the settings of topic NAME; those not named keep their values. In force at once."""
    changes: dict[str, str | None] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{setting!r}: expected KEY=VALUE", param_hint="--config")
        changes[key.strip()] = value.strip()
    for key in removed:
        if key.strip() in changes:
            raise click.UsageError(f"{key.strip()} is both set and deleted")
        changes[key.strip()] = None
    if not changes:
        raise click.UsageError("nothing to change: give --config KEY=VALUE or --delete-config KEY")

    async def run() -> TopicDescription:
        async with await connect(bootstrap) as client:
            return await client.alter_topic(name, changes)

    altered = run_async(run)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(altered.config.items())) or "all defaults"
    click.echo(f"altered topic {altered.name}: {shown}")


@topics.command("list")
@click.option("--all", "include_internal", is_flag=True, help="Include internal topics (names starting __).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {name, partitions, internal}.")
@bootstrap_option
def list_(include_internal: bool, as_json: bool, bootstrap: str) -> None:
    """List topics."""

    async def run() -> list[dict[str, object]]:
        async with await connect(bootstrap) as client:
            found = await client.list_topics(include_internal=include_internal)
        return [{"name": t.name, "partitions": t.partitions, "internal": t.internal} for t in found]

    found = run_async(run)
    if as_json:
        click.echo(json.dumps(found))
        return
    width = max([len("NAME"), *(len(str(t["name"])) for t in found)])
    click.echo(f"{'NAME':<{width}} {'PARTITIONS':>10}" + ("  INTERNAL" if include_internal else ""))
    for topic in found:
        internal = ("  yes" if topic["internal"] else "  no") if include_internal else ""
        click.echo(f"{topic['name']!s:<{width}} {topic['partitions']!s:>10}{internal}")


@topics.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@bootstrap_option
def describe(name: str, as_json: bool, bootstrap: str) -> None:
    """Show topic NAME: its partitions' offsets and sizes, and its settings."""

    async def run() -> TopicDescription:
        async with await connect(bootstrap) as client:
            return await client.describe_topic(name)

    topic = run_async(run)
    details = [
        {
            "partition": p.partition,
            "log_start_offset": p.log_start_offset,
            "high_watermark": p.high_watermark,
            "log_end_offset": p.log_end_offset,
            "size_bytes": p.size_bytes,
            "segments": p.segments,
            "damage": p.damage,
            "read_only": p.read_only,
        }
        for p in topic.partitions
    ]
    if as_json:
        click.echo(
            json_line(
                {
                    "name": topic.name,
                    "partitions": len(topic.partitions),
                    "internal": topic.internal,
                    "created_ms": topic.created_ms,
                    "config": topic.config,
                    "partition_details": details,
                }
            )
        )
        return
    click.echo(f"topic {topic.name}: {len(topic.partitions)} partition(s)")
    click.echo(
        f"{'PARTITION':>9} {'LOG START':>12} {'HIGH WATERMARK':>15} {'LOG END':>12} {'BYTES':>14} {'SEGMENTS':>8}"
    )
    for d in details:
        click.echo(
            f"{d['partition']:>9} {d['log_start_offset']:>12} {d['high_watermark']:>15} {d['log_end_offset']:>12} "
            f"{d['size_bytes']:>14} {d['segments']:>8}"
        )
        for problem in ("damage", "read_only"):
            if d[problem]:
                click.echo(f"{'':>9} {problem.replace('_', '-')}: {d[problem]}")
    click.echo("config:")
    for key, value in sorted(topic.config.items()):
        click.echo(f"  {key}={value}")


@topics.command("delete")
@click.argument("name")
@bootstrap_option
def delete(name: str, bootstrap: str) -> None:
    """Delete topic NAME and its data (the files are gone when this returns)."""

    async def run() -> None:
        async with await connect(bootstrap) as client:
            await client.delete_topic(name)

    run_async(run)
    click.echo(f"deleted topic {name}")
