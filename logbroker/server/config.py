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
import os
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from logbroker.broker.broker import Broker
from logbroker.broker.options import BrokerOptions, FsyncPolicy
from logbroker.errors import InvalidConfigError
from logbroker.security.users import security_dir

__all__ = ["ServerConfig", "Settings", "format_value"]


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


@attrs.frozen
class _BrokerSetting:
    """One of `serve`'s settings that the broker core owns: the type `serve` takes, how it is
    read from `BrokerOptions` and how it lands there (durations are seconds in `serve`, fractions
    allowed, and milliseconds in the core)."""

    kind: type
    read: Callable[[BrokerOptions], Any]
    apply: Callable[[BrokerOptions, Any], BrokerOptions]


def _group_setting(kind: type, field: str, scale: int) -> _BrokerSetting:
    def apply(options: BrokerOptions, value: Any) -> BrokerOptions:
        overrides: dict[str, int | None] = {
            "ack_timeout_ms": None,
            "max_deliveries": None,
            "session_timeout_ms": None,
        }
        overrides[field] = round(value * scale)
        return attrs.evolve(options, group_defaults=options.group_defaults.with_overrides(**overrides))

    return _BrokerSetting(kind, lambda o: kind(getattr(o.group_defaults, field) / scale), apply)


_BROKER_SETTINGS: dict[str, _BrokerSetting] = {
    "fsync": _BrokerSetting(
        str, lambda o: str(o.fsync), lambda o, v: attrs.evolve(o, fsync=FsyncPolicy.parse(v))
    ),
    "auto_create_topics": _BrokerSetting(
        bool, lambda o: o.auto_create_topics, lambda o, v: attrs.evolve(o, auto_create_topics=v)
    ),
    "default_partitions": _BrokerSetting(
        int, lambda o: o.default_partitions, lambda o, v: attrs.evolve(o, default_partitions=v)
    ),
    "min_free_bytes": _BrokerSetting(
        int, lambda o: o.min_free_bytes, lambda o, v: attrs.evolve(o, min_free_bytes=v)
    ),
    "default_ack_timeout": _group_setting(float, "ack_timeout_ms", 1000),
    "default_max_deliveries": _group_setting(int, "max_deliveries", 1),
    "default_session_timeout": _group_setting(float, "session_timeout_ms", 1000),
    "group_initial_delay": _BrokerSetting(
        float,
        lambda o: o.group_initial_delay_ms / 1000,
        lambda o, v: attrs.evolve(o, group_initial_delay_ms=round(v * 1000)),
    ),
    "kafka_group_initial_delay": _BrokerSetting(
        float,
        lambda o: o.classic_initial_delay_ms / 1000,
        lambda o, v: attrs.evolve(o, classic_initial_delay_ms=round(v * 1000)),
    ),
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
        """Settings from a mapping whose keys are the flag names (dashes or underscores), over
        `base`. A mapping that names a data directory means files, also over a `base` in memory;
        one that asks for both is refused."""
        base = base or cls()
        own: dict[str, Any] = {}
        broker = base.broker
        server: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name in _OWN_SETTINGS:
                own[name] = _checked(key, value, _OWN_SETTINGS[name])
            elif name in _BROKER_SETTINGS:
                setting = _BROKER_SETTINGS[name]
                if name == "fsync" and isinstance(value, FsyncPolicy):
                    value = str(value)
                broker = setting.apply(broker, _checked(key, value, setting.kind))
            elif name in _SERVER_SETTINGS:
                server[name] = _checked(key, value, type(getattr(base.server, name)))
            else:
                raise InvalidConfigError(f"unknown setting {key!r}")
        if own.get("data_dir"):
            if own.get("memory"):
                raise InvalidConfigError(
                    "memory and data_dir exclude each other: keep everything in memory, or in the "
                    f"directory {own['data_dir']!r}"
                )
            own["memory"] = False
        settings = attrs.evolve(base, broker=broker, server=attrs.evolve(base.server, **server), **own)
        if not isinstance(logging.getLevelName(settings.log_level.upper()), int):
            raise InvalidConfigError(
                f"log_level is debug, info, warning or error, not {settings.log_level!r}"
            )
        return settings

    @classmethod
    def from_toml(cls, path: str) -> Settings:
        """Settings from a TOML file; its errors name the file."""
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidConfigError(f"{path}: not valid TOML: {exc}") from None
        try:
            return cls.from_mapping(values)
        except InvalidConfigError as exc:
            raise InvalidConfigError(f"{path}: {exc.message}") from None

    @staticmethod
    def names() -> list[str]:
        """Every setting's name (a TOML key; the flag is `--` and the name with dashes)."""
        return [*_OWN_SETTINGS, *_BROKER_SETTINGS, *_SERVER_SETTINGS]

    def value(self, name: str) -> Any:
        """A setting's value as `serve` takes it (durations in seconds), read from its owner."""
        name = name.replace("-", "_")
        if name in _OWN_SETTINGS:
            return getattr(self, name)
        if name in _BROKER_SETTINGS:
            return _BROKER_SETTINGS[name].read(self.broker)
        if name in _SERVER_SETTINGS:
            return getattr(self.server, name)
        raise InvalidConfigError(f"unknown setting {name!r}")

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

    def summary(self) -> list[str]:
        """What `serve` logs at start about its storage and the settings not at their defaults
        (the listeners and security are logged once bound and loaded)."""
        if self.memory:
            storage = "storage: memory (nothing survives a restart)"
        else:
            storage = f"storage: files in {os.path.abspath(self.data_dir)} (fsync={self.broker.fsync})"
        default = Settings()
        changed = [
            f"{name}={format_value(self.value(name))}"
            for name in self.names()
            if name not in _SUMMARIZED_ELSEWHERE and self.value(name) != default.value(name)
        ]
        if changed:
            return [storage, f"settings not at their defaults: {' '.join(changed)}"]
        return [storage, "settings: all at their defaults (`logbroker serve --help` lists them)"]


#: Settings the start-up log shows on their own lines (storage, listeners, security).
_SUMMARIZED_ELSEWHERE = {
    "data_dir",
    "memory",
    "fsync",
    "log_level",
    "host",
    "port",
    "kafka_port",
    "kafka_advertised_host",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "authenticate",
    "authorize",
    "super_users",
    "security_dir",
}

#: How a type is named in an error about a value of the wrong type.
_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def format_value(value: Any) -> str:
    """A setting's value as a person writes it: `on`/`off`, `600` rather than `600.0`."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return str(value) if value != "" else '""'


def _checked(key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise InvalidConfigError(
            f"setting {key!r} takes {_KINDS.get(expected, expected.__name__)}, not {value!r}"
        )
    return value
