"""The server's listeners: each front door's bound sockets, under the name an operator knows it by.

    listeners = await Listeners.bind(config)   # native, and Kafka when `kafka_port` is set
    ...                                        # bound: connections wait in the backlog
    await Server(broker, config).run(listeners)

Binding is the first thing a start does (`logbroker.server.server.serve_settings`), so a port
that cannot be had fails before the data directory is touched, and the error says which listener
and which address: "Kafka listener 127.0.0.1:9092: address already in use". It stays an
`OSError` with the system's `errno` (EADDRINUSE...), as the bind's own error was, so code that
tells a port in use from other failures keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import trio

from logbroker.server.config import ServerConfig

__all__ = ["Listener", "Listeners", "bind", "format_address"]


def format_address(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@attrs.frozen
class Listener:
    """One front door's bound sockets (several when the host name has several addresses)."""

    #: How logs and errors name it: "native", "Kafka".
    name: str
    sockets: list[trio.SocketListener]

    @property
    def host(self) -> str:
        return str(self.sockets[0].socket.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.sockets[0].socket.getsockname()[1])

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    async def aclose(self) -> None:
        """Close its sockets (again: a no-op)."""
        with trio.CancelScope(shield=True):
            for socket in self.sockets:
                await socket.aclose()


async def bind(name: str, host: str, port: int) -> Listener:
    """Bind and listen on `host:port` (0: a free port); an `OSError` that names the listener
    and the address when it cannot."""
    try:
        sockets = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(
            exc.errno, f"{name} listener {format_address(host, port)}: {reason[:1].lower()}{reason[1:]}"
        ) from None
    return Listener(name, sockets)


@attrs.frozen
class Listeners:
    """Every listener a `ServerConfig` asks for, bound."""

    native: Listener
    #: None: no Kafka listener (`kafka_port` -1).
    kafka: Listener | None = None

    @classmethod
    async def bind(cls, config: ServerConfig) -> Listeners:
        """Bind them all, or none: one that fails closes those bound before it."""
        native = await bind("native", config.host, config.port)
        try:
            kafka = await bind("Kafka", config.host, config.kafka_port) if config.kafka_port >= 0 else None
        except BaseException:
            await native.aclose()
            raise
        return cls(native, kafka)

    def __iter__(self) -> Iterator[Listener]:
        yield self.native
        if self.kafka is not None:
            yield self.kafka

    async def aclose(self) -> None:
        for listener in self:
            await listener.aclose()
