"""The trio server: a thin adapter between sockets and the broker core."""

from logbroker.server.config import ServerConfig
from logbroker.server.server import Server, serve

__all__ = ["Server", "ServerConfig", "serve"]
