"""`logbroker consume`: print a topic's messages, one per line."""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable, Sequence

import click
import trio

from logbroker.client import Client, GroupConsumer, GroupMessage, Message
from logbroker.errors import GroupIdNotFoundError, LogbrokerError

from .common import FromEnd, bootstrap_option, connect, parse_start
from .interrupt import Interrupt
from .output import FormatError, bytes_json, headers_json, json_line, message_format

__all__ = ["consume"]

#: kcat's words for the ends of the log, taken by --from as well.
_KCAT_STARTS = {"beginning": "earliest", "end": "latest"}

Render = Callable[[Sequence[Message | GroupMessage]], bytes]


def _render(ctx: click.Context, param: click.Parameter, fmt: str) -> Render:
    if fmt == "json":
        return _json_lines
    try:
        each = message_format("%s\\n" if fmt == "value" else fmt)
    except FormatError as exc:
        raise click.BadParameter(f"{exc} (or use value or json)") from None
    return lambda messages: b"".join(map(each, messages))


@click.command()
@click.argument("topic")
@click.option(
    "-o",
    "--from",
    "--offset",
    "start",
    default=None,
    metavar="earliest|latest|OFFSET|-N|@EPOCH_MS|ISO-8601-TIME",
    help="Where to start in each partition: earliest (default; also 'beginning'), latest (also "
    "'end'), an offset (past the end: the end; before the log start: the log start), -N (N records "
    "before the end), the first record at or after a time (@EPOCH_MS, or ISO-8601; UTC without a "
    "zone). With --group: where a new group starts (earliest, latest or a time).",
)
@click.option("-p", "--partition", type=click.IntRange(min=0), default=None, help="Read only this partition.")
@click.option(
    "-n", "--max-messages", type=click.IntRange(min=1), default=None, help="Exit after this many messages."
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Exit after this many seconds without a message (counted from the last one, or the start; "
    "once the broker has answered: one that never does is an error after --timeout).",
)
@click.option(
    "-f",
    "--format",
    "render",
    default="value",
    show_default=True,
    metavar="value|json|FORMAT",
    callback=_render,
    help="value: the value of each message, one per line; json: one object per line (topic, "
    "partition, offset, timestamp, key, value, headers, delivery_count); FORMAT: as kcat -f, e.g. "
    "'%k:%s\\n' (%s value, %k key, %S/%K their lengths or -1 for null, %t topic, %p partition, "
    "%o offset, %T timestamp in ms, %h headers as k=v,k=v, %% a percent sign; escapes \\n \\t "
    "\\r \\xHH; nothing is added, so end with \\n).",
)
@click.option(
    "-g",
    "--group",
    default=None,
    help="Consume as a member of this consumer group (commits what it printed).",
)
@click.option(
    "--no-ack",
    is_flag=True,
    help="With --group: never commit (records come back after the ack timeout, and go to the "
    "dead-letter topic after max deliveries; the command says so).",
)
@click.option(
    "--ack-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="With --group: set the group's ack timeout (seconds, fractions allowed); the group keeps it.",
)
@click.option(
    "--max-deliveries",
    type=click.IntRange(min=1),
    default=None,
    help="With --group: set how often a record is delivered before it goes to the dead-letter topic; "
    "the group keeps it.",
)
@bootstrap_option
def consume(
    topic: str,
    start: str | None,
    partition: int | None,
    max_messages: int | None,
    idle_timeout: float | None,
    render: Render,
    group: str | None,
    no_ack: bool,
    ack_timeout: float | None,
    max_deliveries: int | None,
    bootstrap: str,
) -> None:
    """Print the messages of TOPIC, one per line, in offset order per partition.

    Without --group nothing is committed and reading starts at --from (earliest). With --group
    the command joins the group, receives its share of the partitions from the group's committed
    offsets (a new group starts at --from, earliest by default), commits what it has printed
    (at least once), and leaves the group when it exits. Without --max-messages or --idle-timeout
    it runs until interrupted. At the end it says on stderr how many messages it consumed;
    interrupted (SIGINT, SIGTERM) it exits 130 or 143 after committing what it printed.
    """
    if group is None and (no_ack or ack_timeout is not None or max_deliveries is not None):
        raise click.UsageError("--no-ack, --ack-timeout and --max-deliveries need --group")
    if group is not None and partition is not None:
        raise click.UsageError("--partition cannot be used with --group (the group assigns partitions)")
    begin, begin_timestamp = parse_start(
        _KCAT_STARTS.get(start or "earliest", start or "earliest"), from_end=True
    )
    count = _Count()
    interrupt = Interrupt()
    if group is not None:
        if isinstance(begin, int | FromEnd):
            raise click.UsageError(
                "with --group, --from takes earliest, latest or a time (to move a group's offsets, "
                "use `logbroker groups reset-offsets`)"
            )
        work: Callable[..., Awaitable[None]] = _consume_group
        args: tuple[object, ...] = (
            topic,
            group,
            begin if start is not None else None,
            begin_timestamp,
            max_messages,
            idle_timeout,
            render,
            no_ack,
            ack_timeout,
            max_deliveries,
            bootstrap,
            count,
        )
    else:
        work = _consume
        args = (
            topic,
            begin,
            begin_timestamp,
            partition,
            max_messages,
            idle_timeout,
            render,
            bootstrap,
            count,
        )
    try:
        interrupt.run(work, *args)
    except (LogbrokerError, OSError) as exc:
        if not count.messages:
            raise
        # What was printed is not lost from view: the count goes with the error.
        message = exc.message if isinstance(exc, LogbrokerError) else (exc.strerror or str(exc))
        raise click.ClickException(
            f"{message}; consumed {count.messages} message(s) from {topic} before that"
        ) from None
    summary = f"consumed {count.messages} message(s) from {topic}"
    if interrupt.requested:
        click.echo(f"interrupted: {summary}", err=True)
        raise SystemExit(interrupt.exit_code)
    click.echo(summary, err=True)


class _Count:
    messages = 0


async def _consume_group(
    interrupt: Interrupt,
    topic: str,
    group: str,
    begin: str | None,
    begin_timestamp: int | None,
    max_messages: int | None,
    idle_timeout: float | None,
    render: Render,
    no_ack: bool,
    ack_timeout: float | None,
    max_deliveries: int | None,
    bootstrap: str,
    count: _Count,
) -> None:
    out = sys.stdout.buffer
    client = await interrupt.unless_stopped(connect, bootstrap)
    if client is None:
        return
    async with client:
        before = None
        with interrupt.stoppable():
            await client.describe_topic(topic)  # a clear error for an unknown topic
            if ack_timeout is not None or max_deliveries is not None:
                before = await _settings(client, group)
        if interrupt.requested:
            return
        consumer = client.group_consumer(
            group,
            topic,
            ack_timeout=ack_timeout,
            max_deliveries=max_deliveries,
            start=begin,
            start_timestamp=begin_timestamp,
        )
        async with consumer:
            if ack_timeout is not None or max_deliveries is not None:
                _say_settings(group, before, (consumer.ack_timeout, consumer.max_deliveries))
            last = trio.current_time()
            answered = False  # --idle-timeout counts once the broker answered (see _idle_wait)
            while max_messages is None or count.messages < max_messages:
                wait = _idle_wait(idle_timeout, last, answered)
                if wait <= 0 or interrupt.requested:
                    break
                messages: list[GroupMessage] = []
                with interrupt.stoppable(), trio.move_on_after(wait):
                    messages = await consumer.poll(
                        None if max_messages is None else max_messages - count.messages
                    )
                    answered = True
                if not messages:
                    continue
                # What was printed is committed even when a signal comes meanwhile.
                out.write(render(messages))
                out.flush()
                count.messages += len(messages)
                last = trio.current_time()
                if no_ack:
                    _say_dead_letters(consumer, messages)
                    continue
                done: dict[tuple[str, int], int] = {}
                for m in messages:
                    done[(m.topic, m.partition)] = max(done.get((m.topic, m.partition), 0), m.offset + 1)
                for (t, p), offset in done.items():
                    await consumer.commit_offset(t, p, offset)


async def _settings(client: Client, group: str) -> tuple[float, int] | None:
    """The group's ack timeout (s) and max deliveries, or None for a group that does not exist."""
    try:
        info = await client.describe_group(group)
    except GroupIdNotFoundError:
        return None
    return info.ack_timeout_ms / 1000, info.max_deliveries


def _say_settings(group: str, before: tuple[float, int] | None, now: tuple[float, int]) -> None:
    """Say on stderr what --ack-timeout / --max-deliveries did to the group: they outlive the
    command, so a change should not go unnoticed."""
    names = ("ack timeout", "max deliveries")
    units = (" s", "")
    if before is None:
        shown = ", ".join(
            f"{name} {value:g}{unit}" for name, value, unit in zip(names, now, units, strict=True)
        )
        click.echo(f"group {group}: created with {shown} (kept for the group)", err=True)
        return
    changes = [
        f"{name} {old:g}{unit} -> {new:g}{unit}"
        for name, old, new, unit in zip(names, before, now, units, strict=True)
        if old != new
    ]
    if changes:
        click.echo(f"group {group}: {', '.join(changes)} (kept for the group)", err=True)


def _say_dead_letters(consumer: GroupConsumer, messages: Sequence[GroupMessage]) -> None:
    """Records delivered for the last time without an ack (--no-ack) go to the dead-letter topic
    once the ack timeout passes: say how many, per topic, once per batch."""
    limit = consumer.max_deliveries
    last: dict[str, int] = {}
    for m in messages:
        if limit and m.delivery_count >= limit:
            last[m.topic] = last.get(m.topic, 0) + 1
    for topic, n in last.items():
        click.echo(
            f"group {consumer.group}: {n} record(s) of {topic} were delivered {limit} times (the "
            f"group's max deliveries) without an ack: the broker moves them to "
            f"{consumer.dead_letter_topic(topic)}",
            err=True,
        )


async def _consume(
    interrupt: Interrupt,
    topic: str,
    begin: str | int | FromEnd | None,
    begin_timestamp: int | None,
    partition: int | None,
    max_messages: int | None,
    idle_timeout: float | None,
    render: Render,
    bootstrap: str,
    count: _Count,
) -> None:
    out = sys.stdout.buffer
    client = await interrupt.unless_stopped(connect, bootstrap)
    if client is None:
        return
    async with client:
        consumer = client.consumer(
            topic,
            partitions=[partition] if partition is not None else None,
            start=begin if isinstance(begin, str | int) else "earliest",
            start_timestamp=begin_timestamp,
            start_from_end=begin.records if isinstance(begin, FromEnd) else None,
            on_out_of_range="nearest",
        )
        last = trio.current_time()
        answered = False  # --idle-timeout counts once the broker answered (see _idle_wait)
        with interrupt.stoppable():  # nothing to finish: a signal ends it at once
            while max_messages is None or count.messages < max_messages:
                wait = _idle_wait(idle_timeout, last, answered)
                if wait <= 0:
                    break
                messages: list[Message] = []
                with trio.move_on_after(wait):
                    messages = await consumer.poll()
                    answered = True
                if max_messages is not None:
                    messages = messages[: max_messages - count.messages]
                if messages:
                    out.write(render(messages))
                    out.flush()
                    count.messages += len(messages)
                    last = trio.current_time()


def _idle_wait(idle_timeout: float | None, last: float, answered: bool) -> float:
    """How long the next poll may wait for records. --idle-timeout means "no records came",
    not "no broker answered": until the broker has answered a poll, a poll is bounded by
    --timeout (the client's request timeout, an error) instead."""
    if idle_timeout is None or not answered:
        return math.inf
    return last + idle_timeout - trio.current_time()


def _json_lines(messages: Sequence[Message | GroupMessage]) -> bytes:
    return b"".join(
        json_line(
            {
                "topic": m.topic,
                "partition": m.partition,
                "offset": m.offset,
                "timestamp": m.timestamp,
                "key": bytes_json(m.key),
                "value": bytes_json(m.value),
                "headers": headers_json(m.headers),
                "delivery_count": m.delivery_count,
            }
        ).encode()
        + b"\n"
        for m in messages
    )
