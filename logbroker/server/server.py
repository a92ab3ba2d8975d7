"""`Server`: the listeners, the connections, the background loops and the graceful shutdown;
and `serve_settings`, the start-up of a broker from its settings.

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, broker, "127.0.0.1", 0)
        ...                          # server.port is the bound port
        server.request_shutdown()    # or SIGINT/SIGTERM in `logbroker serve`

`logbroker serve` and `logbroker.testing` start with `serve_settings`: bind the listeners, then
open the broker (lock the data directory, recover), then accept; so a port in use fails before
the data directory is touched.

The server runs an `Engine` over the broker (`logbroker.engine`: the services both protocols
share) and its front doors: the native protocol's listener (`server.native`) and, with
`kafka_port` set, one that speaks Kafka's protocol (`server.kafka`).

Every task belongs to a nursery of `run`: the connections to one, the engine's background work
(flusher, group timer, housekeeping) and the security watch to another around it. A shutdown
stops accepting, stops reading requests, answers what is in flight (long polls return at once,
produce acks wait for their fsync), waits up to `shutdown_timeout`, and flushes. Closing the
broker (which writes the clean-shutdown markers) is left to whoever opened it
(`serve_settings` for the broker it opens).
"""

from __future__ import annotations

import functools
import logging

import attrs
import trio

from logbroker import __version__
from logbroker.broadcast import Broadcast
from logbroker.broker.broker import Broker
from logbroker.engine import clock
from logbroker.engine.engine import Engine
from logbroker.errors import LogbrokerError
from logbroker.protocol.connection import refusal
from logbroker.server.config import ServerConfig, Settings
from logbroker.server.connection import BaseConnection, Ports, peer_name
from logbroker.server.kafka.connection import KafkaConnection
from logbroker.server.listeners import Listeners, format_address
from logbroker.server.native.connection import NativeConnection
from logbroker.server.security import Security
from logbroker.tls import server_context

__all__ = ["Server", "serve", "serve_settings"]

logger = logging.getLogger("logbroker.server")


_TLS_ONLY = "this port takes TLS connections only: connect with TLS (--tls-ca, or an ssl_context)"


