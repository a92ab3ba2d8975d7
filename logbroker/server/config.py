"""Server settings: what `logbroker serve` takes as flags or from a TOML file (same names)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from logbroker.broker.broker import BrokerOptions, FsyncPolicy
from logbroker.broker.group_state import GroupSettings
from logbroker.errors import InvalidConfigError

__all__ = ["ServerConfig"]


@attrs.frozen
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9400
    data_dir: str = "./data"
    memory: bool = False
    fsync: FsyncPolicy = attrs.Factory(FsyncPolicy)
    auto_create_topics: bool = False
    default_partitions: int = 1
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
    #: Refuse produces when the data directory's disk has less free than this (bytes), so that
    #: commits, dead letters and metadata still have room (file storage only; 0: never refuse).
    min_free_bytes: int = 64 << 20
    retention_check_interval: float = 60.0
    #: Group defaults: what a group gets when no member names a setting (seconds, fractions allowed).
    default_ack_timeout: float = 30.0
    default_max_deliveries: int = 10
    default_session_timeout: float = 30.0
    #: Wait this long after the first member joins an empty group before assigning partitions.
    group_initial_delay: float = 0.3
    #: The Kafka listener's port: -1 (the default) leaves it off; 0 picks a free port.
    kafka_port: int = -1
    #: The host Metadata and FindCoordinator tell Kafka clients to connect to ("": `host`).
    kafka_advertised_host: str = ""
    #: Kafka's group.initial.rebalance.delay.ms, in seconds.
    kafka_group_initial_delay: float = 3.0
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
    log_level: str = "info"

    def broker_options(self) -> BrokerOptions:
        return BrokerOptions(
            fsync=self.fsync,
            auto_create_topics=self.auto_create_topics,
            default_partitions=self.default_partitions,
            group_defaults=GroupSettings().with_overrides(
                round(self.default_ack_timeout * 1000),
                self.default_max_deliveries,
                round(self.default_session_timeout * 1000),
            ),
            group_initial_delay_ms=round(self.group_initial_delay * 1000),
            classic_initial_delay_ms=round(self.kafka_group_initial_delay * 1000),
            min_free_bytes=self.min_free_bytes,
        )

    def describe(self) -> str:
        """The effective settings, one line (the server logs it at start)."""
        storage = "memory (nothing survives a restart)" if self.memory else f"files in {self.data_dir}"
        return (
            f"storage={storage} fsync={self.fsync} auto_create_topics={self.auto_create_topics} "
            f"default_partitions={self.default_partitions} max_frame_bytes={self.max_frame_bytes} "
            f"max_connections={self.max_connections} idle_timeout={self.idle_timeout}s "
            f"frame_timeout={self.frame_timeout}s max_in_flight={self.max_in_flight} "
            f"max_output_bytes={self.max_output_bytes} send_timeout={self.send_timeout}s "
            f"min_free_bytes={self.min_free_bytes} "
            f"tls={'mutual' if self.tls_client_ca else 'on' if self.tls_cert else 'off'} "
            f"authenticate={self.authenticate} authorize={self.authorize} "
            f"quotas: produce={self.quota_produce_bytes or 'none'} fetch={self.quota_fetch_bytes or 'none'} "
            f"requests={self.quota_requests or 'none'} max_connections_per_ip={self.max_connections_per_ip or 'none'} "
            f"groups: ack_timeout={self.default_ack_timeout}s max_deliveries={self.default_max_deliveries} "
            f"session_timeout={self.default_session_timeout}s initial_delay={self.group_initial_delay}s"
            + (
                f" kafka: port={self.kafka_port} advertised_host={self.advertised_kafka_host} "
                f"group_initial_delay={self.kafka_group_initial_delay}s"
                if self.kafka_port >= 0
                else ""
            )
        )

    @property
    def advertised_kafka_host(self) -> str:
        if self.kafka_advertised_host:
            return self.kafka_advertised_host
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: ServerConfig | None = None) -> ServerConfig:
        """Settings from a mapping whose keys are the flag names (dashes or underscores)."""
        base = base or cls()
        names = {f.name for f in attrs.fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in names:
                raise InvalidConfigError(f"unknown setting {key!r}")
            if name == "fsync" and not isinstance(value, FsyncPolicy):
                value = FsyncPolicy.parse(str(value))
            expected = type(getattr(base, name))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise InvalidConfigError(f"setting {key!r} takes a {expected.__name__}, not {value!r}")
            changes[name] = value
        config = attrs.evolve(base, **changes)
        config.check()
        return config

    @classmethod
    def from_toml(cls, path: str) -> ServerConfig:
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_mapping(values)

    def check(self) -> None:
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
        if self.default_partitions < 1:
            raise InvalidConfigError("default_partitions must be at least 1")
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
        if self.min_free_bytes < 0:
            raise InvalidConfigError("min_free_bytes must not be negative")
        if self.group_initial_delay < 0:
            raise InvalidConfigError("group_initial_delay must not be negative")
        if not -1 <= self.kafka_port <= 65535:
            raise InvalidConfigError(f"kafka_port must be -1 (off) or 0 to 65535, not {self.kafka_port}")
        if self.kafka_group_initial_delay < 0:
            raise InvalidConfigError("kafka_group_initial_delay must not be negative")
        if not 0 < self.kafka_min_session_timeout <= self.kafka_max_session_timeout:
            raise InvalidConfigError(
                "kafka session timeouts: 0 < kafka_min_session_timeout <= kafka_max_session_timeout"
            )
        self.broker_options()  # group defaults within their bounds
