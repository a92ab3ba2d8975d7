"""`logbroker serve`: run the broker until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import time
from typing import Any

import click
import trio

from logbroker import __version__
from logbroker.server.config import Settings
from logbroker.server.server import Server

__all__ = ["serve"]

logger = logging.getLogger("logbroker")

_LIMITS = (
    ("max_frame_bytes", int, "Largest request frame accepted (bytes)."),
    ("max_fetch_bytes", int, "Largest fetch response built (bytes)."),
    ("max_connections", int, "Connections served at once; more are refused."),
    ("idle_timeout", float, "Close connections idle this long (s)."),
    ("frame_timeout", float, "Close connections that take longer than this to send one frame (s)."),
    ("max_in_flight", int, "Requests in flight per connection before the broker stops reading it."),
    ("max_output_bytes", int, "Response bytes queued per connection before it counts as a slow reader."),
    ("send_timeout", float, "Close connections that take no response data for this long (s)."),
    (
        "min_free_bytes",
        int,
        "Refuse produces when the data disk has less free than this (bytes), keeping room for "
        "commits and metadata; 0: never.  [default: 67108864]",
    ),
    ("retention_check_interval", float, "How often retention and time-based rolls run (s)."),
    ("shutdown_timeout", float, "How long a graceful shutdown waits for requests in flight (s)."),
    ("default_partitions", int, "Partitions of topics created without a count."),
    (
        "quota_produce_bytes",
        float,
        "Bytes per second each principal may produce before it is slowed down; 0: no quota.",
    ),
    ("quota_fetch_bytes", float, "Bytes per second each principal may fetch; 0: no quota."),
    ("quota_requests", float, "Requests per second each principal may send; 0: no quota."),
    ("max_connections_per_ip", int, "Connections one client address may hold open; 0: no limit."),
    (
        "login_failure_delay",
        float,
        "After a failed login, refuse the address's next attempt for this long (s), doubled per "
        "recent failure.  [default: 1]",
    ),
    ("login_timeout", float, "Close connections not logged in this long after they open (s).  [default: 30]"),
    (
        "pre_auth_max_frame_bytes",
        int,
        "Largest frame accepted before a client logs in (bytes).  [default: 65536]",
    ),
    (
        "default_ack_timeout",
        float,
        "Ack timeout of groups that set none (s, fractions allowed).  [default: 30]",
    ),
    (
        "default_max_deliveries",
        int,
        "Deliveries before a record is dead-lettered, for groups that set none.  [default: 10]",
    ),
    ("default_session_timeout", float, "Session timeout of groups that set none (s).  [default: 30]"),
    (
        "group_initial_delay",
        float,
        "Wait after a group's first member joins before assigning (s).  [default: 0.3]",
    ),
    (
        "kafka_group_initial_delay",
        float,
        "Kafka's group.initial.rebalance.delay.ms, in seconds.  [default: 3]",
    ),
    (
        "kafka_min_session_timeout",
        float,
        "Shortest session timeout a Kafka consumer may ask for (s).  [default: 6]",
    ),
    (
        "kafka_max_session_timeout",
        float,
        "Longest session timeout a Kafka consumer may ask for (s).  [default: 1800]",
    ),
)


def _limit_options(fn: Any) -> Any:
    for name, kind, text in reversed(_LIMITS):
        fn = click.option("--" + name.replace("_", "-"), name, type=kind, default=None, help=text)(fn)
    return fn


@click.command()
@click.option("--host", default=None, help="Address to listen on.  [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port of the native protocol.  [default: 9400]")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="LOGBROKER_DATA_DIR",
    help="Where topics are stored (env LOGBROKER_DATA_DIR, which `users` and `acls` read too).  "
    "[default: ./data]",
)
@click.option(
    "--memory", is_flag=True, default=None, help="Keep everything in memory (nothing survives a restart)."
)
@click.option(
    "--fsync",
    default=None,
    metavar="always|interval:<ms>|never",
    help="When appends are fsynced.  [default: always]",
)
@click.option(
    "--auto-create-topics/--no-auto-create-topics",
    default=None,
    help="A producer (native or Kafka) creates a missing topic with --default-partitions, as "
    "Kafka's auto.create.topics.enable; consumers never create one.  [default: on]",
)
@click.option(
    "--kafka-port",
    type=int,
    default=None,
    help="Also speak Kafka's protocol on this port (0: a free one), for Kafka clients.  [default: off]",
)
@click.option(
    "--kafka-advertised-host",
    default=None,
    help="The host Kafka clients are told to connect to.  [default: the --host address]",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The broker's certificate chain (PEM): both listeners take TLS only.  [default: off]",
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="Its private key (PEM)."
)
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Require client certificates signed by this CA (mutual TLS).",
)
@click.option(
    "--authenticate",
    is_flag=True,
    default=None,
    help="Clients must log in (SASL SCRAM-SHA-256/512; PLAIN over TLS) as a user of `logbroker users`.",
)
@click.option(
    "--authorize",
    is_flag=True,
    default=None,
    help="Check every request against the ACLs of `logbroker acls` (deny by default).",
)
@click.option(
    "--super-users",
    default=None,
    metavar="User:NAME,...",
    help="Principals the ACLs do not restrict.",
)
@click.option(
    "--security-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where users.json and acls.json live.  [default: DATA_DIR/security]",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="[default: info]",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A TOML file with the same settings (flags win).",
)
@_limit_options
def serve(config_file: str | None, **flags: Any) -> None:
    """Run the broker until SIGINT or SIGTERM (then shut down cleanly and exit 0).

    Durable by default: a produce is acked once it is fsynced (group commit). Prints
    "logbroker listening on HOST:PORT" once it accepts connections.
    """
    settings = Settings.from_toml(config_file) if config_file else Settings()
    settings = Settings.from_mapping({k: v for k, v in flags.items() if v is not None}, settings)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    trio.run(_serve, settings)


async def _serve(settings: Settings) -> None:
    logger.info("logbroker %s starting: %s", __version__, settings.describe())
    broker = settings.open_broker(now_ms=int(time.time() * 1000))
    fsync = broker.options.fsync
    config = settings.server_config()
    if not broker.durable:
        logger.warning("memory storage: nothing survives a restart")
    else:
        for report in broker.recovery:
            (logger.warning if report.changed_data else logger.info)("recovery: %s", report.summary())
        for note in broker.notes:
            logger.warning("%s", note)
        broker.notes.clear()
        if fsync.mode == "interval":
            logger.warning(
                "fsync=%s: acked records may be lost in a power failure (up to %d ms of them); "
                "they survive a crash of the process",
                fsync,
                fsync.interval_ms,
            )
        elif fsync.mode == "never":
            logger.warning(
                "fsync=never: acked records may be lost in a power failure; they survive a crash of the process"
            )
    server = Server(broker, config)
    try:
        async with trio.open_nursery() as nursery:

            async def run_server(task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
                await server.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # shut down: stop watching for signals

            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(run_server)
                logger.info("listening on %s", server.address)
                if config.tls_cert:
                    logger.info(
                        "TLS on both listeners (TLS 1.2 or later%s)",
                        ", client certificates required" if config.tls_client_ca else "",
                    )
                logger.info("security: %s", server.security.describe())
                if config.authenticate and not server.security.users.usernames():
                    logger.warning(
                        "logins are required but %s has no users: add one with `logbroker users add`",
                        server.security.directory,
                    )
                print(f"logbroker listening on {server.address}", flush=True)
                if server.kafka_port >= 0:
                    print(f"logbroker speaks Kafka on {server.host}:{server.kafka_port}", flush=True)
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if server.engine.closing:
                        logger.warning("second %s: stopping without waiting for requests in flight", name)
                        nursery.cancel_scope.cancel()
                        break
                    logger.info("%s: shutting down", name)
                    server.request_shutdown()
    finally:
        # Appends are synchronous, so even after a forced stop the logs are consistent: seal them
        # and mark the clean shutdown.
        broker.close()
        logger.info("closed the data directory cleanly" if broker.durable else "stopped")