class Server:
    def __init__(self, broker: Broker, config: ServerConfig | None = None) -> None:
        self.broker = broker
        self.config = config or ServerConfig()
        self.engine = Engine(broker, retention_check_interval=self.config.retention_check_interval)
        self.connections: set[BaseConnection] = set()
        #: Connections still in their TLS handshake (they count against `max_connections`).
        self.handshaking = 0
        #: TLS for both listeners (None: plain TCP).
        self.tls = (
            server_context(self.config.tls_cert, self.config.tls_key, self.config.tls_client_ca)
            if self.config.tls_cert
            else None
        )
        self.security = Security(self.config, tls=self.tls is not None, data_dir=broker.data_dir)
        self.host = self.config.host
        self.port = self.config.port
        #: The Kafka listener's bound port (-1: off).
        self.kafka_port = -1
        self._shutdown = trio.Event()
        self._connections_changed = Broadcast()

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    def request_shutdown(self) -> None:
        self._shutdown.set()

    @property
    def kafka_address(self) -> tuple[str, int]:
        """Where Kafka clients are told to connect (Metadata, FindCoordinator)."""
        return self.config.advertised_kafka_host, self.kafka_port

    async def wait_connections(self, at_most: int) -> None:
        """Return once at most `at_most` connections are open."""
        await self._connections_changed.wait_until(lambda: len(self.connections) <= at_most)

    async def run(
        self,
        listeners: Listeners | None = None,
        *,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until a shutdown, on `listeners` (bound already: the server takes them over and
        closes them) or on listeners it binds from its config. A listener that cannot be opened
        (a port in use) raises an `OSError` naming it, and leaves nothing open and nothing
        attached to the broker."""
        try:
            if listeners is None:
                listeners = await Listeners.bind(self.config)
            self.host, self.port = listeners.native.host, listeners.native.port
            if listeners.kafka is not None:
                self.kafka_port = listeners.kafka.port
            await self._serve(listeners, task_status)
        finally:
            self.engine.close()
            if listeners is not None:
                await listeners.aclose()  # closed already after a shutdown: a no-op then
        logger.info("stopped")

    async def _serve(self, listeners: Listeners, task_status: trio.TaskStatus[Server]) -> None:
        async with trio.open_nursery() as background:
            background.start_soon(self.engine.run)
            background.start_soon(self._watch_security)
            async with trio.open_nursery() as connections:
                accepting = trio.CancelScope()

                async def accept() -> None:
                    with accepting:
                        async with trio.open_nursery() as acceptors:
                            for handle, listener in (
                                (self._handle, listeners.native),
                                (self._handle_kafka, listeners.kafka),
                            ):
                                if listener is not None:
                                    acceptors.start_soon(
                                        functools.partial(
                                            trio.serve_listeners,
                                            handle,
                                            listener.sockets,
                                            handler_nursery=connections,
                                        )
                                    )

                connections.start_soon(accept)
                task_status.started(self)
                await self._shutdown.wait()
                logger.info("shutting down: answering %d connection(s) in flight", len(self.connections))
                accepting.cancel()
                await listeners.aclose()
                self.engine.shut_down()
                for connection in list(self.connections):
                    if connection.principal is None:  # not logged in: nothing worth answering
                        connection.close("shutdown")
                    else:
                        connection.stop_reading()
                with trio.move_on_after(self.config.shutdown_timeout):
                    await self.wait_connections(0)
                for connection in list(self.connections):
                    connection.close("shutdown timeout")
            await self.engine.flush()
            background.cancel_scope.cancel()

    async def _handle(self, tcp: trio.SocketStream) -> None:
        await self._serve_connection(tcp, kafka=False)

    async def _handle_kafka(self, tcp: trio.SocketStream) -> None:
        await self._serve_connection(tcp, kafka=True)

    async def _serve_connection(self, tcp: trio.SocketStream, *, kafka: bool) -> None:
        host = peer_name(tcp).rpartition(":")[0]
        if len(self.connections) + self.handshaking >= self.config.max_connections:
            reason = f"too many connections (max_connections is {self.config.max_connections})"
        elif not self.security.per_host.try_open(host):
            reason = f"too many connections from {host} (max_connections_per_ip is {self.config.max_connections_per_ip})"
        else:
            try:
                stream = await self._secure(tcp, kafka=kafka)
                if stream is not None:
                    ports = Ports(self.port, self.kafka_port)
                    connection: BaseConnection = (
                        KafkaConnection(
                            stream, self.engine, self.config, self.security, self.kafka_address, ports
                        )
                        if kafka
                        else NativeConnection(stream, self.engine, self.config, self.security, ports)
                    )
                    await self._run_connection(connection)
            finally:
                self.security.per_host.closed(host)
            return
        logger.warning("refused a %sconnection from %s: %s", "Kafka " if kafka else "", host, reason)
        if self.tls is None and not kafka:  # a TLS or Kafka client could not read a native refusal
            with trio.move_on_after(1):
                try:
                    await tcp.send_all(refusal(reason))
                except trio.BrokenResourceError:
                    pass
        await tcp.aclose()

    async def _secure(self, tcp: trio.SocketStream, *, kafka: bool) -> trio.abc.Stream | None:
        """The connection's stream: TLS once its handshake succeeds within the timeout (None,
        and closed, when it does not: plaintext, garbage, a wrong or missing client certificate).
        A native client that spoke plaintext to the native port is told, in plaintext, that the
        port takes TLS only."""
        if self.tls is None:
            return tcp
        stream = trio.SSLStream(tcp, self.tls, server_side=True)
        plaintext = False
        self.handshaking += 1
        try:
            with trio.move_on_after(self.config.tls_handshake_timeout) as waited:
                try:
                    await stream.do_handshake()
                    return stream
                except trio.BrokenResourceError as exc:
                    reason = str(exc.__cause__ or exc)
                    plaintext = getattr(exc.__cause__, "reason", None) == "WRONG_VERSION_NUMBER"
        finally:
            self.handshaking -= 1
        if waited.cancelled_caught:
            reason = f"no TLS handshake within {self.config.tls_handshake_timeout} s"
        elif plaintext and not kafka:
            logger.warning("%s: a plaintext client connected to the TLS-only native port", peer_name(tcp))
            with trio.move_on_after(1):
                try:  # a native client reads this and says it (a non-retriable code: TLS is needed)
                    await tcp.send_all(refusal(_TLS_ONLY, error_code=42))
                except trio.BrokenResourceError:
                    pass
        logger.info("%s: TLS handshake failed: %s", peer_name(tcp), reason)
        await tcp.aclose()
        return None

    async def _run_connection(self, connection: BaseConnection) -> None:
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            self._connections_changed.fire()

    async def _watch_security(self) -> None:
        """Take up `logbroker users|acls` changes while running; forget departed members."""
        while True:
            await trio.sleep(1)
            try:
                self.security.refresh()
            except (OSError, LogbrokerError) as exc:  # keep the rules in force; try again
                logger.error("security files: %s", getattr(exc, "message", None) or exc)
            self.security.prune_members(self.engine.groups.is_member)


async def serve(
    broker: Broker,
    host: str = "127.0.0.1",
    port: int = 9400,
    *,
    config: ServerConfig | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `broker` on `host:port` (0 picks a free port) until the server is shut down.

    `task_status.started` receives the `Server`: its `port` is the bound port and
    `request_shutdown()` starts a graceful shutdown.
    """
    config = config or ServerConfig()
    if (config.host, config.port) != (host, port):
        config = attrs.evolve(config, host=host, port=port)
    await Server(broker, config).run(task_status=task_status)


