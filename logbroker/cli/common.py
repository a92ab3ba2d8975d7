"""What the client commands share: the bootstrap option, running trio, parsing positions."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import click
import trio

from logbroker.errors import LogbrokerError

if TYPE_CHECKING:
    from logbroker.client import Client

__all__ = [
    "CONNECT_TIMEOUT",
    "FromEnd",
    "bootstrap_option",
    "broker_timeout",
    "connect",
    "parse_start",
    "run_async",
    "security_dir_options",
    "single_error",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _check_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from logbroker.client.connection import parse_address

    try:
        parse_address(value)
    except LogbrokerError as exc:
        raise click.BadParameter(exc.message) from None
    return value


#: The TLS options of this command run (set by the options' callbacks).
_tls: dict[str, str] = {}


def _remember_tls(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        _tls[str(param.name)] = value


def _tls_option(name: str, help: str) -> Callable[[F], F]:
    flag = f"--{name.replace('_', '-')}"
    env = f"LOGBROKER_{name.upper()}"
    return click.option(
        flag,
        name,
        envvar=env,
        type=click.Path(exists=True, dir_okay=False),
        expose_value=False,
        callback=_remember_tls,
        help=f"{help} (env {env}).",
    )


#: The login options of this command run (set by the options' callbacks).
_login: dict[str, str] = {}


def _remember_login(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        _login[str(param.name)] = value


#: The `--timeout` of this command run (set by the option's callback).
_timeout: dict[str, float] = {}
#: Setting up a connection (TCP, TLS, Hello, login) takes at most this long, or `--timeout` if
#: shorter (Kafka's socket.connection.setup.timeout.ms is 10 s too).
CONNECT_TIMEOUT = 10.0


def _remember_timeout(ctx: click.Context, param: click.Parameter, value: float) -> None:
    _timeout["timeout"] = value


def broker_timeout() -> float:
    """The command's `--timeout`: how long it waits for a broker that does not answer."""
    return _timeout.get("timeout", 30.0)


def bootstrap_option(command: F) -> F:
    """`--bootstrap` (`-b`, `--bootstrap-server`), `--timeout`, and the TLS and login options of
    a command that talks to a broker."""
    for option in (
        click.option(
            "--sasl-mechanism",
            envvar="LOGBROKER_SASL_MECHANISM",
            type=click.Choice(["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]),
            expose_value=False,
            callback=_remember_login,
            help="How to log in (PLAIN: over TLS only)  [default: SCRAM-SHA-256] (env LOGBROKER_SASL_MECHANISM).",
        ),
        click.option(
            "--password",
            envvar="LOGBROKER_PASSWORD",
            expose_value=False,
            callback=_remember_login,
            help="The user's password; prefer the environment variable (env LOGBROKER_PASSWORD).",
        ),
        click.option(
            "--user",
            envvar="LOGBROKER_USER",
            expose_value=False,
            callback=_remember_login,
            help="Log in as this user, on a broker that requires logins (env LOGBROKER_USER).",
        ),
        _tls_option("tls_key", "Its private key, when not in the certificate file"),
        _tls_option("tls_cert", "A client certificate (PEM), for a broker that asks for one"),
        _tls_option("tls_ca", "Connect with TLS, trusting this CA (PEM) for the broker's certificate"),
        click.option(
            "--timeout",
            envvar="LOGBROKER_TIMEOUT",
            type=click.FloatRange(min=0, min_open=True),
            default=30.0,
            show_default=True,
            metavar="SECONDS",
            expose_value=False,
            callback=_remember_timeout,
            help="Give up (exit 1) when the broker cannot be reached, does not answer a request, "
            f"or (produce) keeps refusing, for this long; connecting takes at most {CONNECT_TIMEOUT:g} s "
            "of it (env LOGBROKER_TIMEOUT).",
        ),
        click.option(
            "--bootstrap",
            "-b",
            "--bootstrap-server",
            "bootstrap",
            envvar="LOGBROKER_BOOTSTRAP",
            default="127.0.0.1:9400",
            show_default=True,
            metavar="HOST:PORT",
            callback=_check_address,
            help="The broker to talk to: its native port (env LOGBROKER_BOOTSTRAP).",
        ),
    ):
        command = option(command)
    return command


async def connect(bootstrap: str, **options: Any) -> Client:
    """`logbroker.connect`, over TLS when the command was given `--tls-ca` or `--tls-cert`,
    logged in with `--user`, and with the command's `--timeout`."""
    from logbroker.client import connect as connect_to
    from logbroker.tls import client_context

    timeout = broker_timeout()
    options.setdefault("connect_timeout", min(CONNECT_TIMEOUT, timeout))
    options.setdefault("request_timeout", timeout)
    if _tls:
        options["ssl_context"] = client_context(
            _tls.get("tls_ca", ""), _tls.get("tls_cert", ""), _tls.get("tls_key", "")
        )
    if "user" in _login:
        if "password" not in _login:
            raise click.UsageError("--user needs a password: --password or LOGBROKER_PASSWORD")
        options.update(username=_login["user"], password=_login["password"])
        options["mechanism"] = _login.get("sasl_mechanism", "SCRAM-SHA-256")
    return await connect_to(bootstrap, **options)


def security_dir_options(command: F) -> F:
    """`--data-dir` and `--security-dir`, as `logbroker serve` takes them, for the commands that
    edit the security files (`users`, `acls`): the command gets `security_dir`, resolved."""

    def resolve(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        ctx.meta["logbroker.security_dir"] = value
        return value

    def folder(ctx: click.Context, param: click.Parameter, data_dir: str) -> str:
        from logbroker.security.users import security_dir

        return ctx.meta.get("logbroker.security_dir") or security_dir(data_dir)

    command = click.option(
        "--data-dir",
        "security_dir",
        type=click.Path(file_okay=False),
        default="./data",
        envvar="LOGBROKER_DATA_DIR",
        show_default=True,
        show_envvar=True,
        callback=folder,
        help="The broker's data directory; users and ACLs live in DATA_DIR/security.",
    )(command)
    return click.option(
        "--security-dir",
        "security_dir_given",
        type=click.Path(file_okay=False),
        default=None,
        is_eager=True,
        expose_value=False,
        callback=resolve,
        help="Where users.json and acls.json live, for a broker started with --security-dir.  "
        "[default: DATA_DIR/security]",
    )(command)


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


class FromEnd(NamedTuple):
    """`-N`: `records` records before the end of each partition (kcat's `-o -N`)."""

    records: int


def parse_start(
    text: str, *, from_end: bool = False, param_hint: str = "--from"
) -> tuple[str | int | FromEnd | None, int | None]:
    """--from: 'earliest' | 'latest' | OFFSET | @EPOCH_MS | ISO-8601 time, and with `from_end`
    also -N (returned as `FromEnd(N)`).

    Returns (start, start_timestamp): one of them is set. A time without a zone is UTC.
    """
    text = text.strip()
    if text in ("earliest", "latest"):
        return text, None
    if text.isdigit():
        return int(text), None
    if from_end and text.startswith("-") and text[1:].isdigit():
        return FromEnd(int(text[1:])), None
    if text.startswith("@") and text[1:].lstrip("-").isdigit():
        return None, int(text[1:])
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        choices = (
            "earliest, latest, an offset, -N (N before the end)"
            if from_end
            else "earliest, latest, an offset"
        )
        raise click.BadParameter(
            f"{text!r}: use {choices}, @EPOCH_MS or an ISO-8601 time", param_hint=param_hint
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return None, int(moment.timestamp() * 1000)
