"""The `logbroker` entry point: the command group and the one place errors become messages.

Exit status: 0 on success, 1 with a one-line error on stderr (never a traceback), 2 for usage
errors (click's own), 130 when interrupted by Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from logbroker import __version__
from logbroker.errors import LogbrokerError

from .acls import acls
from .common import single_error
from .consume import consume
from .groups import groups, offsets
from .inspect import dump, verify
from .produce import produce
from .serve import serve
from .topics import topics
from .users import users

__all__ = ["cli", "main"]


class _Commands(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except BaseExceptionGroup as group:
                raise single_error(group) from None
        except LogbrokerError as exc:
            raise click.ClickException(exc.message) from None
        except BrokenPipeError:
            raise
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            # Ctrl-C: exit 130, as a shell does, not click's "Aborted!" and 1. (produce and
            # consume handle their signals themselves, to say what they completed.)
            click.echo("interrupted", err=True)
            raise SystemExit(130) from None


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="logbroker")
def cli() -> None:
    """logbroker: a Kafka-style append-only log broker."""


for command in (serve, topics, produce, consume, groups, offsets, dump, verify, users, acls):
    cli.add_command(command)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`logbroker dump ... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