async def serve_settings(
    settings: Settings, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the broker `settings` describe until the server is shut down: the start-up of
    `logbroker serve` and of `logbroker.testing`'s brokers, written once.

    First every listener is bound, so a port in use fails (an `OSError` naming the listener)
    before anything in the data directory is touched; then the broker is opened (the data
    directory locked, every partition recovered) while connections wait in the listeners'
    backlog; then the server accepts, and `task_status.started` receives it. The broker is
    closed (sealed, clean-shutdown markers written) once the server has stopped.
    """
    for line in [f"logbroker {__version__} starting", *settings.summary()]:
        logger.info("%s", line)
    config = settings.server_config()
    listeners = await Listeners.bind(config)
    try:
        logger.info("%s", _describe_listeners(listeners, config))
        broker = settings.open_broker(now_ms=clock.wall_ms())
        try:
            _log_opening(broker)
            server = Server(broker, config)
            logger.info("security: %s", server.security.describe())
            if config.authenticate and not server.security.users.usernames():
                logger.warning(
                    "logins are required but %s has no users: add one with `logbroker users add`",
                    server.security.directory,
                )
            await server.run(listeners, task_status=task_status)
        finally:
            # Appends are synchronous, so even after a forced stop the logs are consistent:
            # seal them and mark the clean shutdown.
            broker.close()
            logger.info("closed the data directory cleanly" if broker.durable else "stopped the broker")
    finally:
        await listeners.aclose()


def _describe_listeners(listeners: Listeners, config: ServerConfig) -> str:
    """One line: each listener's address (and where Kafka clients are sent), and TLS."""
    parts = [f"{listener.name} {listener.address}" for listener in listeners]
    kafka = listeners.kafka
    if kafka is not None and config.advertised_kafka_host != kafka.host:
        parts[-1] += f" (advertised as {format_address(config.advertised_kafka_host, kafka.port)})"
    if config.tls_client_ca:
        tls = "TLS only (1.2 or later), client certificates required"
    elif config.tls_cert:
        tls = "TLS only (1.2 or later)"
    else:
        tls = "plain TCP"
    return f"listeners: {', '.join(parts)}; {tls}"


def _log_opening(broker: Broker) -> None:
    """What opening the broker found (recovery, notes), and what its fsync policy risks."""
    if not broker.durable:
        logger.warning("memory storage: nothing survives a restart")
        return
    for report in broker.recovery:
        (logger.warning if report.changed_data else logger.info)("recovery: %s", report.summary())
    for note in broker.notes:
        logger.warning("%s", note)
    broker.notes.clear()
    fsync = broker.options.fsync
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
