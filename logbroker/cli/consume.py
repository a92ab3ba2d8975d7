"""`logbroker consume`: print a topic's messages, one per line."""

from __future__ import annotations

import math
import sys
from typing import BinaryIO

import click
import trio

from logbroker.client import Message, connect

from .common import bootstrap_option, parse_start, run_async
from .output import bytes_json, headers_json, json_line

__all__ = ["consume"]


@click.command()
@click.argument("topic")
@click.option(
    "--from",
    "start",
    default="earliest",
    show_default=True,
    metavar="earliest|latest|OFFSET|@EPOCH_MS|ISO-8601-TIME",
    help="Where to start in each partition (a time without a zone is UTC).",
)
@click.option("--partition", type=click.IntRange(min=0), default=None, help="Read only this partition.")
@click.option(
    "--max-messages", type=click.IntRange(min=1), default=None, help="Exit after this many messages."
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Exit after this many seconds without a message (counted from the last one, or the start).",
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
@bootstrap_option
def consume(
    topic: str,
    start: str,
    partition: int | None,
    max_messages: int | None,
    idle_timeout: float | None,
    fmt: str,
    bootstrap: str,
) -> None:
    """Print the messages of TOPIC, one per line, in offset order per partition.

    Without --max-messages or --idle-timeout it runs until interrupted. Nothing is committed.
    """
    begin, begin_timestamp = parse_start(start)
    run_async(_consume, topic, begin, begin_timestamp, partition, max_messages, idle_timeout, fmt, bootstrap)


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
        while max_messages is None or count < max_messages:
            wait = math.inf if idle_timeout is None else last + idle_timeout - trio.current_time()
            if wait <= 0:
                break
            messages: list[Message] = []
            with trio.move_on_after(wait):
                messages = await consumer.poll()
            if max_messages is not None:
                messages = messages[: max_messages - count]
            if messages:
                _write(out, messages, fmt)
                count += len(messages)
                last = trio.current_time()


def _write(out: BinaryIO, messages: list[Message], fmt: str) -> None:
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
