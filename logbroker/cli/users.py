"""`logbroker users add|delete|list`: the SCRAM users of a broker, in `<data-dir>/security/users.json`.

These commands edit the file directly (no broker connection); a running broker re-reads it before
each login. Passwords are read from stdin, the environment or a prompt, never from the command
line, where other users could see them in the process list.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from logbroker.security.scram import DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, check_username
from logbroker.security.users import UserStore, open_store

from .common import security_dir_options
from .output import json_line

__all__ = ["users"]

F = TypeVar("F", bound=Callable[..., Any])

PASSWORD_ENV = "LOGBROKER_PASSWORD"


def _store(security_dir: str) -> UserStore:
    return open_store(security_dir)


def _check_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        check_username(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    elif PASSWORD_ENV in os.environ:
        password = os.environ[PASSWORD_ENV]
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.ClickException("the password must not be empty")
    return password


@click.group()
def users() -> None:
    """Add, delete and list the users that may log in with SASL (SCRAM or PLAIN)."""


@users.command("add")
@click.argument("name", callback=_check_name)
@click.option(
    "--password-stdin",
    is_flag=True,
    help=f"Read the password from the first line of stdin (else ${PASSWORD_ENV}, else a prompt).",
)
@click.option(
    "--iterations",
    type=click.IntRange(MIN_ITERATIONS, MAX_ITERATIONS),
    default=DEFAULT_ITERATIONS,
    show_default=True,
    help="PBKDF2 iterations of the stored SCRAM credentials.",
)
@security_dir_options
def add(name: str, password_stdin: bool, iterations: int, security_dir: str) -> None:
    """Add user NAME, or set a new password if NAME exists (both SCRAM mechanisms)."""
    password = _read_password(password_stdin)
    store = _store(security_dir)
    new = store.add(name, password, iterations)
    mechanisms = ", ".join(store.mechanisms(name))
    click.echo(f"{'added' if new else 'updated'} user {name} ({mechanisms})")


@users.command("delete")
@click.argument("name")
@security_dir_options
def delete(name: str, security_dir: str) -> None:
    """Delete user NAME."""
    if not _store(security_dir).delete(name):
        raise click.ClickException(f"no user {name!r}")
    click.echo(f"deleted user {name}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {user, mechanisms}.")
@security_dir_options
def list_users(as_json: bool, security_dir: str) -> None:
    """List the users and their mechanisms (never their secrets)."""
    store = _store(security_dir)
    found = [{"user": name, "mechanisms": store.mechanisms(name)} for name in store.usernames()]
    if as_json:
        click.echo(json_line(found))
        return
    for user in found:
        click.echo(f"{user['user']}  {','.join(user['mechanisms'])}")
