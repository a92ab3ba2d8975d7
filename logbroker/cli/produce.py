"""`logbroker produce`: one message per line of stdin (or --file), streamed as it arrives."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

import click
import trio

from logbroker.client.client import Client
from logbroker.errors import ConnectionClosedError, LogbrokerError

from .common import CONNECT_TIMEOUT, bootstrap_option, broker_timeout, connect, run_async

__all__ = ["produce"]

_CHUNK = 1 << 16


@click.command()
@click.argument("topic")
@click.option("--key", default=None, help="The key of every message.")
@click.option("--key-separator", default=None, metavar="SEP", help="Each line is KEY<SEP>VALUE.")
@click.option(
    "--partition", type=click.IntRange(min=0), default=None, help="Send every message to this partition."
)
@click.option(
    "--header", "headers", multiple=True, metavar="KEY=VALUE", help="A header on every message; repeatable."
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
    over the partitions batch by batch. Exits 0 once every message is acked; exits 1 when
    the broker is unreachable or keeps refusing for --timeout seconds.
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
    try:
        run_async(
            _produce, topic, key, key_separator, partition, parsed_headers, path, timeout, bootstrap, state
        )
    except (LogbrokerError, OSError) as exc:
        message = exc.message if isinstance(exc, LogbrokerError) else (exc.strerror or str(exc))
        raise click.ClickException(
            f"{message}; {state.acked} of {state.sent} message(s) were acked"
        ) from None
    click.echo(f"produced {state.acked} message(s) to {topic}", err=True)


class _State:
    sent = 0
    acked = 0


async def _connect(bootstrap: str, patience: float) -> Client:
    """Connect, retrying while the broker cannot be reached, for up to `patience` seconds."""
    give_up = trio.current_time() + patience
    delay = 0.1
    while True:
        try:
            return await connect(
                bootstrap, connect_timeout=max(min(CONNECT_TIMEOUT, give_up - trio.current_time()), 0.1)
            )
        except ConnectionClosedError:
            if trio.current_time() + delay >= give_up:
                raise
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _lines(path: str | None) -> AsyncIterator[bytes]:
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
    client = await _connect(bootstrap, patience)
    async with client:
        producer = client.producer(delivery_timeout=patience, request_timeout=patience)
        try:
            with trio.CancelScope() as abort:
                async with producer, trio.open_nursery() as nursery:

                    async def stop_on_failure() -> None:
                        # A delivery that failed for --timeout ends the command at once, even
                        # while stdin stays open (tail -f | logbroker produce ...).
                        await producer.failure.wait()
                        abort.cancel()

                    nursery.start_soon(stop_on_failure)
                    number = 0
                    async for line in _lines(path):
                        number += 1
                        record_key = fixed_key
                        value = line
                        if separator is not None:
                            record_key, sep, value = line.partition(separator)
                            if not sep:
                                raise click.ClickException(
                                    f"line {number} has no key separator {key_separator!r}"
                                )
                        await producer.send(
                            topic, value, key=record_key, headers=headers, partition=partition
                        )
                        state.sent += 1
                    nursery.cancel_scope.cancel()
        finally:
            state.acked = producer.acked
        if producer.first_error is not None:
            raise producer.first_error
