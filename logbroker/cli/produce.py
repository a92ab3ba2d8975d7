"""`logbroker produce`: one message per line of stdin (or --file), streamed as it arrives."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncGenerator
from contextlib import aclosing

import click
import trio

from logbroker.client.client import Client
from logbroker.client.producer import Producer
from logbroker.errors import ConnectionClosedError, LogbrokerError, UnknownTopicOrPartitionError

from .common import CONNECT_TIMEOUT, bootstrap_option, broker_timeout, connect
from .interrupt import Interrupt

__all__ = ["produce"]

_CHUNK = 1 << 16


@click.command()
@click.argument("topic")
@click.option("-k", "--key", default=None, help="The key of every message.")
@click.option(
    "-K",
    "--key-separator",
    default=None,
    metavar="SEP",
    help="Each line is KEY<SEP>VALUE. A line without SEP stops the input there (as Kafka's console "
    "producer does): the lines before it are sent, and the error names the line.",
)
@click.option(
    "-p",
    "--partition",
    type=click.IntRange(min=0),
    default=None,
    help="Send every message to this partition.",
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="KEY=VALUE",
    help="A header on every message; repeatable.",
)
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Read this file instead of stdin.",
)
@bootstrap_option
def produce(
    topic: str,
    key: str | None,
    key_separator: str | None,
    partition: int | None,
    headers: tuple[str, ...],
    path: str | None,
    bootstrap: str,
) -> None:
    """Send one message per line of stdin (or --file) to TOPIC.

    Lines are sent as they arrive (within a few milliseconds), batched while they come fast.
    Keyed messages go to the partition Kafka's partitioner picks for the key; others are spread
    over the partitions batch by batch. Exits 0 once every message is acked, saying how many it
    produced; on an error (also a broker unreachable or refusing for --timeout seconds), 1,
    saying how many of the messages read were acked. Interrupted
    (SIGINT, SIGTERM) it stops reading, gives the messages read a few seconds to be acked, says
    how many were, and exits 130 or 143.
    """
    timeout = broker_timeout()
    if key is not None and key_separator is not None:
        raise click.UsageError("--key and --key-separator cannot be used together")
    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="--key-separator")
    parsed_headers = []
    for header in headers:
        name, sep, value = header.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{header!r}: expected KEY=VALUE", param_hint="--header")
        parsed_headers.append((name, value.encode()))
    state = _State()
    interrupt = Interrupt()
    try:
        interrupt.run(
            _produce, topic, key, key_separator, partition, parsed_headers, path, timeout, bootstrap, state
        )
    except (LogbrokerError, OSError) as exc:
        message = exc.message if isinstance(exc, LogbrokerError) else (exc.strerror or str(exc))
        raise click.ClickException(f"{message}; {state.counts()}") from None
    if interrupt.requested:
        click.echo(f"interrupted: {state.counts()}", err=True)
        raise SystemExit(interrupt.exit_code)
    if state.bad_line is not None:
        raise click.ClickException(
            f"line {state.bad_line} has no key separator {key_separator!r}, so the input stops there; "
            f"{state.counts()}"
        )
    if state.new_topic and state.acked:
        # A typo in a topic name creates a topic (Kafka's default): not silently.
        click.echo(
            f"created topic {topic!r}: it did not exist (serve --no-auto-create-topics refuses)", err=True
        )
    click.echo(f"produced {state.acked} message(s) to {topic}", err=True)


#: How long an interrupted produce waits for the messages it read to be acked, at most.
_GRACE = 5.0


class _State:
    read = 0  # lines taken as messages
    acked = 0
    bad_line: int | None = None  # the line without the key separator
    new_topic = False  # the topic did not exist when the command started

    def counts(self) -> str:
        if self.read == 0:
            return "no message was read yet, none was sent"
        return f"{self.acked} of {self.read} message(s) were acked"


async def _connect(bootstrap: str, patience: float) -> Client:
    """Connect, retrying while the broker cannot be reached, for up to `patience` seconds."""
    give_up = trio.current_time() + patience
    delay = 0.1
    while True:
        try:
            return await connect(
                bootstrap, connect_timeout=max(min(CONNECT_TIMEOUT, give_up - trio.current_time()), 0.1)
            )
        except ConnectionClosedError as exc:
            if not exc.retriable or trio.current_time() + delay >= give_up:  # a wrong port stays wrong
                raise
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _lines(path: str | None) -> AsyncGenerator[bytes]:
    """Lines of the file or of stdin, each as soon as it is complete."""
    progress = None
    if path is not None:
        fd = os.open(path, os.O_RDONLY)
        if sys.stderr.isatty():
            progress = click.progressbar(length=os.fstat(fd).st_size, label="producing", file=sys.stderr)
    else:
        fd = sys.stdin.fileno()
    pending = b""
    try:
        while True:
            chunk = await trio.to_thread.run_sync(os.read, fd, _CHUNK, abandon_on_cancel=True)
            if not chunk:
                break
            if progress is not None:
                progress.update(len(chunk))
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield line[:-1] if line.endswith(b"\r") else line
        if pending:
            yield pending
    finally:
        if progress is not None:
            progress.render_finish()
        if path is not None:
            os.close(fd)


async def _produce(
    interrupt: Interrupt,
    topic: str,
    key: str | None,
    key_separator: str | None,
    partition: int | None,
    headers: list[tuple[str, bytes]],
    path: str | None,
    patience: float,
    bootstrap: str,
    state: _State,
) -> None:
    fixed_key = key.encode() if key is not None else None
    separator = key_separator.encode() if key_separator is not None else None
    client = await interrupt.unless_stopped(_connect, bootstrap, patience)
    if client is None:
        return
    async with client:
        try:
            await client.describe_topic(topic)
        except UnknownTopicOrPartitionError:
            state.new_topic = True  # the first produce will create it (or be refused): say so
        except LogbrokerError:
            pass  # no right to describe it: the produce itself will tell
        producer = client.producer(delivery_timeout=patience, request_timeout=patience)
        try:
            with trio.CancelScope() as wind_down:
                async with trio.open_nursery() as watchers:

                    async def stop_on_failure() -> None:
                        # A delivery that failed for --timeout ends the command at once, even
                        # while stdin stays open (tail -f | logbroker produce ...).
                        await producer.failure.wait()
                        wind_down.cancel()

                    async def bound_on_signal() -> None:
                        # Reading stops at the first signal; what was read gets a short, bounded
                        # chance to be acked (the producer flushes it on the way out of its
                        # block); a second signal ends it at once.
                        await interrupt.wait()
                        grace = min(_GRACE, patience)
                        wind_down.deadline = min(wind_down.deadline, trio.current_time() + grace)
                        waiting = state.read - producer.acked - producer.failed
                        if waiting > 0:
                            click.echo(
                                f"interrupted: waiting up to {grace:g} s for {waiting} message(s) to be "
                                "acked (interrupt again to stop now)",
                                err=True,
                            )

                    watchers.start_soon(stop_on_failure)
                    watchers.start_soon(bound_on_signal)
                    async with producer:
                        await _send_lines(
                            interrupt, producer, topic, fixed_key, separator, headers, partition, path, state
                        )
                    watchers.cancel_scope.cancel()
        finally:
            state.acked = producer.acked
        if producer.first_error is not None and not interrupt.requested:
            raise producer.first_error


async def _send_lines(
    interrupt: Interrupt,
    producer: Producer,
    topic: str,
    fixed_key: bytes | None,
    separator: bytes | None,
    headers: list[tuple[str, bytes]],
    partition: int | None,
    path: str | None,
    state: _State,
) -> None:
    """Each line, as a message, until the input ends, a line lacks the key separator, or a
    signal comes."""
    number = 0
    with interrupt.stoppable():
        async with aclosing(_lines(path)) as lines:
            async for line in lines:
                number += 1
                key = fixed_key
                value = line
                if separator is not None:
                    key, sep, value = line.partition(separator)
                    if not sep:
                        state.bad_line = number
                        return
                state.read += 1
                await producer.send(topic, value, key=key, headers=headers, partition=partition)
