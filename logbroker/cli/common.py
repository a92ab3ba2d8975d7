"""What the client commands share: the bootstrap option, running trio, parsing positions."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import trio

from logbroker.errors import LogbrokerError

__all__ = ["bootstrap_option", "parse_start", "run_async", "single_error"]

T = TypeVar("T")


def _check_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from logbroker.client.connection import parse_address

    try:
        parse_address(value)
    except LogbrokerError as exc:
        raise click.BadParameter(exc.message) from None
    return value


bootstrap_option = click.option(
    "--bootstrap",
    envvar="LOGBROKER_BOOTSTRAP",
    default="127.0.0.1:9400",
    show_default=True,
    metavar="HOST:PORT",
    callback=_check_address,
    help="The broker to talk to (env LOGBROKER_BOOTSTRAP).",
)


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run `fn` under trio; an error that escapes a nursery comes out as itself, not a group."""
    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        raise single_error(group) from None


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    for leaf in leaves:
        if isinstance(leaf, LogbrokerError | OSError | click.ClickException):
            return leaf
    return leaves[0] if leaves else group


def parse_start(text: str) -> tuple[str | int | None, int | None]:
    """--from: 'earliest' | 'latest' | OFFSET | @EPOCH_MS | ISO-8601 time.

    Returns (start, start_timestamp): one of them is set. A time without a zone is UTC.
    """
    text = text.strip()
    if text in ("earliest", "latest"):
        return text, None
    if text.isdigit():
        return int(text), None
    if text.startswith("@") and text[1:].lstrip("-").isdigit():
        return None, int(text[1:])
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use earliest, latest, an offset, @EPOCH_MS or an ISO-8601 time", param_hint="--from"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return None, int(moment.timestamp() * 1000)
