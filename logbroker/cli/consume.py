"""`logbroker consume`: print a topic's messages, one per line."""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import BinaryIO

import click
import trio

from logbroker.client import GroupMessage, Message

from .common import bootstrap_option, connect, parse_start, run_async
from .output import bytes_json, headers_json, json_line

__all__ = ["consume"]


@click.command()
@click.argument("topic")
@click.option(
    "--from",
    "start",
    default=None,
    metavar="earliest|latest|OFFSET|@EPOCH_MS|ISO-8601-TIME",
    help="Where to start in each partition (default earliest; a time without a zone is UTC). With "
    "--group: where partitions without a committed offset start.",
)
@click.option("--partition", type=click.IntRange(min=0), default=None, help="Read only this partition.")
@click.option(
    "--max-messages", type=click.IntRange(min=1), default=None, help="Exit after this many messages."
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Exit after this many seconds without a message (counted from the last one, or the start; "
    "once the broker has answered: one that never does is an error after --timeout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["value", "json"]),
    default="value",
    show_default=True,
    help="value: the value of each message; json: one object per line (topic, partition, offset, "
    "timestamp, key, value, headers, delivery_count).",
)
@click.option(
    "--group", default=None, help="Consume as a member of this consumer group (commits what it printed)."
)
@click.option(
    "--no-ack", is_flag=True, help="With --group: never commit (records come back after the ack timeout)."
)
@click.option(
    "--ack-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="With --group: set the group's ack timeout (seconds, fractions allowed).",
)
@click.option(
    "--max-deliveries",
    type=click.IntRange(min=1),
    default=None,
    help="With --group: set how often a record is delivered before it goes to the dead-letter topic.",
)
@bootstrap_option
def consume(
    topic: str,
    start: str | None,
    partition: int | None,
    max_messages: int | None,
    idle_timeout: float | None,
    fmt: str,
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
    it runs until interrupted.
    """
    if group is None and (no_ack or ack_timeout is not None or max_deliveries is not None):
        raise click.UsageError("--no-ack, --ack-timeout and --max-deliveries need --group")
    if group is not None and partition is not None:
        raise click.UsageError("--partition cannot be used with --group (the group assigns partitions)")
    begin, begin_timestamp = parse_start(start or "earliest")
    if group is not None:
        if isinstance(begin, int):
            raise click.UsageError("with --group, --from takes earliest, latest or a time, not an offset")
        run_async(
            _until_signalled,
            _consume_group,
            topic,
            group,
            begin if start is not None else None,
            begin_timestamp,
            max_messages,
            idle_timeout,
            fmt,
            no_ack,
            ack_timeout,
            max_deliveries,
            bootstrap,
        )
        return
    run_async(
        _until_signalled,
        _consume,
        topic,
        begin,
        begin_timestamp,
        partition,
        max_messages,
        idle_timeout,
        fmt,
        bootstrap,
    )


async def _until_signalled(fn: Callable[..., Awaitable[None]], *args: object) -> None:
    """Run `fn`; SIGINT or SIGTERM stop it as a normal end (a group member leaves its group)."""
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch)
        await fn(*args)
        nursery.cancel_scope.cancel()


async def _consume_group(
    topic: str,
    group: str,
    begin: str | None,
    begin_timestamp: int | None,
    max_messages: int | None,
    idle_timeout: float | None,
    fmt: str,
    no_ack: bool,
    ack_timeout: float | None,
    max_deliveries: int | None,
    bootstrap: str,
) -> None:
    out = sys.stdout.buffer
    async with await connect(bootstrap) as client:
        await client.describe_topic(topic)  # a clear error for an unknown topic
        consumer = client.group_consumer(
            group,
            topic,
            ack_timeout=ack_timeout,
            max_deliveries=max_deliveries,
            start=begin,
            start_timestamp=begin_timestamp,
        )
        async with consumer:
            count = 0
            last = trio.current_time()
            answered = False  # --idle-timeout counts once the broker answered (see _idle_wait)
            while max_messages is None or count < max_messages:
                wait = _idle_wait(idle_timeout, last, answered)
                if wait <= 0:
                    break
                messages: list[GroupMessage] = []
                with trio.move_on_after(wait):
                    messages = await consumer.poll(None if max_messages is None else max_messages - count)
                    answered = True
                if not messages:
                    continue
                _write(out, messages, fmt)
                count += len(messages)
                last = trio.current_time()
                if not no_ack:
                    done: dict[tuple[str, int], int] = {}
                    for m in messages:
                        done[(m.topic, m.partition)] = max(done.get((m.topic, m.partition), 0), m.offset + 1)
                    for (t, p), offset in done.items():
                        await consumer.commit_offset(t, p, offset)


async def _consume(
    topic: str,
    begin: str | int | None,
    begin_timestamp: int | None,
    partition: int | None,
    max_messages: int | None,
    idle_timeout: float | None,
    fmt: str,
    bootstrap: str,
) -> None:
    out = sys.stdout.buffer
    async with await connect(bootstrap) as client:
        consumer = client.consumer(
            topic,
            partitions=[partition] if partition is not None else None,
            start=begin if begin is not None else "earliest",
            start_timestamp=begin_timestamp,
        )
        count = 0
        last = trio.current_time()
        answered = False  # --idle-timeout counts once the broker answered (see _idle_wait)
        while max_messages is None or count < max_messages:
            wait = _idle_wait(idle_timeout, last, answered)
            if wait <= 0:
                break
            messages: list[Message] = []
            with trio.move_on_after(wait):
                messages = await consumer.poll()
                answered = True
            if max_messages is not None:
                messages = messages[: max_messages - count]
            if messages:
                _write(out, messages, fmt)
                count += len(messages)
                last = trio.current_time()


def _idle_wait(idle_timeout: float | None, last: float, answered: bool) -> float:
    """How long the next poll may wait for records. --idle-timeout means "no records came",
    not "no broker answered": until the broker has answered a poll, a poll is bounded by
    --timeout (the client's request timeout, an error) instead."""
    if idle_timeout is None or not answered:
        return math.inf
    return last + idle_timeout - trio.current_time()


def _write(out: BinaryIO, messages: Sequence[Message | GroupMessage], fmt: str) -> None:
    if fmt == "json":
        lines = [
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
            for m in messages
        ]
    else:
        lines = [m.value or b"" for m in messages]
    out.write(b"\n".join(lines) + b"\n")
    out.flush()
