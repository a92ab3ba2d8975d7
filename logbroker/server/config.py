"""What `logbroker serve` takes, as flags or from a TOML file (the same names), and who owns each.

`Settings` is that whole document. Every setting in it has exactly one owner, which everything
else reads it from:

- the storage location (`data_dir`, `memory`) is the settings' own: it says which broker to open;
- the broker core's settings (fsync, auto-creation, default partitions, group defaults, the free
  space reserve) become a `BrokerOptions`, which the broker owns (`logbroker.broker.options`);
- the rest - listeners, connection limits, TLS, logins, ACLs, quotas, housekeeping - is the
  server's `ServerConfig`.

So a server never holds its own copy of a broker setting: the flusher, the acks and the Hello
answer read the fsync policy from the broker they serve.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from logbroker.broker.broker import Broker
from logbroker.broker.options import BrokerOptions, FsyncPolicy
from logbroker.errors import InvalidConfigError
from logbroker.security.users import security_dir

__all__ = ["ServerConfig", "Settings"]


@attrs.frozen
class ServerConfig:
    """The server's own settings: listeners, connection limits, TLS, logins, ACLs, quotas,
    housekeeping. (The broker's settings are its `BrokerOptions`; see `Settings`.)"""

    host: str = "127.0.0.1"
    port: int = 9400
    #: Largest request frame accepted (a produce of one or more batches); larger ones close the
    #: connection before anything is buffered.
    max_frame_bytes: int = 16 << 20
    #: Largest fetch response built (a client asking for more gets this much).
    max_fetch_bytes: int = 64 << 20
    max_connections: int = 1024
    #: Close a connection with no request in flight that sent nothing for this long (s).
    idle_timeout: float = 600.0
    #: Close a connection that started a frame and did not finish it in this long (s).
    frame_timeout: float = 30.0
    #: Requests a connection may have in flight; past it, the broker stops reading from it.
    max_in_flight: int = 128
    #: Bytes of responses queued for a connection before it counts as a slow reader and is closed.
    max_output_bytes: int = 64 << 20
    #: Close a connection whose socket has not taken a response for this long (s).
    send_timeout: float = 30.0
    retention_check_interval: float = 60.0
    #: The Kafka listener's port: -1 (the default) leaves it off; 0 picks a free port.
    kafka_port: int = -1
    #: The host Metadata and FindCoordinator tell Kafka clients to connect to ("": `host`).
    kafka_advertised_host: str = ""
    #: Session timeouts a Kafka consumer may ask for (s): Kafka's group.min/max.session.timeout.ms.
    kafka_min_session_timeout: float = 6.0
    kafka_max_session_timeout: float = 1800.0
    #: TLS on both listeners (they take nothing else): the broker's certificate chain and key
    #: (PEM files); with `tls_client_ca`, clients must present a certificate it signed.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    #: A TLS handshake not done in this long (s) closes the connection.
    tls_handshake_timeout: float = 10.0
    #: Clients must log in (SASL: SCRAM-SHA-256/512, and PLAIN over TLS) as a user of
    #: `logbroker users`, on both listeners.
    authenticate: bool = False
    #: Check every request against the ACLs of `logbroker acls`: what no rule allows is denied.
    authorize: bool = False
    #: Principals the ACLs do not restrict, comma-separated ("User:admin,User:ops").
    super_users: str = ""
    #: Where users.json and acls.json live ("": the data directory's `security` folder).
    security_dir: str = ""
    #: Before a client logs in, frames larger than this are refused (Kafka's answer to
    #: CVE-2022-34917: an unauthenticated client must not make the broker allocate much).
    pre_auth_max_frame_bytes: int = 64 << 10
    #: After a failed login, the client address's next attempt is refused for this long (s),
    #: doubled for each recent failure from it (up to 30 s).
    login_failure_delay: float = 1.0
    #: A connection not logged in this long after it opened is closed (s).
    login_timeout: float = 30.0
    #: Per-principal quotas, per second (0: none): bytes produced, bytes fetched, requests. A
    #: principal over its quota is slowed down (Kafka's throttle_time_ms), never refused.
    quota_produce_bytes: float = 0.0
    quota_fetch_bytes: float = 0.0
    quota_requests: float = 0.0
    #: Connections one client address may hold open at once (0: no limit but max_connections).
    max_connections_per_ip: int = 0
    #: How long a graceful shutdown waits for in-flight requests (s).
    shutdown_timeout: float = 10.0

    def describe(self) -> str:
        """The effective settings, one line (the server logs it at start)."""
        return (
            f"max_frame_bytes={self.max_frame_bytes} "
            f"max_connections={self.max_connections} idle_timeout={self.idle_timeout}s "
            f"frame_timeout={self.frame_timeout}s max_in_flight={self.max_in_flight} "
            f"max_output_bytes={self.max_output_bytes} send_timeout={self.send_timeout}s "
            f"tls={'mutual' if self.tls_client_ca else 'on' if self.tls_cert else 'off'} "
            f"authenticate={self.authenticate} authorize={self.authorize} "
            f"quotas: produce={self.quota_produce_bytes or 'none'} fetch={self.quota_fetch_bytes or 'none'} "
            f"requests={self.quota_requests or 'none'} max_connections_per_ip={self.max_connections_per_ip or 'none'}"
            + (
                f" kafka: port={self.kafka_port} advertised_host={self.advertised_kafka_host}"
                if self.kafka_port >= 0
                else ""
            )
        )

    @property
    def advertised_kafka_host(self) -> str:
        if self.kafka_advertised_host:
            return self.kafka_advertised_host
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host

    def __attrs_post_init__(self) -> None:
        positive = (
            "max_frame_bytes",
            "max_fetch_bytes",
            "max_connections",
            "max_in_flight",
            "max_output_bytes",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise InvalidConfigError(f"{name} must be positive")
        for name in (
            "idle_timeout",
            "frame_timeout",
            "send_timeout",
            "retention_check_interval",
            "shutdown_timeout",
            "login_timeout",
        ):
            if getattr(self, name) <= 0:
                raise InvalidConfigError(f"{name} must be positive")
        if not 0 <= self.port <= 65535:
            raise InvalidConfigError(f"port must be 0 to 65535, not {self.port}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidConfigError("tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise InvalidConfigError("tls_client_ca needs tls_cert and tls_key")
        if self.pre_auth_max_frame_bytes < 1024:
            raise InvalidConfigError("pre_auth_max_frame_bytes must be at least 1024")
        if self.login_failure_delay < 0:
            raise InvalidConfigError("login_failure_delay must not be negative")
        for name in ("quota_produce_bytes", "quota_fetch_bytes", "quota_requests", "max_connections_per_ip"):
            if getattr(self, name) < 0:
                raise InvalidConfigError(f"{name} must not be negative (0: no quota)")
        if self.super_users and not all(
            p.strip().startswith("User:") for p in self.super_users.split(",") if p.strip()
        ):
            raise InvalidConfigError("super_users: principals are written User:<name>, comma-separated")
        if not -1 <= self.kafka_port <= 65535:
            raise InvalidConfigError(f"kafka_port must be -1 (off) or 0 to 65535, not {self.kafka_port}")
        if not 0 < self.kafka_min_session_timeout <= self.kafka_max_session_timeout:
            raise InvalidConfigError(
                "kafka session timeouts: 0 < kafka_min_session_timeout <= kafka_max_session_timeout"
            )


def _seconds(value: float) -> int:
    return round(value * 1000)


#: The broker core's settings among `serve`'s: name -> (the type `serve` takes, how it lands in
#: `BrokerOptions`). Durations are seconds here (fractions allowed), milliseconds in the core.
_BROKER_SETTINGS: dict[str, tuple[type, Callable[[BrokerOptions, Any], BrokerOptions]]] = {
    "fsync": (str, lambda o, v: attrs.evolve(o, fsync=FsyncPolicy.parse(v))),
    "auto_create_topics": (bool, lambda o, v: attrs.evolve(o, auto_create_topics=v)),
    "default_partitions": (int, lambda o, v: attrs.evolve(o, default_partitions=v)),
    "min_free_bytes": (int, lambda o, v: attrs.evolve(o, min_free_bytes=v)),
    "default_ack_timeout": (
        float,
        lambda o, v: attrs.evolve(o, group_defaults=o.group_defaults.with_overrides(_seconds(v), None, None)),
    ),
    "default_max_deliveries": (
        int,
        lambda o, v: attrs.evolve(o, group_defaults=o.group_defaults.with_overrides(None, v, None)),
    ),
    "default_session_timeout": (
        float,
        lambda o, v: attrs.evolve(o, group_defaults=o.group_defaults.with_overrides(None, None, _seconds(v))),
    ),
    "group_initial_delay": (float, lambda o, v: attrs.evolve(o, group_initial_delay_ms=_seconds(v))),
    "kafka_group_initial_delay": (float, lambda o, v: attrs.evolve(o, classic_initial_delay_ms=_seconds(v))),
}
_SERVER_SETTINGS = {field.name: field for field in attrs.fields(ServerConfig)}
_OWN_SETTINGS: dict[str, type] = {"data_dir": str, "memory": bool, "log_level": str}


@attrs.frozen
class Settings:
    """Everything `logbroker serve` (and `logbroker.testing`) takes, split among its owners."""

    #: Where topics are stored (file storage), unless `memory`.
    data_dir: str = "./data"
    #: Keep everything in memory: nothing survives a restart.
    memory: bool = False
    log_level: str = "info"
    #: `serve` keeps 64 MiB free for commits and metadata unless told otherwise (the library's
    #: default is no reserve: an embedded broker's disk is its owner's business).
    broker: BrokerOptions = attrs.Factory(lambda: BrokerOptions(min_free_bytes=64 << 20))
    server: ServerConfig = attrs.Factory(ServerConfig)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Settings | None = None) -> Settings:
        """Settings from a mapping whose keys are the flag names (dashes or underscores)."""
        base = base or cls()
        own: dict[str, Any] = {}
        broker = base.broker
        server: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name in _OWN_SETTINGS:
                own[name] = _checked(key, value, _OWN_SETTINGS[name])
            elif name in _BROKER_SETTINGS:
                expected, apply = _BROKER_SETTINGS[name]
                if name == "fsync" and isinstance(value, FsyncPolicy):
                    value = str(value)
                broker = apply(broker, _checked(key, value, expected))
            elif name in _SERVER_SETTINGS:
                server[name] = _checked(key, value, type(getattr(base.server, name)))
            else:
                raise InvalidConfigError(f"unknown setting {key!r}")
        settings = attrs.evolve(base, broker=broker, server=attrs.evolve(base.server, **server), **own)
        if not isinstance(logging.getLevelName(settings.log_level.upper()), int):
            raise InvalidConfigError(
                f"log_level is debug, info, warning or error, not {settings.log_level!r}"
            )
        return settings

    @classmethod
    def from_toml(cls, path: str) -> Settings:
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_mapping(values)

    @property
    def security_dir(self) -> str:
        """Where users.json and acls.json live."""
        return self.server.security_dir or security_dir(self.data_dir)

    def open_broker(self, *, now_ms: int) -> Broker:
        """The broker these settings describe: in memory, or the data directory's (locked)."""
        if self.memory:
            return Broker.in_memory(self.broker, now_ms=now_ms)
        return Broker.open(self.data_dir, self.broker, now_ms=now_ms)

    def server_config(self) -> ServerConfig:
        """The server's part, with the security directory resolved against the data directory."""
        return attrs.evolve(self.server, security_dir=self.security_dir)

    def describe(self) -> str:
        """The effective settings, one line (`serve` logs it at start)."""
        storage = "memory (nothing survives a restart)" if self.memory else f"files in {self.data_dir}"
        return f"storage={storage} {self.broker.describe()} {self.server.describe()}"


def _checked(key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise InvalidConfigError(f"setting {key!r} takes a {expected.__name__}, not {value!r}")
    return value
