"""The trio server: the listeners and connections, and the two front doors (`native`, `kafka`)
that turn each protocol's requests into calls of the engine (`logbroker.engine`)."""

from logbroker.server.config import ServerConfig, Settings
from logbroker.server.server import Server, serve, serve_settings

__all__ = ["Server", "ServerConfig", "Settings", "serve", "serve_settings"]
