"""`logbroker serve`: run the broker until SIGINT or SIGTERM.

The start-up itself (bind the listeners, then open and recover the data directory, then accept)
is `logbroker.server.server.serve_settings`, shared with `logbroker.testing`; this command turns
flags and a TOML file into `Settings`, announces the address and handles the signals. Every
default `--help` shows is read from the setting's owner (`Settings`, `BrokerOptions`,
`ServerConfig`), never restated here.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import click
import trio
from click.core import ParameterSource

from logbroker.errors import InvalidConfigError
from logbroker.server.config import Settings, format_value
from logbroker.server.listeners import format_address
from logbroker.server.server import Server, serve_settings

__all__ = ["serve"]

logger = logging.getLogger("logbroker")

#: What `serve` does without a flag or TOML key for each setting.
_DEFAULTS = Settings()
#: How `--help` shows a default that is "" or -1 (off).
_UNSET = {
    "kafka_port": "off",
    "kafka_advertised_host": "the --host address",
    "security_dir": "DATA_DIR/security",
    "tls_cert": "off",
    "tls_client_ca": "off",
}


def _default(name: str) -> str:
    """The `[default: ...]` suffix of a setting's help, its value read from the owner."""
    value = _DEFAULTS.value(name)
    shown = _UNSET.get(name, "none") if value in ("", -1) else format_value(value)
    return f"  [default: {shown}]"


_LIMITS = (
    ("max_frame_bytes", "Largest request frame accepted (bytes)."),
    ("max_fetch_bytes", "Largest fetch response built (bytes)."),
    ("max_connections", "Connections served at once; more are refused."),
    ("idle_timeout", "Close connections idle this long (s)."),
    ("frame_timeout", "Close connections that take longer than this to send one frame (s)."),
    ("max_in_flight", "Requests in flight per connection before the broker stops reading it."),
    ("max_output_bytes", "Response bytes queued per connection before it counts as a slow reader."),
    ("send_timeout", "Close connections that take no response data for this long (s)."),
    (
        "min_free_bytes",
        "Refuse produces when the data disk has less free than this (bytes), keeping room for "
        "commits and metadata; 0: never. A disk already below it is warned of at start.",
    ),
    ("retention_check_interval", "How often retention and time-based rolls run (s)."),
    ("shutdown_timeout", "How long a graceful shutdown waits for requests in flight (s)."),
    ("default_partitions", "Partitions of topics created without a count."),
    (
        "quota_produce_bytes",
        "Bytes per second each principal may produce before it is slowed down; 0: no quota.",
    ),
    ("quota_fetch_bytes", "Bytes per second each principal may fetch; 0: no quota."),
    ("quota_requests", "Requests per second each principal may send; 0: no quota."),
    ("max_connections_per_ip", "Connections one client address may hold open; 0: no limit."),
    (
        "login_failure_delay",
        "After a failed login, refuse the address's next attempt for this long (s), doubled per "
        "recent failure.",
    ),
    ("login_timeout", "Close connections not logged in this long after they open (s)."),
    ("pre_auth_max_frame_bytes", "Largest frame accepted before a client logs in (bytes)."),
    ("default_ack_timeout", "Ack timeout of groups that set none (s, fractions allowed)."),
    ("default_max_deliveries", "Deliveries before a record is dead-lettered, for groups that set none."),
    ("default_session_timeout", "Session timeout of groups that set none (s)."),
    ("group_initial_delay", "Wait after a group's first member joins before assigning (s)."),
    ("kafka_group_initial_delay", "Kafka's group.initial.rebalance.delay.ms, in seconds."),
    ("kafka_min_session_timeout", "Shortest session timeout a Kafka consumer may ask for (s)."),
    ("kafka_max_session_timeout", "Longest session timeout a Kafka consumer may ask for (s)."),
)


def _limit_options(fn: Any) -> Any:
    for name, text in reversed(_LIMITS):
        kind = type(_DEFAULTS.value(name))
        fn = click.option(
            "--" + name.replace("_", "-"), name, type=kind, default=None, help=text + _default(name)
        )(fn)
    return fn


@click.command()
@click.option("--host", default=None, help="Address to listen on." + _default("host"))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the native protocol (0: a free one)." + _default("port"),
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="LOGBROKER_DATA_DIR",
    help="Where topics are stored (env LOGBROKER_DATA_DIR, which `users` and `acls` read too, and "
    "which --memory overrides)." + _default("data_dir"),
)
@click.option(
    "--memory",
    is_flag=True,
    default=None,
    help="Keep everything in memory (nothing survives a restart); not with --data-dir." + _default("memory"),
)
@click.option(
    "--fsync",
    default=None,
    metavar="always|interval:<ms>|never",
    help="When appends are fsynced." + _default("fsync"),
)
@click.option(
    "--auto-create-topics/--no-auto-create-topics",
    default=None,
    help="A producer (native or Kafka) creates a missing topic with --default-partitions, as "
    "Kafka's auto.create.topics.enable; consumers never create one." + _default("auto_create_topics"),
)
@click.option(
    "--kafka-port",
    type=click.IntRange(-1, 65535),
    default=None,
    help="Also speak Kafka's protocol on this port (0: a free one; -1: off), for Kafka clients."
    + _default("kafka_port"),
)
@click.option(
    "--kafka-advertised-host",
    default=None,
    help="The host Kafka clients are told to connect to." + _default("kafka_advertised_host"),
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The broker's certificate chain (PEM): both listeners take TLS only." + _default("tls_cert"),
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Its private key (PEM)." + _default("tls_key"),
)
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Require client certificates signed by this CA (mutual TLS)." + _default("tls_client_ca"),
)
@click.option(
    "--authenticate",
    is_flag=True,
    default=None,
    help="Clients must log in (SASL SCRAM-SHA-256/512; PLAIN over TLS) as a user of `logbroker users`."
    + _default("authenticate"),
)
@click.option(
    "--authorize",
    is_flag=True,
    default=None,
    help="Check every request against the ACLs of `logbroker acls` (deny by default)."
    + _default("authorize"),
)
@click.option(
    "--super-users",
    default=None,
    metavar="User:NAME,...",
    help="Principals the ACLs do not restrict." + _default("super_users"),
)
@click.option(
    "--security-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where users.json and acls.json live." + _default("security_dir"),
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="What the log on stderr shows." + _default("log_level"),
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A TOML file with the same settings, by the flags' names (flags win).  [default: none]",
)
@_limit_options
def serve(config_file: str | None, **flags: Any) -> None:
    """Run the broker until SIGINT or SIGTERM (then shut down cleanly and exit 0).

    Durable by default: a produce is acked once it is fsynced (group commit). Binds its
    listeners first (a port in use exits 1 naming the listener, with the data directory
    untouched), then opens and recovers the data directory, then prints "logbroker listening on
    HOST:PORT" and accepts connections. Bad settings, as flags or in the --config file, are usage
    errors (exit 2).
    """
    settings = _settings(click.get_current_context(), config_file, flags)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    trio.run(_serve, settings)


def _settings(ctx: click.Context, config_file: str | None, flags: dict[str, Any]) -> Settings:
    """The flags over the TOML file over the defaults; what is wrong in them is a usage error.

    LOGBROKER_DATA_DIR is a default for `serve`, `users` and `acls` alike, so memory storage
    asked for by --memory or the file ignores it; `--memory --data-dir DIR` is a contradiction.
    """
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        base = Settings.from_toml(config_file) if config_file else Settings()
        if ctx.get_parameter_source("data_dir") is ParameterSource.ENVIRONMENT and given.get(
            "memory", base.memory
        ):
            del given["data_dir"]
        return Settings.from_mapping(given, base)
    except InvalidConfigError as exc:
        raise click.UsageError(exc.message, ctx) from None


async def _serve(settings: Settings) -> None:
    async with trio.open_nursery() as nursery:

        async def run_server(task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
            await serve_settings(settings, task_status=task_status)
            nursery.cancel_scope.cancel()  # shut down: stop watching for signals

        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            server: Server = await nursery.start(run_server)
            logger.info("listening on %s", server.address)
            print(f"logbroker listening on {server.address}", flush=True)
            if server.kafka_port >= 0:
                print(
                    f"logbroker speaks Kafka on {format_address(server.host, server.kafka_port)}", flush=True
                )
            async for signum in signals:
                name = signal.Signals(signum).name
                if server.engine.closing:
                    logger.warning("second %s: stopping without waiting for requests in flight", name)
                    nursery.cancel_scope.cancel()
                    break
                logger.info("%s: shutting down", name)
                server.request_shutdown()
